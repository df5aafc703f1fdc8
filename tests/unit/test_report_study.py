"""polyhead.report on a synthetic study in a real sqlite MLflow store: configurations named by study/arm, the
single-task runs merged into one arm (each task's metric from its own run), per-task x, the "all" size, and
the results page published from MLflow and checked against it."""

import statistics

import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from scipy import stats

from polyhead.report import build_report, log_report
from polyhead.study.page import check, publish

STUDY = "st-1"
ALL = {"tagger": 12000, "ner": 1600}  # the whole training set of each task ("all")
SEEDS = {"100": (1, 2, 3), "None": (1, 2)}
T0 = 1_700_000_000_000  # ms
DEV_PEAK = 0.005  # a task's best dev score is its test score + DEV_PEAK; its last one is test - 0.02


def value(arm: str, task: str, size: str, seed: int) -> float:
    base = {"tagger": 0.80, "ner": 0.40}[task] + (0.1 if size == "None" else 0.0)
    bonus = {"multitask": 0.02, "flat": 0.01, "single": 0.0}[arm]
    return round(base + bonus + seed / 100 + (0.003 * seed * seed if arm == "single" else 0.0), 6)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("study")
    (tmp_path / "mlruns").mkdir()
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("sharing-study", artifact_location=str(tmp_path / "mlruns" / "artifacts"))
    clock = iter(range(T0, T0 + 10**9, 60_000))

    def add(arm, tasks, size, seed, study=STUDY, status="FINISHED"):
        tags = {"study_id": study, "git_commit": "abc123", "hw/cpu_model": "AMD EPYC"}
        tags |= {"hw/cpu_capability": "AVX2", "hw/threads": "2", "hw/precision": "32-true"}
        rid = client.create_run(exp, start_time=next(clock), tags=tags).info.run_id
        params = {"study/arm": arm, "study/id": study, "data/train_limit": size, "seed": str(seed)}
        params |= {"optim/layer_decay": "1.0" if arm == "flat" else "0.9", "data/tasks": str(list(tasks))}
        params |= {f"model/heads/{t}/_target_": f"heads.{t}" for t in tasks}
        params |= {"callbacks/checkpoint/monitor": "val/objective", "callbacks/checkpoint/mode": "max"}
        counts = {t: ALL[t] if size == "None" else int(size) for t in tasks}
        metrics = {f"data/train_examples/{t}": n for t, n in counts.items()}
        metrics |= {"data/train_examples": sum(counts.values())}
        scores = {f"test/{t}_{'acc' if t == 'tagger' else 'f1'}": value(arm, t, size, seed) for t in tasks}
        metrics |= scores | {"test/objective": statistics.fmean(scores.values())}
        history = [  # three validations: each task's dev score peaks at step 1 (DEV_PEAK), the loss at step 2
            Metric(name.replace("test/", "val/"), score + shift, 0, step)
            for name, score in scores.items()
            for step, shift in enumerate((-0.05, DEV_PEAK, -0.02))
        ]
        history += [Metric("val/loss", loss, 0, step) for step, loss in enumerate((0.9, 0.6, 0.4))]
        objective = [0.1, 0.2, 0.3] if arm == "single" else [0.1, 0.3, 0.2]  # kept: a single run's last
        history += [Metric("val/objective", v, 0, step) for step, v in enumerate(objective)]
        client.log_batch(
            rid,
            metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()] + history,
            params=[Param(k, v) for k, v in params.items()],
        )
        client.set_terminated(rid, status, end_time=next(clock) + 30_000 * len(tasks))

    for size, seeds in SEEDS.items():
        for seed in seeds:
            add("multitask", ("tagger", "ner"), size, seed)
            add("flat", ("tagger", "ner"), size, seed)
            add("single", ("tagger",), size, seed)
            add("single", ("ner",), size, seed)
    add("single", ("ner",), "100", 4, status="FAILED")
    add("multitask", ("tagger", "ner"), "100", 1, study="another")
    return tmp_path, uri, client


OPTIONS = {"study_id": STUDY, "by": "study/arm", "log": "false"}
COMPARE = ["study/arm=multitask vs study/arm=single", "study/arm=multitask vs study/arm=flat"]


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    _, _, client = store
    out = tmp_path_factory.mktemp("report")
    runs, summary, diffs = build_report(client, OPTIONS | {"compare": COMPARE}, out)
    return out, runs, summary, diffs


