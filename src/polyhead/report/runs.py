"""Runs of a sweep read back from MLflow as one long table: configuration, training-set size, seed, metric."""

from __future__ import annotations

import fnmatch
import math
from collections import defaultdict

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

X_METRIC = "data/train_examples"  # the x axis of learning curves; per task: data/train_examples/<task>
X_PARAM = "data/train_limit"  # what sets it; not part of a configuration
# Params that differ between the jobs of one sweep without being a setting of the experiment.
IGNORED_PARAMS = (
    "seed",
    "data/seed",
    "paths/*",
    "logger/*",
    "trainer/default_root_dir",
    "callbacks/*/dirpath",
    "run_name",
    "resume",
    "threads",
    "study/id",
)
# Modules that moved, old dotted path -> new: a param naming code (a callback's `_target_`) of a run logged
# before the move reads as the same configuration as the same setting logged after it.
MOVED_MODULES = {"polyhead.callbacks.": "polyhead.training.callbacks."}
COLUMNS = ["run_id", "config", "train_limit", "train_examples", "seed", "metric", "value"]
SELECTORS = {"sweep_id": "sweep_id", "study_id": "study_id"}  # option -> the tag it selects runs by
BEST = "best/"  # best/<metric>: the best value of <metric> over the run's history (see best_values)


def load_runs(client: MlflowClient, experiment: str | None = None, **tags: str | None) -> list[Run]:
    """FINISHED runs in the experiment and/or with the given tags (sweep_id=..., study_id=...), oldest
    first; report runs left out."""
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise ValueError(f"no MLflow experiment named {experiment!r}")
        experiment_ids = [exp.experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    query = "attributes.status = 'FINISHED'"
    for tag, value in tags.items():
        if value:
            query += " and tags.{} = '{}'".format(SELECTORS[tag], value.replace("'", "\\'"))
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids, query, order_by=["attributes.start_time ASC"], page_token=token
        )
        runs += [r for r in page if "report_of" not in r.data.tags]
        token = page.token
        if not token:
            return runs


def best_values(client: MlflowClient, runs: list[Run], patterns: list[str]) -> dict[str, dict[str, float]]:
    """run id -> {best/<metric>: the best value of <metric> over every step the run logged it} for each metric
    whose best/ name matches a glob in `patterns`: the lowest for a loss (a name ending in `loss`), else the
    highest. best/val/tagger_acc is a task's best dev score over the run's validations, wherever the
    checkpoint the run kept (best val/objective, all tasks at once) was; the latest value is the last one."""
    wanted = [p for p in patterns if p.startswith(BEST)]
    values: dict[str, dict[str, float]] = {}
    for run in runs if wanted else []:
        values[run.info.run_id] = {}
        for name in run.data.metrics:
            if any(fnmatch.fnmatchcase(BEST + name, pattern) for pattern in wanted):
                history = [m.value for m in client.get_metric_history(run.info.run_id, name)]
                values[run.info.run_id][BEST + name] = (min if name.endswith("loss") else max)(history)
    return values


def config_label(params: dict[str, str | None]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "all runs"


def runs_frame(
    runs: list[Run], metrics: str = "test/*", by: list[str] | None = None, best: dict | None = None
) -> tuple[pd.DataFrame, dict[str, dict], list[str], list[str]]:
    """The long table of every metric matching a glob in `metrics` (comma-separated), the params of each
    configuration (by label), the params that tell configurations apart, and notes on what was left out.
    A run's metrics are its latest values and, where `best` (best_values) has them, its best/ values.

    A configuration is labelled by the params in `by`, or by default by every param that varies between
    runs (less seeds, sizes and paths). The latest run counts when runs with the same params share a size
    and seed (a rerun). Runs of one configuration that differ in other params are merged: with `by`
    study/arm, the three single-task runs of a size and seed make one "single" configuration whose tagger
    metrics come from the tagger run, and so on. A metric that several such runs report (the objective,
    the loss) is ambiguous there and left out, with a note. A run without a `seed` param is its own seed."""
    params = [_config_params(r) for r in runs]
    if by:
        varying = list(by)
    else:
        varying = sorted(k for k in {k for p in params for k in p} if len({p.get(k) for p in params}) > 1)
    patterns = metrics.split(",")
    rows, configs = [], {}
    for run, p in zip(runs, params):
        label = config_label({k: p.get(k) for k in varying})
        configs.setdefault(label, {k: p[k] for k in varying if k in p} if by else p)
        seed, limit = run.data.params.get("seed", run.info.run_id), train_limit(run)
        signature = tuple(sorted(p.items()))
        for name, value in {**run.data.metrics, **(best or {}).get(run.info.run_id, {})}.items():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                x = train_examples(run, name)
                rows.append((run.info.run_id, label, limit, x, seed, name, value, signature))
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "signature"])
    key = ["config", "train_limit", "seed", "metric"]
    frame = frame.drop_duplicates([*key, "signature"], keep="last")  # oldest first: a rerun replaces
    frame, notes = _drop_ambiguous(frame, key)
    return frame.drop(columns="signature").reset_index(drop=True), configs, varying, notes


def _drop_ambiguous(frame: pd.DataFrame, key: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Leave out a configuration's metric wherever runs with different params report it."""
    counts = frame.groupby(key)["signature"].transform("nunique")
    ambiguous = frame[counts > 1]
    notes = []
    for (config, metric), rows in ambiguous.groupby(["config", "metric"]):
        differ = _differing([dict(s) for s in rows["signature"].unique()])
        notes.append(f"{metric} of {config}: reported by runs that differ in {', '.join(differ)}; left out")
    drop = set(zip(ambiguous["config"], ambiguous["metric"]))
    kept = frame[[(c, m) not in drop for c, m in zip(frame["config"], frame["metric"])]]
    return kept, notes


def _differing(params: list[dict]) -> list[str]:
    values: dict[str, set] = defaultdict(set)
    for p in params:
        for k in {k for q in params for k in q}:
            values[k].add(p.get(k))
    return sorted(k for k, v in values.items() if len(v) > 1)


def _config_params(run: Run) -> dict[str, str]:
    return {
        k: current_name(v)
        for k, v in run.data.params.items()
        if k not in (X_PARAM, X_METRIC) and not any(fnmatch.fnmatchcase(k, p) for p in IGNORED_PARAMS)
    }


def current_name(value: str) -> str:
    """A param value, with a moved module's old dotted path (MOVED_MODULES) read as its new one."""
    old = next((old for old in MOVED_MODULES if str(value).startswith(old)), None)
    return MOVED_MODULES[old] + value.removeprefix(old) if old else value


def train_limit(run: Run) -> str:
    """The requested training-set size: data/train_limit, "all" when it was null."""
    value = run.data.params.get(X_PARAM)
    return "all" if value in (None, "None", "null", "") else value


def train_examples(run: Run, metric: str = "") -> float:
    """The examples a metric's task trained on: `data/train_examples/<task>` for a metric `<split>/<task>_...`
    when the run logged it, else data/train_examples (metric or param); for runs logged before those
    existed, a numeric train_limit. best/<metric> is <metric>'s."""
    name = metric.removeprefix(BEST).partition("/")[2]
    for key, value in run.data.metrics.items():
        task = key.removeprefix(X_METRIC + "/")
        if key.startswith(X_METRIC + "/") and name.startswith(task + "_"):
            return float(value)
    value = run.data.metrics.get(X_METRIC, run.data.params.get(X_METRIC, run.data.params.get(X_PARAM)))
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
