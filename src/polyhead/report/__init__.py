"""Learning curves and seed statistics of a sweep, read back from MLflow and logged to it as a report run.

    python -m polyhead.report sweep_id=<id>
    python -m polyhead.report experiment=polyhead compare="optim/layer_decay=1.0 vs optim/layer_decay=0.9"
    python -m polyhead.report study_id=<id> by=study/arm compare="study/arm=multitask vs study/arm=single"

Options (key=value): sweep_id, study_id (tags) and/or experiment select FINISHED runs; by= comma-separated
params whose values name a configuration (default: every param that varies; runs of one configuration that
differ in others are merged, see report.runs); compare="A vs B" (repeatable, syntax in report.compare;
default: every pair of configurations); metrics= comma-separated globs (default test/*; best/<metric>, e.g.
best/val/*, is a metric's best value over the run's history, the lowest for a loss); level= interval
coverage (default 0.95); out= folder (default <project>/outputs/reports/<id>); tracking_uri= (default the
project's sqlite:///<project>/mlruns/mlflow.db); log=false skips MLflow; partial=true leaves out (and names) a
comparison with a side no run has yet, e.g. a study's arm still training, instead of stopping.

Writes learning_curve_<metric>.png (x = training examples of the metric's task, mean ± 1 std over seeds,
one line per configuration), difference_<metric>.png (each comparison's A - B with its interval at every
size), summary.csv/.md (mean, std, n, seeds), differences.csv/.md (mean(A) - mean(B) with its interval) and
runs.csv (the run behind every value), then logs the folder as the artifacts of a new run `report <id>`
tagged `report_of=<id>` in the runs' experiment.
"""

from __future__ import annotations

import argparse
import math
import re
from collections import Counter
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from polyhead.config import project_root
from polyhead.report.compare import differences, parse_compare, summarize
from polyhead.report.runs import SELECTORS, best_values, config_label, load_runs, runs_frame
from polyhead.tracking import report_run

OPTIONS = {"sweep_id", "study_id", "experiment", "by", "compare", "metrics", "level", "out", "tracking_uri"}
OPTIONS |= {"log", "partial"}


def build_report(client: MlflowClient, options: dict, out: Path) -> tuple[list, pd.DataFrame, pd.DataFrame]:
    """Reads the runs, writes every file of the report to `out`; returns (runs, summary, differences)."""
    tags = {key: options.get(key) for key in SELECTORS}
    runs = load_runs(client, options.get("experiment"), **tags)
    if not runs:
        raise ValueError(f"no FINISHED runs for {_selection(options)} in {client.tracking_uri}")
    by = [k.strip() for k in options["by"].split(",") if k.strip()] if options.get("by") else None
    metrics = options.get("metrics", "test/*")
    best = best_values(client, runs, metrics.split(","))
    frame, configs, varying, notes = runs_frame(runs, metrics, by, best)
    level = float(options.get("level", 0.95))
    summary = summarize(frame)
    partial = str(options.get("partial", "false")).lower() == "true"
    diffs = differences(frame, configs, varying, options.get("compare", []), level, partial)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "runs.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    diffs.to_csv(out / "differences.csv", index=False)
    header = f"{len(runs)} FINISHED runs ({_selection(options)}); configurations differ in: "
    header += ", ".join(varying) or "nothing (seeds only)"
    header += "".join(f".\nLeft out: {note}" for note in notes)
    header += "".join(
        f".\nNot compared (no size where both sides have FINISHED runs): {c}"
        for c in uncompared(options, diffs)
    )
    (out / "summary.md").write_text(summary_markdown(summary, header))
    (out / "differences.md").write_text(differences_markdown(diffs, header, level))
    draw(summary, diffs, level, out)
    return runs, summary, diffs


def uncompared(options: dict, diffs: pd.DataFrame) -> list[str]:
    """The requested comparisons the report has no row of (partial=true left them out)."""
    done = set(zip(diffs.a, diffs.b))
    sides = {text: parse_compare(text) for text in options.get("compare", [])}
    return [text for text, (a, b) in sides.items() if (config_label(a), config_label(b)) not in done]


def draw(summary: pd.DataFrame, diffs: pd.DataFrame, level: float, out: Path) -> None:
    """learning_curve_<metric>.png per metric; difference_<metric>.png per metric with a comparison."""
    from polyhead.plots import difference_intervals, learning_curve

    for metric, rows in summary.dropna(subset=["train_examples"]).groupby("metric"):
        by_config = rows.groupby("config", sort=False)
        curves = {c: (g["train_examples"], g["mean"], g["std"]) for c, g in by_config}
        learning_curve(curves, metric, out / f"learning_curve_{file_stem(metric)}.png")
    for metric, rows in diffs.dropna(subset=["train_examples"]).groupby("metric"):
        series = {
            f"{a} − {b}" + (f" ({held})" if isinstance(held, str) and held else ""): (
                g["train_examples"],
                g["diff"],
                g["ci_low"],
                g["ci_high"],
            )
            for (a, b, held), g in rows.groupby(["a", "b", "held"], sort=False, dropna=False)
        }
        difference_intervals(series, metric, level, out / f"difference_{file_stem(metric)}.png")