def test_report_study_arms_merge_single_task_runs_per_task(report):
    out, runs, summary, _ = report
    assert len(runs) == 4 * sum(map(len, SEEDS.values()))  # no failed run, no other study
    assert set(summary.config) == {f"study/arm={a}" for a in ("multitask", "flat", "single")}
    for arm in ("multitask", "flat", "single"):
        for task, metric in (("tagger", "test/tagger_acc"), ("ner", "test/ner_f1")):
            for size, seeds in SEEDS.items():
                limit = "all" if size == "None" else size
                row = summary[
                    (summary.config == f"study/arm={arm}")
                    & (summary.metric == metric)
                    & (summary.train_limit == limit)
                ].iloc[0]
                assert row["mean"] == pytest.approx(
                    statistics.fmean(value(arm, task, size, s) for s in seeds)
                )
                assert row["n"] == len(seeds)
                assert row["train_examples"] == (
                    ALL[task] if size == "None" else int(size)
                )  # per task, not 200


def test_report_study_metric_several_runs_of_an_arm_report_is_left_out(report):
    out, _, summary, _ = report
    objective = summary[summary.metric == "test/objective"]
    assert set(objective.config) == {"study/arm=multitask", "study/arm=flat"}
    text = (out / "summary.md").read_text()
    assert "Left out: test/objective of study/arm=single: reported by runs that differ in data/tasks" in text
    assert "| study/arm=single | 1600 (all) |" in text


def test_report_study_differences_paired_by_seed_at_every_size(report):
    _, _, _, diffs = report
    rows = diffs[(diffs.metric == "test/ner_f1") & (diffs.b == "study/arm=single")]
    assert list(rows.train_limit) == ["100", "all"] and set(rows.method) == {"paired"}
    for row in rows.itertuples():
        size = "None" if row.train_limit == "all" else row.train_limit
        a = [value("multitask", "ner", size, s) for s in SEEDS[size]]
        b = [value("single", "ner", size, s) for s in SEEDS[size]]
        low, high = stats.ttest_rel(a, b).confidence_interval(0.95)
        assert row.diff == pytest.approx(statistics.fmean(a) - statistics.fmean(b))
        assert (row.ci_low, row.ci_high) == pytest.approx((low, high))
    flat = diffs[(diffs.metric == "test/tagger_acc") & (diffs.b == "study/arm=flat")]
    assert flat["diff"].tolist() == pytest.approx([0.01, 0.01])  # decay - flat, every seed


def test_report_study_best_dev_is_the_best_value_over_each_runs_history(store, tmp_path):
    _, _, client = store
    options = OPTIONS | {"compare": COMPARE[:1], "metrics": "best/val/*"}
    _, summary, diffs = build_report(client, options, tmp_path)
    single = summary[(summary.config == "study/arm=single") & (summary.train_limit == "100")]
    tagger = single[single.metric == "best/val/tagger_acc"].iloc[0]
    assert tagger["mean"] == pytest.approx(
        statistics.fmean(value("single", "tagger", "100", s) + DEV_PEAK for s in (1, 2, 3))
    )
    assert tagger["train_examples"] == 100
    ner = summary[(summary.metric == "best/val/ner_f1") & (summary.train_limit == "all")]
    assert set(ner.train_examples) == {ALL["ner"]}  # per task, as for the test metric
    loss = summary[(summary.metric == "best/val/loss") & (summary.config == "study/arm=multitask")]
    assert loss["mean"].tolist() == pytest.approx([0.4, 0.4])  # a loss's best is its lowest
    assert "test/tagger_acc" not in set(summary.metric)  # only what metrics= names
    row = diffs[(diffs.metric == "best/val/ner_f1") & (diffs.train_limit == "100")].iloc[0]
    a = [value("multitask", "ner", "100", s) for s in (1, 2, 3)]
    b = [value("single", "ner", "100", s) for s in (1, 2, 3)]
    assert row["diff"] == pytest.approx(statistics.fmean(a) - statistics.fmean(b))


