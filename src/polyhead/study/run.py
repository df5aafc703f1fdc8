"""A study run whole: every arm of a conf/study/ config at every size, each as one `python train.py -m` over
its seeds, then its report and results page. `python scripts/study.py run|publish|check` is the command line.

The arms, sizes, seeds and budget rule live in the study config's `study` node (conf/study/sharing.yaml). An
arm keeps the heads it names and drops every other head of the composed config (`~model.heads.<task>`), so a
head the experiment gains later stays out of it; `one_per_task` gives one run per task (the single-task
models). An arm with `teachers_from: <arm>` is born-again training (polyhead.distill.born_again): each of its
runs learns from that arm's FINISHED runs of the same size and seed, one teacher per task, looked up when the
run starts (its cells wait for the teachers' cells); `teacher_seeds: k` teaches each task by the ensemble of
that arm's runs of k seeds: the run's own and the next k - 1 of the size's seeds, in turn. Every run carries
the study id as the MLflow tag `study_id`."""

from __future__ import annotations

import math
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from polyhead.report import build_report, log_report
from polyhead.report.compare import parse_compare
from polyhead.report.runs import load_runs, train_limit
from polyhead.study.page import ARM, check, check_owner, publish, report_metrics
from polyhead.tracking import end_run, git_commit, mlflow_config


@dataclass(frozen=True)
class Cell:
    """One multirun of a study: one arm (one task of a one_per_task arm) at one size, over its seeds."""

    arm: str
    tasks: tuple[str, ...]  # the heads the arm keeps
    size: int | None  # training examples per task (data.train_limit); None = all
    seeds: tuple[int, ...]
    epochs: int
    val_every: int
    overrides: tuple[str, ...]  # the arm's own overrides and the heads it drops
    teachers_from: str | None = None  # born-again: the arm whose runs teach this one (one seed per cell)
    per_seed: bool = False  # one of a multirun's seeds, run alone (born-again cells; any cell under --jobs)
    teacher_seeds: tuple[int, ...] = ()  # born-again: the seeds of its teachers' runs (empty: its own seed)

    @property
    def name(self) -> str:
        task = f"-{self.tasks[0]}" if len(self.tasks) == 1 else ""
        seed = f"-s{self.seeds[0]}" if self.per_seed else ""
        return f"{self.arm}{task}-n{self.size or 'all'}{seed}"

    def arguments(self, study: str, study_id: str, sweep_root: Path) -> list[str]:
        """The overrides of `python train.py -m` for this cell."""
        return [
            f"study={study}",
            f"study.id={study_id}",
            f"study.arm={self.arm}",
            *self.overrides,
            f"data.train_limit={self.size if self.size is not None else 'null'}",
            f"trainer.max_epochs={self.epochs}",
            f"trainer.check_val_every_n_epoch={self.val_every}",
            f"seed={','.join(map(str, self.seeds))}",
            f"hydra.sweep.dir={sweep_root / study_id / f'{study_id}-{self.name}'}",  # sweep_id: unique
        ]


