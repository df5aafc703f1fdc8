"""Which Lightning loggers a run writes to, and what `resume=` continues.

`logger` (conf/logger/) holds named logger configs, one or several (`logger=[mlflow,csv]`); MLflow is one
choice among Lightning's loggers. What only MLflow has — creating its store, continuing a run by id, the
default run name, its tags and artifacts — happens only when an MLflow logger is configured, and in
polyhead.tracking; a checkpoint path resumes with any logger, or none."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from polyhead.errors import UserError
from polyhead.export.checkpoint import checkpoint_from_run, read_checkpoint
from polyhead.tracking import is_mlflow, logger_configs, mlflow_config, mlflow_logger_settings
from polyhead.training.preflight import looks_like_path


def instantiate_loggers(cfg: DictConfig, run_id: str | None) -> list[Logger]:
    """Every configured logger, an MLflow one continuing `run_id` when resuming. Under trainer.fast_dev_run
    (debug=fast) a logger of nothing, as Lightning logs nothing then: no MLflow run starts nor stays open."""
    if cfg.trainer.get("fast_dev_run"):
        return [NullLogger()]
    return [instantiate_logger(cfg, spec, run_id) for spec in logger_configs(cfg).values()]


def instantiate_logger(cfg: DictConfig, spec: DictConfig, run_id: str | None) -> Logger:
    if not is_mlflow(spec):
        return instantiate(spec)
    return instantiate(spec, **mlflow_logger_settings(cfg, spec, run_id))


def resolve_resume(cfg: DictConfig) -> tuple[str | None, str | None]:
    """`resume` is a checkpoint path or an MLflow run id: returns (checkpoint, MLflow run id to continue).
    A checkpoint names its MLflow run; the run is continued only when an MLflow logger is configured.

    The checkpoint is read here, before any run is reopened: one that cannot resume is a UserError and leaves
    the run as it was. The run then goes on writing checkpoints into the folder of the one it resumed from,
    so its `checkpoint_dir` tag never moves and ModelCheckpoint restores the best before the kill (Lightning
    restores `best_model_score` only when its folder is unchanged; in a new one the first validation after a
    resume became the best)."""
    if not cfg.get("resume"):
        return None, None
    resume, mlflow = str(cfg.resume), mlflow_config(cfg)
    if Path(resume).is_file():
        ckpt, run_id = resume, None
    elif looks_like_path(resume) or resume.endswith(".ckpt"):
        raise UserError(f"resume={resume}: no such checkpoint file")
    elif mlflow is None or not mlflow.get("tracking_uri"):
        raise UserError(f"resume={resume}: not a checkpoint file, and no MLflow logger to find a run in")
    else:
        ckpt, run_id = checkpoint_from_run(mlflow.tracking_uri, resume), resume
    state = read_resumable(resume, ckpt)
    if run_id is None and mlflow is not None:
        run_id = state.get("mlflow_run_id")
    continue_in(cfg, Path(ckpt).absolute().parent)
    return ckpt, run_id


def read_resumable(resume: str, ckpt: str) -> dict:
    """The checkpoint `resume` names, read whole; a truncated, foreign or weights-only file is a UserError."""
    if resume == ckpt:
        state = read_checkpoint(ckpt)  # its error names the file
    else:
        try:
            state = read_checkpoint(ckpt)
        except UserError as err:
            raise UserError(f"resume={resume}: {err}") from err
    if not isinstance(state, dict) or not {"state_dict", "optimizer_states", "loops"} <= state.keys():
        raise UserError(f"resume={resume}: {ckpt} holds no training state to resume (saved weights only?)")
    return state


def continue_in(cfg: DictConfig, folder: Path) -> None:
    """Point the checkpoint callback (when one is configured) at `folder`, the resumed checkpoint's own."""
    spec = (cfg.get("callbacks") or {}).get("checkpoint")
    if spec is not None:
        with open_dict(cfg):
            spec.dirpath = str(folder)


class NullLogger(Logger):
    """Logs nothing. Stands in for the loggers under fast_dev_run, where Lightning logs nothing anyway (it
    swaps loggers for its DummyLogger) but LearningRateMonitor still needs a logger to exist."""

    name, version = "null", "0"

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        pass