def test_report_study_draws_curves_and_differences(report):
    out = report[0]
    for stem in ("test_tagger_acc", "test_ner_f1"):
        for kind in ("learning_curve", "difference"):
            assert (out / f"{kind}_{stem}.png").read_bytes()[:4] == b"\x89PNG"


PAGE = """# A study

Hand-written findings stay.

<!-- study:setup -->
not yet
<!-- /study:setup -->

<!-- study:results -->
not yet
<!-- /study:results -->

<!-- study:dev -->
not yet
<!-- /study:dev -->
"""


@pytest.fixture
def page(store, tmp_path):
    _, uri, client = store
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], f"tags.study_id='{STUDY}'"
    )
    log_report(client, runs, STUDY, tmp_path, {"study_command": "python scripts/study.py run x=1"})
    path = tmp_path / "docs" / "study.md"
    path.parent.mkdir()
    path.write_text(PAGE)
    meta = {
        "study_id": STUDY,
        "tracking_uri": uri,
        "compare": COMPARE,
        "metrics": ["test/tagger_acc", "test/ner_f1"],
    }
    return publish(client, meta, path)


def test_report_study_page_is_filled_from_mlflow_and_matches_it(page):
    text = page.read_text()
    assert "Hand-written findings stay." in text and "not yet" not in text
    assert "- command: `python scripts/study.py run x=1`" in text
    assert "- CPU: AMD EPYC (AVX2); torch threads per run: 2; trained in 32-true" in text
    assert "- commit: `abc123`" in text
    assert f"- study id: `{STUDY}`: 20 FINISHED runs (1 FAILED)" in text
    mean = statistics.fmean(value("single", "ner", "100", s) for s in (1, 2, 3))
    line = next(li for li in text.splitlines() if li.startswith("| 100 |") and f"{mean:.4f}" in li)
    assert "multitask ahead" in line or "cannot be told apart" in line
    assert "| all (1,600) |" in text
    assert "| multitask (ner+tagger) | 2, 2, 2 of 3 | 2, 2 of 3 |" in text  # the validation kept, per seed
    assert "| single (ner) | 3, 3, 3 of 3 | 3, 3 of 3 |" in text
    dev = text.split("<!-- study:dev -->")[1]
    assert dev.startswith("\n### `best/val/tagger_acc`") and "### `best/val/ner_f1`" in dev
    peak = statistics.fmean(value("single", "ner", "100", s) + DEV_PEAK for s in (1, 2, 3))
    assert any(li.startswith("| 100 |") and f"{peak:.4f}" in li for li in dev.splitlines())
    for name in ("learning_curve_test_ner_f1.png", "difference_test_ner_f1.png", "summary.csv", "study.json"):
        assert (page.parent / "study" / name).is_file()
    runs = pd.read_csv(page.parent / "study" / "runs.csv", dtype={"seed": str})  # every run's values, kept
    kept = runs[(runs.metric == "test/ner_f1") & (runs.train_limit == "100")]
    assert kept.groupby("config").value.mean()["study/arm=single"] == pytest.approx(mean)
    assert check(page) == []


def test_report_study_page_without_the_dev_block_still_publishes_and_checks(store, tmp_path):
    _, uri, client = store
    path = tmp_path / "study.md"
    path.write_text(PAGE.split("<!-- study:dev -->")[0])  # a page from before the dev block
    meta = {"study_id": STUDY, "tracking_uri": uri, "compare": COMPARE, "metrics": ["test/ner_f1"]}
    text = publish(client, meta, path).read_text()
    assert "best/val" not in text and "| all (1,600) |" in text
    assert check(path) == []
    path.write_text(text.replace("<!-- study:results -->", "<!-- study:result -->"))
    with pytest.raises(ValueError, match=r"no block\(s\) \['results'\]"):
        publish(client, meta, path)