def budget(
    size: int | None,
    batch_size: int,
    min_steps: int,
    min_epochs: int,
    max_epochs: int,
    validations: int,
    scale: float = 1.0,
) -> tuple[int, int]:
    """(epochs, validate every n epochs) for `size` training examples per task (None = all).

    E(N) = clamp(ceil(min_steps * batch_size / N), min_epochs, max_epochs): at least `min_steps` optimiser
    steps over N examples, never fewer epochs than the whole set trains; at most `validations` validations.
    `scale`: an arm on a longer schedule trains ceil(scale * E(N)) epochs."""
    epochs = min_epochs if size is None else math.ceil(min_steps * batch_size / size)
    epochs = math.ceil(scale * max(min_epochs, min(max_epochs, epochs)))
    return epochs, max(1, epochs // validations)


def plan(cfg: DictConfig) -> list[Cell]:
    """Every cell of the study in `cfg` (a composed training config with a study), smallest size first."""
    study, heads = cfg.study, list(cfg.model.heads)
    listed = [int(n) for n in study.sizes]
    more = {int(n): tuple(seeds) for n, seeds in (study.get("seeds_at") or {}).items()}
    if unknown := sorted(set(more) - set(listed)):
        raise ValueError(f"study.seeds_at names sizes {unknown} that study.sizes {listed} leaves out")
    sizes = [(n, more.get(n, tuple(study.seeds))) for n in listed]
    if study.all_seeds:
        sizes.append((None, tuple(study.all_seeds)))
    cells = []
    for size, seeds in sizes:
        for arm, spec in study.arms.items():
            if spec.get("sizes") is not None and size not in spec.sizes:
                continue  # an arm run at some sizes only (a control)
            scale = float(spec.get("epochs", 1.0))  # an arm with a longer schedule: `epochs` x the budget's
            if scale <= 0:
                raise ValueError(f"study arm {arm}: epochs={scale} must be a positive multiple of the budget")
            epochs, val_every = budget(size, int(cfg.data.batch_size), **study.budget, scale=scale)
            missing = sorted(set(spec.tasks) - set(heads))
            if missing:
                raise ValueError(f"study arm {arm} names tasks {missing}: the model has heads {heads}")
            teachers = spec.get("teachers_from")
            if teachers is not None and teachers not in study.arms:
                raise ValueError(f"study arm {arm}: teachers_from={teachers} is not an arm of the study")
            for tasks in [(t,) for t in spec.tasks] if spec.get("one_per_task") else [tuple(spec.tasks)]:
                drop = [f"~model.heads.{h}" for h in heads if h not in tasks]
                overrides = (*spec.get("overrides", ()), *drop)
                cell = Cell(arm, tasks, size, seeds, epochs, val_every, overrides, teachers)
                if teachers:  # teachers differ by seed
                    k = int(spec.get("teacher_seeds", 1))
                    cells.extend(with_teacher_seeds(c, seeds, k, arm) for c in per_seed([cell]))
                else:
                    cells.append(cell)
    return cells


def with_teacher_seeds(cell: Cell, seeds: tuple[int, ...], k: int, arm: str) -> Cell:
    """A born-again cell of one seed taught by the runs of k seeds: its own and the next k - 1 of `seeds`,
    in turn (seed 3 of 1-3 with k = 2: 3 and 1)."""
    if not 1 <= k <= len(seeds):
        raise ValueError(f"study arm {arm}: teacher_seeds={k} must be between 1 and the {len(seeds)} seeds")
    at = seeds.index(cell.seeds[0])
    return replace(cell, teacher_seeds=tuple(seeds[(at + i) % len(seeds)] for i in range(k)))


def per_seed(cells: list[Cell]) -> list[Cell]:
    """Each cell as one cell per seed, in order: `--jobs N` keeps N runs training at once, and a run that
    ends frees its core for the next whichever cell it is from (a 3-seed multirun on 2 jobs would leave one
    core idle while its third seed trains)."""
    return [replace(cell, seeds=(seed,), per_seed=True) for cell in cells for seed in cell.seeds]


def teacher_runs(client: MlflowClient, study_id: str, cell: Cell) -> dict[str, list[str]]:
    """{task: run ids} of the FINISHED, tested runs of arm `cell.teachers_from` at the cell's size and its
    teachers' seeds (its own seed unless `teacher_seeds`) that have a head for the task, in the order of those
    seeds (the newest run of a seed where a resumed study has several)."""
    query = f"tags.study_id = '{study_id}' and params.`study/arm` = '{cell.teachers_from}'"
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], query)
    limit = str(cell.size) if cell.size is not None else "all"
    seeds = [str(s) for s in cell.teacher_seeds or cell.seeds[:1]]
    found: dict[tuple[str, str], str] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):
        if run.info.status != "FINISHED" or not tested(run) or train_limit(run) != limit:
            continue
        seed = run.data.params.get("seed")
        if seed not in seeds:
            continue
        for key in run.data.params:
            task = key.split("/")[2] if key.startswith("model/heads/") else None
            if task in cell.tasks:
                found[task, seed] = run.info.run_id
    missing = [f"{t} (seed {s})" for t in cell.tasks for s in seeds if (t, s) not in found]
    if missing:
        raise ValueError(
            f"{cell.name}: no FINISHED {cell.teachers_from} run at this size for {', '.join(missing)}"
        )
    return {task: [found[task, s] for s in seeds] for task in cell.tasks}


