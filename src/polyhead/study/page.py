"""A study's results page (docs/study.md), filled from MLflow, and the check that it still matches the runs.

The page keeps hand-written text outside its generated blocks (`<!-- study:NAME -->` up to
`<!-- /study:NAME -->`): setup (command, commit, CPU, wall time, minutes per run), results (per test metric
of the study: plots and a table of means and intervals) and dev (the same table for each task's best dev
score, best/val/<metric>). `publish` rewrites the blocks and the page's folder (docs/study/: the plots as
PNG, summary.csv, differences.csv, runs.csv: every run's value of every metric, study.json) from the study's
runs and report, so that the tables can be recomputed without the MLflow store; `check` reads the runs back
from MLflow, renders every block again and lists each difference from the committed page and tables."""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from polyhead.errors import UserError
from polyhead.report import build_report, file_stem, uncompared
from polyhead.report.compare import seed_order, size_order
from polyhead.report.runs import train_limit

BLOCK = re.compile(r"(<!-- study:(\w+) -->\n)(.*?)(<!-- /study:\2 -->)", re.S)
OPTIONAL = {"dev"}  # blocks a page shows only if it has their markers (pages published before they existed)
ARM = "study/arm"
TABLES = ("summary.csv", "differences.csv", "runs.csv")  # the report's tables a page's folder keeps


def read_blocks(text: str) -> dict[str, str]:
    return {m.group(2): m.group(3) for m in BLOCK.finditer(text)}


def fill(text: str, blocks: dict[str, str]) -> str:
    """`text` with each generated block replaced; a block the page lacks is an error, unless optional."""
    missing = set(blocks) - set(read_blocks(text)) - OPTIONAL
    if missing:
        raise ValueError(
            f"the page has no block(s) {sorted(missing)} (<!-- study:NAME --> ... <!-- /study:NAME -->)"
        )
    return BLOCK.sub(lambda m: m.group(1) + blocks.get(m.group(2), m.group(3)) + m.group(4), text)


