"""`python train.py`-equivalent runs on a tiny random BERT: Hydra compose -> run() -> MLflow run read back."""

import json

import pytest
from conftest import compose_train, only_run
from omegaconf import open_dict

import polyhead.config  # noqa: F401
from polyhead.training.run import run


def test_train_run_logs_finished_mlflow_run_with_all_task_metrics(tmp_path, tiny_bert):
    cfg = compose_train(
        tmp_path,
        tiny_bert,
        "seed=3",
        "encoder.scalar_mix=per_task",
        "callbacks=unfreeze",
        "model.grad_norm_every=1",
    )
    score = run(cfg)
    client, runs = only_run(tmp_path)
    assert len(runs) == 1
    r = runs[0]
    assert r.info.status == "FINISHED"
    metrics = r.data.metrics
    for key in (
        "test/tagger_acc",
        "test/ner_f1",
        "test/ner_precision",
        "test/ner_recall",
        "test/textcat_acc",
        "test/textcat_macro_f1",
        "val/objective",
        "train/loss",
        "train/words_per_sec",
    ):
        assert key in metrics, key
    assert any(k.startswith("test/ner_f1_") for k in metrics)
    assert 0.0 <= metrics["test/tagger_acc"] <= 1.0
    assert score == pytest.approx(
        max(m.value for m in client.get_metric_history(r.info.run_id, "val/objective"))
    )
    assert r.data.params["seed"] == "3"
    assert r.data.params["encoder/pooling"] == "first"
    assert r.data.tags["git_commit"]
    assert any(t.startswith("corpus/demo_train.jsonl") for t in r.data.tags)
    assert {"scalar_mix/ner/layer_00", "scalar_mix/tagger/layer_02"} <= set(metrics)  # one mix per task
    assert "unfreeze/trainable_layers" in metrics
    norms = {k for k in metrics if k.startswith("train/grad_norm/")}  # once the encoder trains (unfreezing)
    assert norms == {"train/grad_norm/tagger", "train/grad_norm/ner", "train/grad_norm/textcat"}
    lr_keys = [k for k in metrics if k.startswith("lr")]
    assert len(lr_keys) >= 3, lr_keys  # one learning rate per parameter group
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"config.yaml", "labels.json"} <= artifacts
    labels = json.loads(open(client.download_artifacts(r.info.run_id, "labels.json", str(tmp_path))).read())
    assert labels["ner"] == ["LOC", "ORG", "PER"]
    assert sorted(labels["textcat"]) == ["business", "science", "sports", "travel"]


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("data.train.0.path={bad}", r"bad\.jsonl:1: 1 tags for 2 words"),
        ("optim.schedule=cosine_typo", "optim.schedule must be"),
        ("encoder.window=100", "exceeds what"),
    ],
)
def test_train_bad_input_stops_before_any_mlflow_run(tmp_path, tiny_bert, override, error):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tokens": ["a", "b"], "tags": ["X"]}\n')
    cfg = compose_train(tmp_path, tiny_bert, override.format(bad=bad))
    with pytest.raises(Exception, match=error):  # hydra wraps errors raised while instantiating
        run(cfg)
    _, runs = only_run(tmp_path)
    assert runs == []


def test_train_resume_continues_same_mlflow_run(tmp_path, tiny_bert):
    cfg = compose_train(tmp_path, tiny_bert, "trainer.max_epochs=1")
    run(cfg)
    _, runs = only_run(tmp_path)
    run_id = runs[0].info.run_id
    cfg2 = compose_train(tmp_path, tiny_bert, "trainer.max_epochs=2", f"resume={run_id}")
    with open_dict(cfg2):
        cfg2.paths.output_dir = str(tmp_path / "out2")
    run(cfg2)
    client, runs = only_run(tmp_path)
    assert [r.info.run_id for r in runs] == [run_id]
    steps = sorted(m.step for m in client.get_metric_history(run_id, "train/loss"))
    assert steps == list(range(6))  # 3 steps per epoch; the second epoch continues at step 3, not 0
