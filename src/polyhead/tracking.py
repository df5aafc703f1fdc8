"""MLflow for every run that trains (train, pretrain, distill, spacy_cnn) and exports: what each run records
besides metrics (config, git commit and state, hardware, encoder lineage, label maps), assembled here once;
which of the configured loggers is MLflow's and how it starts or continues a run; artifacts, tags and run
status; the store; the runs written without Lightning (spacy_cnn, a report's run); marking a failed job or a
killed one. Importing it does not import Lightning (the report and the study use it): the Lightning logger
class for resumed runs, `ContinuedMLFlowLogger`, is defined on first use."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from polyhead.hardware import run_tags as hardware_tags

if TYPE_CHECKING:
    from pytorch_lightning.loggers import Logger, MLFlowLogger


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


def run_metadata(cfg: DictConfig, precision: str | int) -> dict[str, str]:
    """The tags every run carries: this machine's hardware and the precision the run computes in, the commit
    of the code it ran (git_commit) and whether that checkout was edited (git_state)."""
    root = source_checkout(cfg)
    return {
        **hardware_tags(precision),  # CPU model, torch's capability, threads, device, precision used
        "git_commit": git_commit(root),
        **git_state(root),
    }


def encoder_tags(cfg: DictConfig) -> dict[str, str]:
    """The encoder a run trains, the pretraining run it came from (a domain-adapted encoder), and where the
    run's checkpoints go (a resumed run's stay where its checkpoints are)."""
    return {
        "encoder": cfg.encoder.name,
        **encoder_lineage(cfg.encoder.name),
        "checkpoint_dir": str(checkpoint_folder(cfg)),
    }


def mlflow_loggers(loggers: list[Logger]) -> list[MLFlowLogger]:
    from pytorch_lightning.loggers import MLFlowLogger

    return [lg for lg in loggers if isinstance(lg, MLFlowLogger)]


def log_artifacts(loggers: list[Logger], directory: Path | str, artifact_path: str) -> None:
    """The files of `directory` under `artifact_path`/ in the run of every MLflow logger among `loggers`."""
    for logger in mlflow_loggers(loggers):
        logger.experiment.log_artifacts(logger.run_id, str(directory), artifact_path)


def set_tags(loggers: list[Logger], tags: dict[str, str]) -> None:
    for logger in mlflow_loggers(loggers):
        for key, value in tags.items():
            logger.experiment.set_tag(logger.run_id, key, value)


def log_files(tracking_uri: str, run_id: str, files: list[Path], artifact_path: str) -> None:
    """`files` under `artifact_path`/ in an earlier run, by id (`python -m polyhead.export` packages)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    for file in files:
        client.log_artifact(run_id, str(file), artifact_path)


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
    set_tags(loggers, tags)
    for logger in mlflow_loggers(loggers):
        client, run_id = logger.experiment, logger.run_id
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / ("config_resumed.yaml" if resumed else "config.yaml")
            config.write_text(OmegaConf.to_yaml(cfg, resolve=True))
            (Path(tmp) / "labels.json").write_text(json.dumps(labels, indent=2))
            client.log_artifact(run_id, str(config))
            client.log_artifact(run_id, str(Path(tmp) / "labels.json"))


def mlflow_logger_settings(cfg: DictConfig, spec: DictConfig, run_id: str | None) -> dict[str, str]:
    """What an MLflow logger's config `spec` is instantiated with besides its own settings: its store made
    ready, the run it continues (`run_id`, when resuming), the default run name (run_name: null)."""
    if spec.get("tracking_uri"):
        prepare_store(spec.tracking_uri, spec.experiment_name, spec.get("artifact_location"))
    extra = {"run_id": run_id} if run_id else {}
    if run_id and spec._target_.endswith(".MLFlowLogger"):
        extra["_target_"] = "polyhead.tracking.ContinuedMLFlowLogger"  # replayed steps are not logged twice
    if spec.get("run_name", "absent") is None:
        extra["run_name"] = default_run_name(cfg)
    return extra


def checkpoint_folder(cfg: DictConfig) -> Path:
    """Where this run's checkpoints go, its `checkpoint_dir` tag: the checkpoint callback's folder, which
    for a resumed run is the one it resumed from (polyhead.training.loggers.resolve_resume)."""
    spec = (cfg.get("callbacks") or {}).get("checkpoint")
    if spec is not None and spec.get("dirpath"):
        return Path(str(spec.dirpath))
    return Path(cfg.paths.output_dir) / "checkpoints"


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
    end_run(client, run_id, "FAILED", {"error": f"{type(error).__name__}: {error}"})
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