def file_stem(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", metric)


def _selection(options: dict) -> str:
    keys = ("sweep_id", "study_id", "experiment")
    return " and ".join(f"{k}={options[k]}" for k in keys if options.get(k))


def _number(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _size(x: float, limit: str = "") -> str:
    """The examples trained on, and the requested size where it differs: `1601 (all)`, `1601 (limit 2000)`."""
    if x is None or math.isnan(x):
        return limit or "all"
    if limit == "all":
        return f"{x:.0f} (all)"
    return f"{x:.0f}" if not limit or limit in (f"{x:.0f}", str(x)) else f"{x:.0f} (limit {limit})"


def summary_markdown(summary: pd.DataFrame, header: str) -> str:
    lines = [
        "# Summary",
        "",
        header + ".",
        "Mean ± sample standard deviation over seeds; n = number of seeds.",
    ]
    for metric, rows in summary.groupby("metric"):
        table = [
            [r.config, _size(r.train_examples, r.train_limit), f"{_number(r.mean)} ± {_number(r.std)}",
             str(r.n), r.seeds]
            for r in rows.itertuples()
        ]  # fmt: skip
        lines += [
            "",
            f"## {metric}",
            "",
            *_table(["configuration", "train examples", "mean ± std", "n", "seeds"], table),
        ]
    return "\n".join(lines) + "\n"


def differences_markdown(diffs: pd.DataFrame, header: str, level: float) -> str:
    method = "paired by seed over the seeds both sides ran (two or more), otherwise Welch"
    lines = [
        "# Differences",
        "",
        header + ".",
        f"A − B = mean(A) − mean(B), {level:.0%} t interval ({method}).",
    ]
    if diffs.empty:
        lines += ["", "Nothing to compare: one configuration, or no training-set size both sides share."]
    for metric, rows in diffs.groupby("metric"):
        table = [
            [_size(r.train_examples, r.train_limit), r.a, r.b, r.held, _number(r.mean_a), _number(r.mean_b),
             _number(r.diff), f"[{_number(r.ci_low)}, {_number(r.ci_high)}]", f"{r.n_a}, {r.n_b}", r.method]
            for r in rows.itertuples()
        ]  # fmt: skip
        columns = [
            "train examples",
            "A",
            "B",
            "held",
            "mean A",
            "mean B",
            "A − B",
            f"{level:.0%} CI",
            "n",
            "method",
        ]
        lines += ["", f"## {metric}", "", *_table(columns, table)]
    return "\n".join(lines) + "\n"


def log_report(
    client: MlflowClient, runs: list, report_id: str, out: Path, tags: dict[str, str] | None = None
) -> str:
    """A new run `report <id>` (tag report_of=<id>, plus `tags`) in the runs' experiment, holding the report
    files."""
    experiment_id = Counter(r.info.experiment_id for r in runs).most_common(1)[0][0]
    tags = {"report_of": report_id, **(tags or {})}
    return report_run(client, experiment_id, f"report {report_id}", tags, out)


def parse_args(argv: list[str] | None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m polyhead.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("options", nargs="*", metavar="key=value")
    options: dict = {"compare": []}
    for item in parser.parse_args(argv).options:
        key, sep, value = item.partition("=")
        if not sep or key not in OPTIONS:
            parser.error(f"expected key=value with key one of {sorted(OPTIONS)}, got {item!r}")
        if key == "compare":
            options["compare"].append(value)
        else:
            options[key] = value
    if not any(options.get(k) for k in ("sweep_id", "study_id", "experiment")):
        parser.error("give sweep_id=<id>, study_id=<id> and/or experiment=<name>")
    return options


def main(argv: list[str] | None = None) -> Path:
    options = parse_args(argv)
    report_id = options.get("study_id") or options.get("sweep_id") or options["experiment"]
    root = project_root()
    client = MlflowClient(options.get("tracking_uri", f"sqlite:///{root}/mlruns/mlflow.db"))
    out = Path(options.get("out", root / "outputs" / "reports" / re.sub(r"[^\w.-]", "_", report_id)))
    runs, summary, diffs = build_report(client, options, out)
    print(f"report of {len(runs)} runs ({_selection(options)}): {out}")
    if options.get("log", "true").lower() not in ("false", "0", "no"):
        print(f"logged as MLflow run {log_report(client, runs, report_id, out)} (tag report_of={report_id})")
    return out
