"""What every MLflow run records besides metrics: config, git commit, corpus fingerprints, label maps."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, MLFlowLogger


def git_commit(root: str) -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def mlflow_loggers(loggers: list[Logger]) -> list[MLFlowLogger]:
    return [lg for lg in loggers if isinstance(lg, MLFlowLogger)]


def log_run_metadata(
    loggers: list[Logger], cfg: DictConfig, tags: dict[str, str], labels: dict, resumed: bool = False
) -> None:
    """Flattened resolved config as params; commit and fingerprints as tags; config and labels as artifacts.

    A resumed run keeps its params (MLflow params are immutable) and adds `config_resumed.yaml`."""
    if not resumed:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        for logger in loggers:
            logger.log_hyperparams(resolved)
    for logger in mlflow_loggers(loggers):
        client, run_id = logger.experiment, logger.run_id
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / ("config_resumed.yaml" if resumed else "config.yaml")
            config.write_text(OmegaConf.to_yaml(cfg, resolve=True))
            (Path(tmp) / "labels.json").write_text(json.dumps(labels, indent=2))
            client.log_artifact(run_id, str(config))
            client.log_artifact(run_id, str(Path(tmp) / "labels.json"))


def checkpoint_dir(tracking_uri: str, run_id: str) -> Path:
    """Where an earlier MLflow run of train.py kept its checkpoints (its `checkpoint_dir` tag)."""
    from mlflow.tracking import MlflowClient

    ckpt_dir = MlflowClient(tracking_uri).get_run(run_id).data.tags.get("checkpoint_dir")
    if not ckpt_dir:
        raise FileNotFoundError(f"run {run_id} has no checkpoint_dir tag: was it trained by train.py?")
    return Path(ckpt_dir)


def checkpoint_from_run(tracking_uri: str, run_id: str) -> str:
    """The last checkpoint of an earlier MLflow run, to resume it."""
    ckpt = checkpoint_dir(tracking_uri, run_id) / "last.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"run {run_id} has no last.ckpt (checkpoint_dir tag: {str(ckpt.parent)!r})")
    return str(ckpt)


def default_run_name(cfg: DictConfig) -> str:
    """`<data>` plus the command-line overrides, e.g. `ewt optim.lr=5e-05 seed=2`."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return cfg.experiment_name
    hydra_cfg = HydraConfig.get()
    skip = ("paths.", "logger.", "hydra.", "resume")
    overrides = [o for o in hydra_cfg.overrides.task if not o.lstrip("+~").startswith(skip)]
    return " ".join([hydra_cfg.runtime.choices.get("data", cfg.experiment_name), *overrides])[:250]


def sweep_tags() -> dict[str, str]:
    """For a job of a Hydra multirun: `sweep_id` (the sweep folder's name), `sweep_dir` and `job_num`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return {}
    hydra_cfg = HydraConfig.get()
    sweep_dir = Path(hydra_cfg.sweep.dir)
    job = str(hydra_cfg.job.num)
    return {"sweep_id": sweep_dir.name, "sweep_dir": str(sweep_dir.resolve()), "job_num": job}


def record_failed_job(cfg: DictConfig, tags: dict[str, str], error: BaseException) -> str:
    """Mark this sweep job's MLflow run FAILED with the error as a tag; create the run if it failed before
    one existed (e.g. a bad hyper-parameter caught while building the model). Returns the run id."""
    from mlflow.tracking import MlflowClient

    prepare_store(cfg.logger.tracking_uri, cfg.logger.experiment_name, cfg.logger.get("artifact_location"))
    client = MlflowClient(cfg.logger.tracking_uri)
    experiment_id = client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id
    query = f"tags.sweep_id = '{tags['sweep_id']}' and tags.job_num = '{tags['job_num']}'"
    runs = client.search_runs([experiment_id], query, max_results=1)
    if runs:
        run_id = runs[0].info.run_id
    else:
        run_id = client.create_run(experiment_id, run_name=default_run_name(cfg), tags=tags).info.run_id
    client.set_tag(run_id, "error", f"{type(error).__name__}: {error}"[:5000])
    client.set_terminated(run_id, "FAILED")
    return run_id


LINEAGE_FILE = "polyhead_pretraining.json"


def encoder_lineage(encoder_name: str) -> dict[str, str]:
    """Tags naming the pretraining run an encoder directory came from (its polyhead_pretraining.json)."""
    path = Path(str(encoder_name)) / LINEAGE_FILE
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    keys = {
        "run_id": "pretraining_run_id",
        "experiment_name": "pretraining_experiment",
        "tracking_uri": "pretraining_tracking_uri",
        "source_encoder": "pretraining_source_encoder",
    }
    return {tag: str(info[key]) for key, tag in keys.items() if info.get(key)}


def prepare_store(tracking_uri: str, experiment_name: str, artifact_location: str | None) -> None:
    """Create the sqlite store's tables and the experiment under a file lock, so parallel sweep jobs
    (launcher=joblib) do not race to migrate the same database or create the same experiment."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    import fcntl

    from mlflow.tracking import MlflowClient

    database = Path(tracking_uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(tracking_uri)
        if client.get_experiment_by_name(experiment_name) is None:
            client.create_experiment(experiment_name, artifact_location)
