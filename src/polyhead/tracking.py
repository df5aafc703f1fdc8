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


def checkpoint_from_run(tracking_uri: str, run_id: str) -> str:
    """The last checkpoint of an earlier MLflow run (recorded in its `checkpoint_dir` tag)."""
    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking_uri).get_run(run_id)
    ckpt_dir = run.data.tags.get("checkpoint_dir")
    if not ckpt_dir or not (Path(ckpt_dir) / "last.ckpt").is_file():
        raise FileNotFoundError(f"run {run_id} has no last.ckpt (checkpoint_dir tag: {ckpt_dir!r})")
    return str(Path(ckpt_dir) / "last.ckpt")


def default_run_name(cfg: DictConfig) -> str:
    """`<data>` plus the command-line overrides, e.g. `ewt optim.lr=5e-05 seed=2`."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return cfg.experiment_name
    hydra_cfg = HydraConfig.get()
    skip = ("paths.", "logger.", "hydra.", "resume")
    overrides = [o for o in hydra_cfg.overrides.task if not o.lstrip("+~").startswith(skip)]
    return " ".join([hydra_cfg.runtime.choices.get("data", cfg.experiment_name), *overrides])[:250]
