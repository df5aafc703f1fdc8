"""MLflow: what every run records besides metrics (config, git commit, corpus fingerprints, label maps), which
of the configured loggers is MLflow's, finding an earlier run's checkpoints, marking a failed job."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from polyhead.errors import UserError


def git_commit(root: str) -> str:
    """The HEAD commit, with `-dirty` when tracked files changed or untracked files exist (git_state)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if git_state(root).get("git_dirty") == "true" else "")


def source_checkout(cfg: DictConfig) -> str:
    """The git checkout whose commit a run records: the one polyhead's code runs from (an editable install
    or PYTHONPATH=<checkout>/src, with its conf/), wherever paths.root_dir keeps the outputs; else, for an
    installed package, the project in paths.root_dir."""
    package = str(cfg.paths.package_dir)
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=package, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return str(cfg.paths.root_dir)
    return package if tracked.stdout.strip() else str(cfg.paths.root_dir)


def git_state(root: str) -> dict[str, str]:
    """`git_dirty` (true/false), `git_changed_files` (tracked files modified, staged or deleted) and
    `git_untracked_files` (new files .gitignore does not exclude): a run from an edited config says so."""
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return {}
    lines = [line for line in status.stdout.splitlines() if line.strip()]
    untracked = sum(line.startswith("??") for line in lines)
    return {
        "git_dirty": str(bool(lines)).lower(),
        "git_changed_files": str(len(lines) - untracked),
        "git_untracked_files": str(untracked),
    }


def mlflow_loggers(loggers: list[Logger]) -> list[MLFlowLogger]:
    return [lg for lg in loggers if isinstance(lg, MLFlowLogger)]


def set_status(loggers: list[Logger], status: str) -> None:
    """Sets the MLflow runs of `loggers` RUNNING or FINISHED. Lightning's MLFlowLogger ends its run FINISHED
    when `fit` ends and again when `test` ends, but a polyhead run goes on (test, export, report): `run` sets
    it RUNNING again after each and FINISHED when all is done, so a process killed in between leaves it
    RUNNING, as a kill during training does, not FINISHED without test metrics or pipeline."""
    for logger in mlflow_loggers(loggers):
        if status == "RUNNING":
            logger.experiment.update_run(logger.run_id, status)
        else:
            logger.experiment.set_terminated(logger.run_id, status)


def logger_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    """The configured loggers by name: `logger: {mlflow: {...}, csv: {...}}` (conf/logger/; several with
    `logger=[mlflow,csv]`, one dropped with `logger.csv=null`). A single `logger: {_target_: ...}`, the shape
    configs had before, is named `logger`; `~logger` configures none."""
    spec = cfg.get("logger")
    if not spec:
        return {}
    if "_target_" in spec:
        return {"logger": spec}
    return {name: sub for name, sub in spec.items() if sub is not None}


def is_mlflow(spec: DictConfig) -> bool:
    return str(spec.get("_target_", "")).endswith("MLFlowLogger")


def mlflow_config(cfg: DictConfig) -> DictConfig | None:
    """The (first) MLflow logger's config, or None when no MLflow logger is configured."""
    return next((spec for spec in logger_configs(cfg).values() if is_mlflow(spec)), None)


def log_run_metadata(
    loggers: list[Logger], cfg: DictConfig, tags: dict[str, str], labels: dict, resumed: bool = False
) -> None:
    """Flattened resolved config as params; commit and fingerprints as tags; config and labels as artifacts.

    A resumed run keeps its params (MLflow params are immutable) and adds `config_resumed.yaml`."""
    if not resumed:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        for logger in loggers:
            logger.log_hyperparams(resolved)
    if "git_commit" in tags:
        tags = {**git_state(source_checkout(cfg)), **tags}
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
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        raise UserError(f"{run_id}: not a checkpoint file, nor a run in {tracking_uri} (no such store)")
    try:
        ckpt_dir = MlflowClient(tracking_uri).get_run(run_id).data.tags.get("checkpoint_dir")
    except MlflowException as err:
        message = f"{run_id}: not a checkpoint file, nor a run in {tracking_uri}: {err.message}"
        raise UserError(message) from err
    if not ckpt_dir:
        raise UserError(f"run {run_id} has no checkpoint_dir tag: was it trained by train.py?")
    return Path(ckpt_dir)