def compose_study(project: Path, study: str, overrides: list[str]) -> DictConfig:
    """The training config of `python train.py study=<study> <overrides>`, with the plan in its `study`."""
    from hydra import compose, initialize_config_dir

    import polyhead.config  # noqa: F401  (registers the resolvers conf/ uses)

    with initialize_config_dir(config_dir=str(project / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"study={study}", *overrides])


def done_seeds(finished: list) -> set[tuple]:
    """(arm, heads, train_limit, seed) of every run in `finished` (the study's FINISHED runs)."""
    done = set()
    for run in finished:
        p = run.data.params
        heads = tuple(sorted({k.split("/")[2] for k in p if k.startswith("model/heads/")}))
        done.add((p.get("study/arm"), heads, train_limit(run), p.get("seed")))
    return done


def close_stale_runs(client: MlflowClient, study_id: str, mark: bool = True) -> int:
    """Marks KILLED the study's runs that a stopped study left unfinished, when it is resumed: those still
    RUNNING (their process died with the session or machine that ran them) and those FINISHED without a test
    metric (Lightning's MLflow logger ends a run FINISHED when `fit` ends, before `test`; runs of a polyhead
    that did not set it RUNNING again were left so by a kill in between). Otherwise the
    page would count them as running, or the report would take a run that was never tested. Returns how
    many (mark=False: only counts them, as a dry run does)."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    query = f"tags.study_id = '{study_id}' and attributes.status = "
    notes = {
        "RUNNING": "RUNNING when the study was resumed: its process had died",
        "FINISHED": "FINISHED without test metrics when the study was resumed: stopped before its test step",
    }
    stale = list(client.search_runs(experiments, query + "'RUNNING'"))
    finished = client.search_runs(experiments, query + "'FINISHED'")
    stale += [r for r in finished if not tested(r) and "report_of" not in r.data.tags]
    for run in stale if mark else []:
        end_run(client, run.info.run_id, "KILLED", {"study_note": notes[run.info.status]})
    if stale:
        done = "marked" if mark else "to be marked (not in a dry run)"
        print(f"resume: {len(stale)} run(s) a stopped study left unfinished {done} KILLED", flush=True)
    return len(stale)


def tested(run) -> bool:
    return any(key.startswith("test/") for key in run.data.metrics)


def pin_precision(precisions: set[str], overrides: list[str]) -> list[str]:
    """The overrides of a resumed study: trained in the precision its finished runs used. `auto` resolves
    per CPU (bf16-mixed on an AMX Xeon, 32-true on an AVX2 EPYC), and a study resumed on another machine
    would otherwise compare arms trained in different precisions. An explicit trainer.precision wins."""
    if any(o.lstrip("+").startswith("trainer.precision=") for o in overrides) or not precisions:
        return overrides
    if len(precisions) > 1:
        raise ValueError(
            f"the study's finished runs trained in {sorted(precisions)}: resume it with an explicit "
            "trainer.precision=..., or start a new study"
        )
    (precision,) = precisions
    print(f"resume: trainer.precision={precision}, as the study's finished runs", flush=True)
    return [*overrides, f"trainer.precision={precision}"]


def remaining(cell: Cell, done: set[tuple]) -> Cell | None:
    """The cell with the seeds that have no FINISHED run yet; None when all have one."""
    limit = str(cell.size) if cell.size is not None else "all"
    seeds = tuple(s for s in cell.seeds if (cell.arm, tuple(sorted(cell.tasks)), limit, str(s)) not in done)
    if not seeds:
        return None
    return replace(cell, seeds=seeds)


def cell_overrides(jobs: int, cores: int) -> list[str]:
    """How a run trains when the study trains `jobs` at once: cores // jobs torch threads (at least one)."""
    return [f"threads={max(1, cores // jobs)}"]