def __getattr__(name: str):
    """`ContinuedMLFlowLogger` (a Lightning logger: Lightning is imported when a run resumes, not with this
    module)."""
    if name != "ContinuedMLFlowLogger":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = continued_logger_class()
    return globals()[name]


def continued_logger_class() -> type:
    from pytorch_lightning.loggers import MLFlowLogger
    from pytorch_lightning.utilities import rank_zero_only

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
                history = {k: client.get_metric_history(run_id, k) for k in keys}
                self._last_steps = {k: max(m.step for m in values) for k, values in history.items()}
            return self._last_steps

        @rank_zero_only
        def log_metrics(self, metrics, step=None) -> None:
            if step is not None:
                last, prefix = self.last_steps(), self._prefix
                full = (lambda k: f"{prefix}{self.LOGGER_JOIN_CHAR}{k}") if prefix else (lambda k: k)
                metrics = {k: v for k, v in metrics.items() if step > last.get(full(k), -1)}
            if metrics:
                super().log_metrics(metrics, step)

    ContinuedMLFlowLogger.__qualname__ = "ContinuedMLFlowLogger"  # pickled by name, as a module-level class
    ContinuedMLFlowLogger.__module__ = __name__
    return ContinuedMLFlowLogger


def report_run(client, experiment_id: str, name: str, tags: dict[str, str], folder: Path) -> str:
    """A FINISHED run `name` with `tags` holding the files of `folder` (a report's run); its id."""
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    client.log_artifacts(run_id, str(folder))
    client.set_terminated(run_id)
    return run_id


def end_run(client, run_id: str, status: str, tags: dict[str, str] | None = None) -> None:
    """Ends a run `status` (FAILED, KILLED) with `tags` saying why (an `error`, a `study_note`)."""
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, value[:5000])
    client.set_terminated(run_id, status)


class TrackedRun:
    """One MLflow run written through MlflowClient, for a run Lightning does not train (spacy_cnn); without a
    client (no MLflow logger configured) nothing is logged."""

    def __init__(self, client=None, run_id: str | None = None, uri: str | None = None):
        self.client, self.run_id, self.uri = client, run_id, uri

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        if self.client:
            # A spaCy section's registered function (`training.optimizer.@optimizers`) as the section's value.
            batch = [Param(k.split(".@")[0], str(v)) for k, v in params.items()]
            for i in range(0, len(batch), 100):
                self.client.log_batch(self.run_id, params=batch[i : i + 100])

    def log_metrics(self, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        if self.client:
            now = int(time.time() * 1000)
            batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
            self.client.log_batch(self.run_id, metrics=batch)

    def set_tag(self, key: str, value: str) -> None:
        if self.client:
            self.client.set_tag(self.run_id, key, value)

    def log_artifact(self, file: Path, folder: str | None = None) -> None:
        if self.client:
            self.client.log_artifact(self.run_id, str(file), folder)

    def log_artifacts(self, directory: Path, folder: str) -> None:
        if self.client:
            self.client.log_artifacts(self.run_id, str(directory), folder)

    def describe(self) -> str:
        return f"MLflow run {self.run_id} in {self.uri}" if self.client else "(no MLflow logger configured)"


@contextmanager
def tracked_run(cfg: DictConfig, name: str, tags: dict[str, str]) -> Iterator[TrackedRun]:
    """An MLflow run named `name` with `tags` in the configured logger's store and experiment; FINISHED on
    success, FAILED with an `error` tag on an error. No MLflow logger configured: a run that logs nothing."""
    from mlflow.tracking import MlflowClient

    spec = mlflow_config(cfg)
    if spec is None:
        yield TrackedRun()
        return
    prepare_store(spec.get("tracking_uri") or "", spec.experiment_name, spec.get("artifact_location"))
    client = MlflowClient(spec.get("tracking_uri"))
    experiment = client.get_experiment_by_name(spec.experiment_name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(spec.experiment_name)
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    run = TrackedRun(client, run_id, spec.get("tracking_uri"))
    try:
        yield run
    except BaseException as err:
        end_run(client, run.run_id, "FAILED", {"error": f"{type(err).__name__}: {err}"})
        raise
    client.set_terminated(run.run_id, "FINISHED")
