"""Learning curves and seed statistics of a sweep, read back from MLflow and logged to it as a report run.

    python -m polyhead.report sweep_id=<id>
    python -m polyhead.report experiment=polyhead compare="optim/layer_decay=1.0 vs optim/layer_decay=0.9"

Options (key=value): sweep_id and/or experiment select FINISHED runs; compare="A vs B" (repeatable, syntax in
report.compare; default: every pair of configurations); metrics= comma-separated globs (default test/*);
level= interval coverage (default 0.95); out= folder (default <project>/outputs/reports/<id>);
tracking_uri= (default the project's sqlite:///<project>/mlruns/mlflow.db); log=false skips MLflow.

Writes learning_curve_<metric>.png (x = training examples, mean ± 1 std over seeds, one line per
configuration), summary.csv/.md (mean, std, n, seeds), differences.csv/.md (mean(A) - mean(B) with its
interval) and runs.csv (the run behind every value), then logs the folder as the artifacts of a new run
`report <id>` tagged `report_of=<id>` in the runs' experiment.
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
from polyhead.report.compare import differences, summarize
from polyhead.report.runs import load_runs, runs_frame

OPTIONS = {"sweep_id", "experiment", "compare", "metrics", "level", "out", "tracking_uri", "log"}


def build_report(client: MlflowClient, options: dict, out: Path) -> tuple[list, pd.DataFrame, pd.DataFrame]:
    """Reads the runs, writes every file of the report to `out`; returns (runs, summary, differences)."""
    from polyhead.plots import learning_curve

    runs = load_runs(client, options.get("sweep_id"), options.get("experiment"))
    if not runs:
        raise ValueError(f"no FINISHED runs for {_selection(options)} in {client.tracking_uri}")
    frame, configs, varying = runs_frame(runs, options.get("metrics", "test/*"))
    level = float(options.get("level", 0.95))
    summary = summarize(frame)
    diffs = differences(frame, configs, varying, options.get("compare", []), level)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "runs.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    diffs.to_csv(out / "differences.csv", index=False)
    header = f"{len(runs)} FINISHED runs ({_selection(options)}); configurations differ in: "
    header += ", ".join(varying) or "nothing (seeds only)"
    (out / "summary.md").write_text(summary_markdown(summary, header))
    (out / "differences.md").write_text(differences_markdown(diffs, header, level))
    for metric, rows in summary.dropna(subset=["train_examples"]).groupby("metric"):
        curves = {c: (g["train_examples"], g["mean"], g["std"]) for c, g in rows.groupby("config")}
        learning_curve(curves, metric, out / f"learning_curve_{re.sub(r'[^A-Za-z0-9_.-]', '_', metric)}.png")
    return runs, summary, diffs


def _selection(options: dict) -> str:
    return " and ".join(f"{k}={options[k]}" for k in ("sweep_id", "experiment") if options.get(k))


def _number(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _size(x: float) -> str:
    return "all" if x is None or math.isnan(x) else f"{x:.0f}"


def summary_markdown(summary: pd.DataFrame, header: str) -> str:
    lines = [
        "# Summary",
        "",
        header + ".",
        "Mean ± sample standard deviation over seeds; n = number of seeds.",
    ]
    for metric, rows in summary.groupby("metric"):
        table = [
            [r.config, _size(r.train_examples), f"{_number(r.mean)} ± {_number(r.std)}", str(r.n), r.seeds]
            for r in rows.itertuples()
        ]
        lines += [
            "",
            f"## {metric}",
            "",
            *_table(["configuration", "train examples", "mean ± std", "n", "seeds"], table),
        ]
    return "\n".join(lines) + "\n"


def differences_markdown(diffs: pd.DataFrame, header: str, level: float) -> str:
    method = "paired by seed when both sides have the same seeds, otherwise Welch"
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
            [_size(r.train_examples), r.a, r.b, r.held, _number(r.mean_a), _number(r.mean_b), _number(r.diff),
             f"[{_number(r.ci_low)}, {_number(r.ci_high)}]", f"{r.n_a}, {r.n_b}", r.method]
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


def log_report(client: MlflowClient, runs: list, report_id: str, out: Path) -> str:
    """A new run `report <id>` (tag report_of=<id>) in the runs' experiment, holding the report files."""
    experiment_id = Counter(r.info.experiment_id for r in runs).most_common(1)[0][0]
    run = client.create_run(experiment_id, run_name=f"report {report_id}", tags={"report_of": report_id})
    client.log_artifacts(run.info.run_id, str(out))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


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
    if not (options.get("sweep_id") or options.get("experiment")):
        parser.error("give sweep_id=<id> and/or experiment=<name>")
    return options


def main(argv: list[str] | None = None) -> Path:
    options = parse_args(argv)
    report_id = options.get("sweep_id") or options["experiment"]
    root = project_root()
    client = MlflowClient(options.get("tracking_uri", f"sqlite:///{root}/mlruns/mlflow.db"))
    out = Path(options.get("out", root / "outputs" / "reports" / re.sub(r"[^\w.-]", "_", report_id)))
    runs, summary, diffs = build_report(client, options, out)
    print(f"report of {len(runs)} runs ({_selection(options)}): {out}")
    if options.get("log", "true").lower() not in ("false", "0", "no"):
        print(f"logged as MLflow run {log_report(client, runs, report_id, out)} (tag report_of={report_id})")
    return out