def start_cell(project: Path, args: list[str], log: Path | None) -> subprocess.Popen:
    """`python train.py -m <args>` in its own process group (stopping the study stops its workers too),
    its output to `log` (None: here)."""
    command = [sys.executable, str(project / "train.py"), "-m", *args]
    if log is None:
        return subprocess.Popen(command, cwd=project, start_new_session=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        return subprocess.Popen(
            command, cwd=project, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def waits_for(cell: Cell, others: list[Cell]) -> bool:
    """A born-again cell waits while a cell of its teachers' arm at its size is queued or running."""
    return cell.teachers_from is not None and any(
        o.arm == cell.teachers_from and o.size == cell.size for o in others
    )


def run_cells(
    project: Path, cells: list[Cell], arguments: list, logs: list[Path], jobs: int = 1
) -> list[str]:
    """Runs `python train.py -m` for every cell, in order, at most `jobs` at once (jobs=1: one cell at a
    time, its output here; more: one-seed cells, `per_seed`, each writing its log). A cell's arguments are a
    list, or a function of the cell that gives them when it starts (born-again cells look their teachers up
    then, once no cell of the teachers' arm at their size is left). Returns the names of the cells that
    failed (a failed job is a FAILED MLflow run; the rest of its sweep still runs). A study stopped early
    stops the trainings it started."""
    failed: list[str] = []
    running: dict[subprocess.Popen, tuple[str, Cell, float]] = {}
    queue = [
        (f"[study {i}/{len(cells)}] {c.name}", c, a, g)
        for i, (c, a, g) in enumerate(zip(cells, arguments, logs), 1)
    ]
    try:
        while queue or running:
            pending = [c for _, c, _ in running.values()] + [c for _, c, _, _ in queue]
            startable = [i for i, q in enumerate(queue) if not waits_for(q[1], pending)][:1]
            if startable and len(running) < jobs:
                name, cell, args, log = queue.pop(startable[0])
                try:
                    args = args(cell) if callable(args) else args
                except ValueError as err:  # a born-again cell whose teachers failed
                    print(f"{name}: not run: {err}", flush=True)
                    failed.append(cell.name)
                    continue
                print(
                    f"{name}: train.py -m {shlex.join(args)}" + (f" > {log}" if jobs > 1 else ""), flush=True
                )
                running[start_cell(project, args, log if jobs > 1 else None)] = (name, cell, time.time())
                continue
            for proc in [p for p in running if p.poll() is not None]:
                name, cell, started = running.pop(proc)
                print(f"{name}: exit {proc.returncode} after {time.time() - started:.0f} s", flush=True)
                if proc.returncode:
                    failed.append(cell.name)
            time.sleep(1)
    finally:
        for proc in running:  # stopped early (SIGTERM, Ctrl-C): its trainings stop with it
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    return failed


def quoted(runs: list[str]) -> str:
    """A task's teacher run ids in a `teachers={...}` override, as strings: one id, or a list of them."""
    ids = [f"'{run}'" for run in runs]
    return ids[0] if len(ids) == 1 else f"[{', '.join(ids)}]"


def new_study_id(study: str) -> str:
    return f"{study}-{datetime.now():%Y%m%d-%H%M%S}"


def report(
    cfg: DictConfig, client: MlflowClient, study_id: str, out: Path, tags: dict, partial: bool = False
) -> str:
    """The study's report (configurations = study/arm, the study's comparisons) in `out`, logged to MLflow
    as the run `report <study id>` with `tags`; returns its run id. partial: a comparison with an arm that
    has no runs yet is named and left out (a study still running)."""
    options = {"study_id": study_id, "by": "study/arm", "compare": comparisons(cfg)}
    options["partial"] = str(partial).lower()
    options["metrics"] = report_metrics(list(cfg.study.metrics))
    runs, _, _ = build_report(client, options, out)
    return log_report(client, runs, study_id, out, tags)


def comparisons(cfg: DictConfig) -> list[str]:
    """The study's comparisons of arms it runs at one size at least (an arm kept to sizes outside the study,
    as a toy study's, or dropped with ~study.arms.<arm>, has nothing to compare)."""
    planned = {cell.arm for cell in plan(cfg)}

    def runs(side: dict) -> bool:
        return ARM not in side or side[ARM] in planned

    return [text for text in cfg.study.compare if all(map(runs, parse_compare(text)))]


def page_meta(cfg: DictConfig, study_id: str, tracking_uri: str) -> dict:
    """What the results page is computed from (docs/study/study.json): the runs and their comparisons."""
    return {
        "study_id": study_id,
        "tracking_uri": tracking_uri,
        "compare": comparisons(cfg),
        "metrics": list(cfg.study.metrics),
    }


def run_study(project: Path, study: str, overrides: list[str], options: dict) -> int:
    """Every cell of the study, then its report (logged to MLflow) and results page; the exit status."""
    cfg = compose_study(project, study, overrides)
    tracking_uri = mlflow_config(cfg).tracking_uri
    study_id = options.get("id") or new_study_id(study)
    if options.get("page") and not (options.get("replace") or options.get("dry_run")):
        check_owner(Path(options["page"]), study_id)  # before any run, not after the study
    cells = plan(cfg)
    dry_run, jobs = options.get("dry_run", False), options.get("jobs", 1)
    owned = [o for o in overrides if o.lstrip("+~").startswith(("launcher=", "hydra.launcher.", "threads="))]
    if jobs > 1 and owned:
        raise ValueError(f"--jobs {jobs} runs one seed per process: leave out {' '.join(owned)}")
    if options.get("resume"):
        client = MlflowClient(tracking_uri)
        close_stale_runs(client, study_id, mark=not dry_run)
        finished = [r for r in load_runs(client, study_id=study_id) if tested(r)]  # report runs left out
        done = done_seeds(finished)
        overrides = pin_precision({r.data.tags.get("hw/precision", "?") for r in finished}, overrides)
        cells = [c for c in (remaining(cell, done) for cell in cells) if c is not None]
    if jobs > 1:
        cells = per_seed(cells)
    sweep_root = Path(cfg.paths.root_dir) / "outputs" / "studies"
    cores = len(os.sched_getaffinity(0))

    def arguments_of(cell: Cell, teachers: dict[str, list[str]] | None = None) -> list[str]:
        pairs = ", ".join(f"{task}: {quoted(runs)}" for task, runs in (teachers or {}).items())
        spec = [f"teachers={{{pairs}}}"] if teachers else []
        own = cell_overrides(jobs, cores) if jobs > 1 else []
        return [*cell.arguments(study, study_id, sweep_root), *spec, *own, *overrides]

    def taught(cell: Cell) -> list[str]:
        return arguments_of(cell, teacher_runs(MlflowClient(tracking_uri), study_id, cell))

    arguments = [taught if c.teachers_from and not dry_run else arguments_of(c) for c in cells]
    logs = [sweep_root / study_id / f"{study_id}-{cell.name}.log" for cell in cells]
    print(f"study {study_id}: {sum(len(c.seeds) for c in cells)} runs in {len(cells)} multiruns", flush=True)
    if dry_run:
        for i, (cell, args) in enumerate(zip(cells, arguments), 1):
            of = f" of seeds {', '.join(map(str, cell.teacher_seeds))}" if len(cell.teacher_seeds) > 1 else ""
            later = " teachers={<the " + f"{cell.teachers_from} runs{of}>}}" if cell.teachers_from else ""
            print(f"[study {i}/{len(cells)}] {cell.name}: {shlex.join(['train.py', '-m', *args])}{later}")
        return 0
    started = time.time()
    failed = run_cells(project, cells, arguments, logs, jobs)
    client = MlflowClient(tracking_uri)
    tags = {"study_command": options.get("command", ""), "study_wall_seconds": f"{time.time() - started:.0f}"}
    tags["study_commit"] = git_commit(str(project))
    out = Path(cfg.paths.root_dir) / "outputs" / "reports" / study_id
    print(f"report: {out} (MLflow run {report(cfg, client, study_id, out, tags)})", flush=True)
    status = 1 if failed else 0
    if failed:
        print(f"failed multiruns (their FAILED runs are in MLflow): {', '.join(failed)}", file=sys.stderr)
    page = options.get("page")
    if page:
        publish(client, page_meta(cfg, study_id, tracking_uri), Path(page))
        problems = check(Path(page))
        print(f"page: {page} ({'matches MLflow' if not problems else 'DIFFERS: ' + '; '.join(problems)})")
        status = status or (1 if problems else 0)
    return status