def checkpoint_folder(cfg: DictConfig) -> Path:
    """Where this run's checkpoints go, its `checkpoint_dir` tag: the checkpoint callback's folder, which
    for a resumed run is the one it resumed from (polyhead.training.loggers.resolve_resume)."""
    spec = (cfg.get("callbacks") or {}).get("checkpoint")
    if spec is not None and spec.get("dirpath"):
        return Path(str(spec.dirpath))
    return Path(cfg.paths.output_dir) / "checkpoints"


def checkpoint_from_run(tracking_uri: str, run_id: str) -> str:
    """The last checkpoint of an earlier MLflow run, to resume it."""
    ckpt = checkpoint_dir(tracking_uri, run_id) / "last.ckpt"
    if not ckpt.is_file():
        raise UserError(f"run {run_id} has no last.ckpt (checkpoint_dir tag: {str(ckpt.parent)!r})")
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


def record_failed_job(
    cfg: DictConfig, tags: dict[str, str], error: BaseException, since: float = 0.0
) -> str | None:
    """Mark this job's MLflow run FAILED with the error as a tag. A sweep job (`tags` = sweep_tags()) gets a
    run even if it failed before one existed (e.g. a bad hyper-parameter), so the sweep shows every job; a
    single run is found by its own checkpoint_dir tag among runs active since `since` (seconds), and a
    run that failed before tracking started gets none. Returns the run id, or None."""
    from mlflow.tracking import MlflowClient

    mlflow = mlflow_config(cfg)
    uri = mlflow.get("tracking_uri") if mlflow is not None else None
    if not uri:
        return None  # no MLflow logger (or its default store): nothing to mark
    if not tags and uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None  # no store yet: the run failed before tracking started
    prepare_store(uri, mlflow.experiment_name, mlflow.get("artifact_location"))
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(mlflow.experiment_name).experiment_id
    if tags:
        query = f"tags.sweep_id = '{tags['sweep_id']}' and tags.job_num = '{tags['job_num']}'"
    else:
        ckpt_dir = str(checkpoint_folder(cfg)).replace("'", "\\'")
        query = f"tags.checkpoint_dir = '{ckpt_dir}'"
    runs = client.search_runs([experiment_id], query, max_results=5, order_by=["attributes.start_time DESC"])
    if not tags:  # this job's run: started, resumed (ended by Lightning) or left running since `since`
        runs = [r for r in runs if _active_since(r.info, int(since * 1000))]
    if runs:
        run_id = runs[0].info.run_id
    elif tags:
        run_id = client.create_run(experiment_id, run_name=default_run_name(cfg), tags=tags).info.run_id
    else:
        return None
    client.set_tag(run_id, "error", f"{type(error).__name__}: {error}"[:5000])
    client.set_terminated(run_id, "FAILED")
    return run_id


def _active_since(info, t0_ms: int) -> bool:
    return info.status == "RUNNING" or max(info.start_time or 0, info.end_time or 0) >= t0_ms


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


class ContinuedMLFlowLogger(MLFlowLogger):
    """MLFlowLogger for a resumed run: a metric at a step the run already holds for that key is not logged
    again. Steps between the last checkpoint and a crash or kill are trained again after resuming (to the
    same values: the RNG states are restored), and MLflow cannot delete logged values, only skip them."""

    _last_steps: dict[str, int] | None = None

    def last_steps(self) -> dict[str, int]:
        """The highest step logged so far for each metric key of this run."""
        if self._last_steps is None:
            client, run_id = self.experiment, self.run_id
            keys = client.get_run(run_id).data.metrics
            self._last_steps = {k: max(m.step for m in client.get_metric_history(run_id, k)) for k in keys}
        return self._last_steps

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        if step is not None:
            last = self.last_steps()
            full = (lambda k: f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}") if self._prefix else (lambda k: k)
            metrics = {k: v for k, v in metrics.items() if step > last.get(full(k), -1)}
        if metrics:
            super().log_metrics(metrics, step)
