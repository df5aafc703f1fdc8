"""Logging is Lightning's, MLflow one choice: logger=csv trains, tests and resumes from a checkpoint path
with no MLflow store at all; logger=[mlflow,csv] records the same run in both."""

import csv

import pytest
from conftest import compose_config, tiny_run
from mlflow.tracking import MlflowClient
from omegaconf import open_dict

import polyhead.config  # noqa: F401
from polyhead.training.run import run

LIMITS = [
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=1",
    "export.enabled=false",
]


def compose_train(tmp_path, tiny_bert, out: str, *overrides):
    return compose_config(
        "train", tmp_path, tiny_run(tiny_bert, *LIMITS, *overrides, short=False), tmp_path / out
    )


def csv_rows(out_dir) -> list[dict[str, str]]:
    with open(out_dir / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def values(rows, key: str) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]


def test_loggers_csv_only_trains_and_resumes_from_a_checkpoint_without_mlflow(tmp_path, tiny_bert):
    run(compose_train(tmp_path, tiny_bert, "out", "logger=csv", "trainer.max_epochs=1"))
    rows = csv_rows(tmp_path / "out")
    assert [step for step, _ in values(rows, "train/loss")] == [0, 1, 2]
    assert 0.0 <= values(rows, "test/tagger_acc")[0][1] <= 1.0
    assert (tmp_path / "out" / "csv" / "hparams.yaml").is_file()

    last = tmp_path / "out" / "checkpoints" / "last.ckpt"
    resumed = compose_train(
        tmp_path, tiny_bert, "out2", "logger=csv", "trainer.max_epochs=2", f"resume={last}"
    )
    run(resumed)
    assert [step for step, _ in values(csv_rows(tmp_path / "out2"), "train/loss")] == [3, 4, 5]
    assert not (tmp_path / "mlruns" / "mlflow.db").exists(), "logger=csv created an MLflow store"


def test_loggers_mlflow_and_csv_record_the_same_run(tmp_path, tiny_bert):
    run(compose_train(tmp_path, tiny_bert, "out", "logger=[mlflow,csv]", "trainer.max_epochs=1"))
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (mlflow_run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert mlflow_run.info.status == "FINISHED"
    in_csv = values(csv_rows(tmp_path / "out"), "test/tagger_acc")[0][1]
    assert mlflow_run.data.metrics["test/tagger_acc"] == pytest.approx(in_csv)


def test_loggers_resume_by_run_id_needs_an_mlflow_logger(tmp_path, tiny_bert):
    cfg = compose_train(tmp_path, tiny_bert, "out", "logger=csv", "resume=0123456789abcdef")
    with pytest.raises(Exception, match="not a checkpoint file, and no MLflow logger"):
        run(cfg)
    with open_dict(cfg):
        del cfg["logger"]
    with pytest.raises(Exception, match="no MLflow logger"):
        run(cfg)