def _fmt(value: float, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _size(limit: str, x: float) -> str:
    """`100`, `all (12,543)`, or `1,601 (2000)` where a task has fewer examples than asked for."""
    count = "?" if math.isnan(x) else f"{x:,.0f}"
    if limit == "all":
        return f"all ({count})"
    return count if count.replace(",", "") == limit else f"{count} ({limit})"


def verdict(row, a: str, b: str) -> str:
    """What an interval of A − B says, for metrics where higher is better."""
    if math.isnan(row.ci_low) or math.isnan(row.ci_high):
        return "no interval (n < 2)"
    if row.ci_low > 0:
        return f"{a} ahead"
    if row.ci_high < 0:
        return f"{b} ahead"
    return "cannot be told apart"


def arm_of(label: str) -> str:
    return label.removeprefix(f"{ARM}=")


def _mean_cell(row) -> str:
    return f"{_fmt(row.mean)} ± {_fmt(row.std)} ({row.n})"


def _difference_cell(row) -> str:
    """A − B [interval], how it was computed over how many seeds, and what it says: `paired (3)` over three
    seeds both arms ran, `welch (6, 3)` over six of A's and three of B's."""
    interval = f"{_fmt(row.diff, True)} [{_fmt(row.ci_low, True)}, {_fmt(row.ci_high, True)}]"
    seeds = f"{row.n_a}" if row.method == "paired" else f"{row.n_a}, {row.n_b}"
    return f"{interval} {row.method} ({seeds}): {verdict(row, arm_of(row.a), arm_of(row.b))}"


def metric_table(summary: pd.DataFrame, diffs: pd.DataFrame) -> list[str]:
    """A row per size: each arm's mean ± std (n seeds), each comparison's A − B [interval] and verdict."""
    means = {(r.config, r.train_limit, r.train_examples): r for r in summary.itertuples()}
    intervals = {(r.a, r.b, r.train_limit, r.train_examples): r for r in diffs.itertuples()}
    arms = list(dict.fromkeys(summary.config))
    pairs = list(dict.fromkeys(zip(diffs.a, diffs.b)))
    header = ["train examples per task", *map(arm_of, arms)]
    header += [f"{arm_of(a)} − {arm_of(b)} (95% CI)" for a, b in pairs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for size in sorted({key[1:] for key in means}, key=lambda size: size_order(*size)):
        cells = [_size(*size)]
        cells += [_mean_cell(means[(arm, *size)]) if (arm, *size) in means else "–" for arm in arms]
        cells += [
            _difference_cell(intervals[(*p, *size)]) if (*p, *size) in intervals else "–" for p in pairs
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def results_block(
    summary: pd.DataFrame, diffs: pd.DataFrame, metrics: list[str], assets: str, uncompared: list[str]
) -> str:
    """Per metric: its learning curves and differences as plots, and its table; first, the comparisons the
    runs cannot make yet."""
    lines = [f"Not compared yet (no size where both sides have FINISHED runs): {c}." for c in uncompared]
    lines += [""] if lines else []
    for metric in metrics:
        stem, rows = file_stem(metric), diffs[diffs.metric == metric]
        lines += [f"### `{metric}`", "", f"![{metric}: learning curves]({assets}/learning_curve_{stem}.png)"]
        if not rows.empty:
            lines.append(f"![{metric}: differences]({assets}/difference_{stem}.png)")
        lines += ["", *metric_table(summary[summary.metric == metric], rows), ""]
    return "\n".join(lines)


def dev_block(summary: pd.DataFrame, diffs: pd.DataFrame, metrics: list[str]) -> str:
    """Per dev metric (best/val/<task metric>: the task's best dev score over a run's validations,
    wherever the checkpoint the run tested was), its table, without plots."""
    lines = []
    for metric in metrics:
        lines += [f"### `{metric}`", ""]
        lines += [*metric_table(summary[summary.metric == metric], diffs[diffs.metric == metric]), ""]
    return "\n".join(lines)


def _seconds(run) -> float:
    return ((run.info.end_time or run.info.start_time) - run.info.start_time) / 1000


def busy_seconds(runs: list) -> float:
    """The time at least one of `runs` was running: the union of their [start, end] intervals. A study run
    over several sessions idles between them; this is its wall time without those gaps."""
    busy, until = 0.0, float("-inf")
    for start, end in sorted((r.info.start_time, r.info.end_time or r.info.start_time) for r in runs):
        busy += max(0, end - max(start, until))
        until = max(until, end)
    return busy / 1000


def study_facts(client: MlflowClient, study_id: str, runs: list) -> dict:
    """What the page says about how the study ran, from its runs and its latest report run's tags."""
    experiments = sorted({r.info.experiment_id for r in runs})
    query = f"tags.study_id = '{study_id}' and attributes.status != 'FINISHED'"
    unfinished = client.search_runs(experiments, query)
    reports = client.search_runs(
        experiments, f"tags.report_of = '{study_id}'", order_by=["attributes.start_time DESC"]
    )
    latest = lambda tag: next((r.data.tags[tag] for r in reports if r.data.tags.get(tag)), None)  # noqa: E731
    every = [*runs, *unfinished]
    start = min(r.info.start_time for r in every)
    end = max(r.info.end_time or r.info.start_time for r in every)
    facts = {"study_id": study_id, "commands": commands(reports), "finished": len(runs)}
    statuses = Counter(r.info.status for r in unfinished)
    facts["unfinished"] = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())) or "no others"
    # a study resumed over sessions may have run on several CPUs and commits: each with its number of runs
    facts["cpu"] = counted(
        runs, lambda t: f"{t.get('hw/cpu_model', '?')} ({t.get('hw/cpu_capability', '?')})"
    )
    facts["threads"] = counted(runs, lambda t: t.get("hw/threads", "?"))
    facts["precision"] = counted(runs, lambda t: t.get("hw/precision", "?"))
    facts["commit"] = counted(runs, lambda t: f"`{t.get('git_commit', '?')}`")
    if set(r.data.tags.get("git_commit") for r in runs) == {"unknown"}:  # runs of an older polyhead whose
        # root was outside the checkout recorded no commit: the study's checkout
        facts["commit"] = f"`{latest('study_commit') or '?'}` (scripts/study.py's checkout)"
    facts["span"] = (end - start) / 1000
    facts["busy"] = busy_seconds(every)
    facts["compute"] = sum(_seconds(r) for r in runs)
    facts["kept"] = {r.info.run_id: kept_validation(client, r) for r in runs}
    return facts


def counted(runs: list, key) -> str:
    """The values of `key(tags)` over `runs`, most runs first, each with its count when there are several."""
    counts = Counter(key(r.data.tags) for r in runs).most_common()
    if len(counts) == 1:
        return counts[0][0]
    return ", ".join(f"{value} ({n} run{'s' if n > 1 else ''})" for value, n in counts)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def _arm(run) -> str:
    heads = sorted({k.split("/")[2] for k in run.data.params if k.startswith("model/heads/")})
    return f"{run.data.params.get(ARM, '?')} ({'+'.join(heads)})"


def arm_size_table(runs: list, title: str, cell) -> list[str]:
    """A table with a row per arm (its heads) and a column per size, each cell `cell(its runs)`."""
    groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        groups[_arm(run)][train_limit(run)].append(run)
    sizes = sorted({s for by_size in groups.values() for s in by_size}, key=lambda s: size_order(s, 0.0))
    lines = [f"| {title} | " + " | ".join(sizes) + " |", "|---|" + "---|" * len(sizes)]
    for arm, by_size in sorted(groups.items()):
        lines.append(
            f"| {arm} | " + " | ".join(cell(v) if (v := by_size.get(s)) else "–" for s in sizes) + " |"
        )
    return lines


def run_minutes(runs: list) -> list[str]:
    """A table of the mean wall time of one run (minutes) per arm (heads) and size."""
    return arm_size_table(
        runs, "minutes per run (mean)", lambda rs: f"{sum(map(_seconds, rs)) / len(rs) / 60:.1f}"
    )


def kept_validation(client: MlflowClient, run) -> tuple[int, int] | None:
    """(k, K): the checkpoint the run tested is that of its k-th of K validations, the first best value of its
    checkpoint monitor (ModelCheckpoint keeps a new best only if strictly better), or the last (K, K) where it
    monitored nothing (`callbacks.checkpoint.monitor=null` keeps the latest); None without a history."""
    monitor = run.data.params.get("callbacks/checkpoint/monitor")
    if monitor in ("None", "null", ""):
        validations = client.get_metric_history(run.info.run_id, "val/objective")
        return (len(validations), len(validations)) if validations else None
    history = (
        sorted(client.get_metric_history(run.info.run_id, monitor), key=lambda m: m.step) if monitor else []
    )
    if not history:
        return None
    values = [m.value for m in history]
    best = (min if run.data.params.get("callbacks/checkpoint/mode") == "min" else max)(values)
    return values.index(best) + 1, len(values)


def kept_validations(kept: dict[str, tuple[int, int] | None], runs: list) -> list[str]:
    """A table of the validation each run's tested checkpoint is from, per seed, per arm and size: "2, 3, 2 of
    8"; the last one kept means the run was still improving when its budget ended."""

    def cell(rs: list) -> str:
        seeds = sorted(rs, key=lambda r: seed_order(r.data.params.get("seed", "")))
        pairs = [kept.get(r.info.run_id) for r in seeds]
        if any(p is None for p in pairs):
            return "?"
        if len({total for _, total in pairs}) == 1:
            return ", ".join(str(k) for k, _ in pairs) + f" of {pairs[0][1]}"
        return ", ".join(f"{k} of {total}" for k, total in pairs)

    return arm_size_table(runs, "validation of the tested checkpoint (per seed)", cell)


def commands(reports: list) -> list[str]:
    """The command of every `study.py run` of the study (each logs a report run), oldest first, each once: a
    study resumed with other overrides (more seeds, some arms only) ran as all of them together."""
    ordered = sorted(reports, key=lambda r: r.info.start_time)
    return list(
        dict.fromkeys(r.data.tags["study_command"] for r in ordered if r.data.tags.get("study_command"))
    )


def command_lines(commands: list[str]) -> list[str]:
    if not commands:
        return ["- command: not recorded yet (a `study.py run` that ends records it on its report run)"]
    if len(commands) == 1:
        return [f"- command: `{commands[0]}`"]
    return [
        f"- commands: the study ran as {len(commands)} `study.py run`s, oldest first (each `--resume` "
        "trained what the ones before had not):",
        *(f"  {i}. `{command}`" for i, command in enumerate(commands, 1)),
    ]


def setup_block(facts: dict, runs: list) -> str:
    """How the study ran: id, command, commit, CPU, wall time, and the time of one run per arm and size."""
    lines = [
        f"- study id: `{facts['study_id']}`: {facts['finished']} FINISHED runs ({facts['unfinished']})",
        *command_lines(facts["commands"]),
        f"- commit: {facts['commit']}",
        f"- CPU: {facts['cpu']}; torch threads per run: {facts['threads']}; trained in {facts['precision']}",
        f"- wall time with at least one run training: {_hours(facts['busy'])} (from the first run's start to "
        f"the last run's end: {_hours(facts['span'])}; the FINISHED runs' own times add up to "
        f"{_hours(facts['compute'])})",
        "",
        *run_minutes(runs),
        "",
        "The validation each run's tested checkpoint (its monitor's best) is from: the last one means the "
        "run was still improving when its epochs ran out.",
        "",
        *kept_validations(facts["kept"], runs),
    ]
    return "\n".join(lines) + "\n"


def render(client: MlflowClient, meta: dict, out: Path, assets: str) -> tuple[dict[str, str], Path]:
    """The page's blocks for the study in `meta`, with its report written to `out`: setup, results (test
    metrics) and dev (their best dev scores)."""
    options = {"study_id": meta["study_id"], "by": ARM, "compare": meta["compare"], "log": "false"}
    options["metrics"] = report_metrics(meta["metrics"])
    options["partial"] = "true"  # a study still running has a page of what it has so far
    runs, summary, diffs = build_report(client, options, out)
    blocks = {
        "setup": setup_block(study_facts(client, meta["study_id"], runs), runs),
        "results": results_block(summary, diffs, meta["metrics"], assets, uncompared(options, diffs)),
    }
    blocks["dev"] = dev_block(summary, diffs, dev_metrics(meta["metrics"]))
    return blocks, out


def dev_metrics(metrics: list[str]) -> list[str]:
    """best/val/<m> for each test/<m> of the page: the task's best dev score over a run's validations."""
    return [f"best/val/{m.removeprefix('test/')}" for m in metrics if m.startswith("test/")]


def report_metrics(metrics: list[str]) -> str:
    """The report's metrics= for a study page: every test metric and the dev metrics of `metrics`."""
    return ",".join(["test/*", *dev_metrics(metrics)])


def check_owner(page: Path, study_id: str) -> None:
    """A page already published for another study is not `study_id`'s to rewrite (one page per study)."""
    published = page.with_suffix("") / "study.json"
    held = json.loads(published.read_text()).get("study_id") if published.is_file() else study_id
    if held != study_id:
        why = f"holds study {held!r}, not {study_id!r}"
        raise UserError(f"{page}: {why}; give this study its own page (--page)")


def page_text(page: Path, study_id: str) -> str:
    """The page's text; for a study without a page yet, a title and the blocks publish fills, the words
    around them left for its author (a study's hours of runs never end in a missing file)."""
    if page.is_file():
        return page.read_text()
    sections = [
        ("How the study ran", "setup"),
        ("Results", "results"),
        ("Dev: each task's best score", "dev"),
    ]
    blocks = "".join(
        f"\n## {title}\n\n<!-- study:{name} -->\n<!-- /study:{name} -->\n" for title, name in sections
    )
    return f"# Study `{study_id}`\n\nWhat it asks and what its results say: not written yet.\n{blocks}"


def publish(client: MlflowClient, meta: dict, page: Path) -> Path:
    """Rewrites the page's blocks and its folder (plots, tables, study.json) for the study in `meta`
    ({study_id, compare, metrics, tracking_uri}); a page that does not exist yet is made (page_text). A page
    already holding another study is refused."""
    check_owner(page, meta["study_id"])
    text = page_text(page, meta["study_id"])
    folder = page.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        blocks, out = render(client, meta, Path(tmp), folder.name)
        for old in folder.glob("*.png"):
            old.unlink()
        for metric in meta["metrics"]:
            for kind in ("learning_curve", "difference"):
                png = out / f"{kind}_{file_stem(metric)}.png"
                if png.exists():
                    shutil.copy(png, folder / png.name)
        for table in TABLES:
            shutil.copy(out / table, folder / table)
    (folder / "study.json").write_text(json.dumps(meta, indent=2) + "\n")
    page.write_text(fill(text, blocks))
    return page


def check(page: Path, tracking_uri: str | None = None) -> list[str]:
    """Each way the page differs from its study's runs in MLflow (empty: it matches)."""
    folder = page.with_suffix("")
    if not (folder / "study.json").is_file():
        return [f"{folder / 'study.json'}: no published study (python scripts/study.py run publishes one)"]
    meta = json.loads((folder / "study.json").read_text())
    uri = tracking_uri or meta["tracking_uri"]
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return [f"{uri}: no such MLflow store (the study's runs are where it ran; give --tracking-uri)"]
    client = MlflowClient(uri)
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            blocks, out = render(client, meta, Path(tmp), folder.name)
        except ValueError as error:  # no runs of the study in this store
            return [f"{page}: {error}"]
        committed = read_blocks(page.read_text())
        for name, text in blocks.items():
            if name in OPTIONAL and name not in committed:
                continue
            if committed.get(name) != text:
                problems.append(f"{page}: block {name} differs from the runs in MLflow")
        for table in TABLES:
            problems += compare_tables(folder / table, out / table)
    for link in re.findall(r"\]\(([^)]+\.png)\)", "".join(blocks.values())):
        if not (page.parent / link).is_file():
            problems.append(f"{page}: {link} is missing")
    return problems


def compare_tables(committed: Path, fresh: Path) -> list[str]:
    """Rows or values of a committed CSV table that differ from the one computed again (numbers to 1e-9)."""
    if not committed.is_file():
        return [f"{committed}: missing"]
    old, new = (pd.read_csv(p, keep_default_na=False, na_values=[""]) for p in (committed, fresh))
    if list(old.columns) != list(new.columns) or len(old) != len(new):
        shape = f"{len(old)} rows of {list(old.columns)}"
        return [f"{committed}: {shape}, the runs give {len(new)} rows of {list(new.columns)}"]
    problems = []
    for column in old.columns:
        a, b = old[column], new[column]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            same = ((a - b).abs() <= 1e-9) | (a.isna() & b.isna())
        else:
            same = a.astype(str) == b.astype(str)
        for i in (~same).to_numpy().nonzero()[0]:
            problems.append(
                f"{committed}: row {i + 2} {column} is {a.iloc[i]!r}, the runs give {b.iloc[i]!r}"
            )
    return problems
