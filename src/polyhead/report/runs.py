"""Runs of a sweep read back from MLflow as one long table: configuration, training-set size, seed, metric."""

from __future__ import annotations

import fnmatch
import math

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

X_METRIC = "data/train_examples"  # the x axis of learning curves
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
)
COLUMNS = ["run_id", "config", "train_examples", "seed", "metric", "value"]


def load_runs(client: MlflowClient, sweep_id: str | None, experiment: str | None) -> list[Run]:
    """FINISHED runs with tag sweep_id and/or in the experiment, oldest first; report runs left out."""
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise ValueError(f"no MLflow experiment named {experiment!r}")
        experiment_ids = [exp.experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    query = "attributes.status = 'FINISHED'"
    if sweep_id:
        query += " and tags.sweep_id = '{}'".format(sweep_id.replace("'", "\\'"))
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids, query, order_by=["attributes.start_time ASC"], page_token=token
        )
        runs += [r for r in page if "report_of" not in r.data.tags]
        token = page.token
        if not token:
            return runs


def config_label(params: dict[str, str | None]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "all runs"


def runs_frame(runs: list[Run], metrics: str = "test/*") -> tuple[pd.DataFrame, dict[str, dict], list[str]]:
    """The long table of every metric matching a glob in `metrics` (comma-separated), the params of each
    configuration (by label) and the params that vary between configurations.

    A configuration is labelled by its varying params; the latest run counts when several share a
    configuration, size and seed (a rerun). A run without a `seed` param counts as its own seed."""
    params = [_config_params(r) for r in runs]
    varying = sorted(k for k in {k for p in params for k in p} if len({p.get(k) for p in params}) > 1)
    patterns = metrics.split(",")
    rows, configs = [], {}
    for run, p in zip(runs, params):
        label = config_label({k: p.get(k) for k in varying})
        configs.setdefault(label, p)
        seed = run.data.params.get("seed", run.info.run_id)
        x = train_examples(run)
        for name, value in run.data.metrics.items():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                rows.append((run.info.run_id, label, x, seed, name, value))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame = frame.drop_duplicates(["config", "train_examples", "seed", "metric"], keep="last")  # oldest first
    return frame.reset_index(drop=True), configs, varying


def _config_params(run: Run) -> dict[str, str]:
    return {
        k: v
        for k, v in run.data.params.items()
        if k not in (X_PARAM, X_METRIC) and not any(fnmatch.fnmatchcase(k, p) for p in IGNORED_PARAMS)
    }


def train_examples(run: Run) -> float:
    """Metric (or param) data/train_examples; for runs logged before it existed, a numeric train_limit."""
    value = run.data.metrics.get(X_METRIC, run.data.params.get(X_METRIC, run.data.params.get(X_PARAM)))
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