def test_report_study_check_finds_a_changed_page_or_table(page):
    mean = statistics.fmean(value("multitask", "tagger", "100", s) for s in (1, 2, 3))
    page.write_text(page.read_text().replace(f"{mean:.4f}", f"{mean + 0.01:.4f}"))
    assert check(page) == [f"{page}: block results differs from the runs in MLflow"]
    table = page.parent / "study" / "summary.csv"
    frame = pd.read_csv(table, keep_default_na=False, na_values=[""])
    frame.loc[0, "mean"] += 1e-6
    frame.to_csv(table, index=False)
    assert any("summary.csv: row 2 mean" in p for p in check(page))
    runs = page.parent / "study" / "runs.csv"
    runs.write_text(runs.read_text().replace("study/arm=single", "study/arm=solo", 1))
    assert any("runs.csv: row" in p and "solo" in p for p in check(page))


def test_report_study_resume_marks_runs_a_stopped_study_left_unfinished_killed(tmp_path):
    from polyhead.report.runs import load_runs
    from polyhead.study.run import close_stale_runs, done_seeds

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("sharing-study", artifact_location=str(tmp_path / "artifacts"))
    dead = client.create_run(exp, tags={"study_id": "s1"}).info.run_id
    other_study = client.create_run(exp, tags={"study_id": "s2"}).info.run_id
    finished = client.create_run(exp, tags={"study_id": "s1"}).info.run_id
    client.log_param(finished, "seed", "1")
    client.log_metric(finished, "test/objective", 0.5)
    client.set_terminated(finished, "FINISHED")
    untested = client.create_run(exp, tags={"study_id": "s1"}).info.run_id  # killed between fit and test
    client.log_param(untested, "seed", "2")
    client.set_terminated(untested, "FINISHED")
    assert close_stale_runs(client, "s1") == 2
    assert client.get_run(dead).info.status == "KILLED"
    assert client.get_run(dead).data.tags["study_note"].startswith("RUNNING when the study was resumed")
    assert client.get_run(untested).info.status == "KILLED"
    assert "stopped before its test step" in client.get_run(untested).data.tags["study_note"]
    assert client.get_run(other_study).info.status == "RUNNING"
    assert client.get_run(finished).info.status == "FINISHED"
    assert [seed for *_, seed in done_seeds(load_runs(client, study_id="s1"))] == ["1"]
    assert close_stale_runs(client, "s1") == 0


def test_report_study_wall_time_leaves_out_the_gaps_between_sessions():
    from types import SimpleNamespace

    from polyhead.study.page import busy_seconds

    def run(start_min: float, end_min: float | None):
        end = None if end_min is None else int(end_min * 60_000)
        return SimpleNamespace(info=SimpleNamespace(start_time=int(start_min * 60_000), end_time=end))

    # session 1: two runs side by side (0-30, 10-40 min); session 2 a day later: 1440-1460, one inside it
    runs = [run(0, 30), run(10, 40), run(1440, 1460), run(1445, 1450), run(1500, None)]
    assert busy_seconds(runs) == (40 + 20) * 60
    assert busy_seconds([]) == 0


def test_report_study_page_of_a_study_still_running_leaves_out_an_arm_not_run_yet(store, tmp_path):
    """A study over several sessions publishes what it has: a comparison with an arm that has no FINISHED
    run yet is named, not an error; `polyhead.report` without partial=true still stops on it."""
    _, uri, client = store
    path = tmp_path / "study.md"
    path.write_text(PAGE)
    later = "study/arm=multitask vs study/arm=distilled"
    meta = {"study_id": STUDY, "tracking_uri": uri, "compare": [*COMPARE, later], "metrics": ["test/ner_f1"]}
    text = publish(client, meta, path).read_text()
    assert f"Not compared yet (no size where both sides have FINISHED runs): {later}." in text
    assert "multitask − flat (95% CI)" in text and check(path) == []
    with pytest.raises(ValueError, match="no configuration has study/arm=distilled"):
        build_report(client, OPTIONS | {"compare": [later]}, tmp_path / "report")


def test_report_study_page_names_every_cpu_a_study_resumed_over_sessions_ran_on():
    from types import SimpleNamespace

    from polyhead.study.page import counted

    runs = [
        SimpleNamespace(data=SimpleNamespace(tags={"hw/cpu_model": cpu})) for cpu in ("EPYC", "Xeon", "EPYC")
    ]
    assert counted(runs, lambda t: t["hw/cpu_model"]) == "EPYC (2 runs), Xeon (1 run)"
    assert counted(runs[::2], lambda t: t["hw/cpu_model"]) == "EPYC"
