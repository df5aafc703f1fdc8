"""`python train.py -m ...` for real: every job its own MLflow run sharing a sweep_id tag; a failing job is
recorded FAILED and the sweep goes on; the Optuna search maximises the returned objective."""

import pytest
import torch
from conftest import sweep_run, train_py
from mlflow.tracking import MlflowClient

from polyhead.training.callbacks.guards import NonFiniteLoss


def runs(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    return client.search_runs(
        [e.experiment_id for e in client.search_experiments()], order_by=["tags.job_num"]
    )


def test_sweep_jobs_share_sweep_id_and_a_failed_job_does_not_stop_it(tmp_path, tiny_bert):
    out = train_py(tmp_path, "-m", "optim.lr=-1.0,0.0001", *sweep_run(tmp_path, tiny_bert))
    assert out.returncode != 0, out.stdout[-2000:]  # Hydra reports the failed job once the sweep is done
    failed, finished = runs(tmp_path)
    assert {failed.data.tags["sweep_id"], finished.data.tags["sweep_id"]} == {"study"}
    assert (failed.info.status, finished.info.status) == ("FAILED", "FINISHED")
    assert "UserError: optim.lr=-1.0: must be >= 0" in failed.data.tags["error"]  # checked before training
    assert failed.info.run_name.startswith("demo optim.lr=-1.0")
    assert finished.info.run_name.startswith("demo optim.lr=0.0001")
    assert finished.data.params["optim/lr"] == "0.0001"
    assert "test/tagger_acc" in finished.data.metrics and finished.data.metrics["data/train_examples"] == 320


def test_sweep_optuna_search_runs_trials_and_reports_best_objective(tmp_path, tiny_bert):
    out = train_py(
        tmp_path, "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *sweep_run(tmp_path, tiny_bert)
    )
    assert out.returncode == 0, out.stderr[-3000:]
    trials = runs(tmp_path)
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    assert all(r.data.tags["sweep_id"] == "study" for r in trials)
    best = (tmp_path / "multirun" / "study" / "optimization_results.yaml").read_text()
    best_value = max(r.data.metrics["val/objective"] for r in trials)
    assert f"best_value: {best_value}"[:16] in best  # Optuna maximised the value train.py returned


def test_sweep_non_finite_loss_stops_the_run():
    guard = NonFiniteLoss()

    class Trainer:
        global_step = 7

    guard.on_train_batch_end(Trainer(), None, {"loss": torch.tensor(0.5)}, None, 0)
    guard.on_train_batch_end(Trainer(), None, {}, None, 0)  # a batch with no labels returns no loss
    with pytest.raises(FloatingPointError, match="nan at step 7"):
        guard.on_train_batch_end(Trainer(), None, {"loss": torch.tensor(float("nan"))}, None, 0)


@pytest.mark.slow
def test_sweep_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path, tiny_bert):
    out = train_py(tmp_path, "-m", "launcher=joblib", "seed=1,2", *sweep_run(tmp_path, tiny_bert))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in out.stdout + out.stderr
    jobs = runs(tmp_path)
    assert [r.data.params["seed"] for r in jobs] == ["1", "2"]
    assert all(r.info.status == "FINISHED" and r.data.tags["sweep_id"] == "study" for r in jobs)
