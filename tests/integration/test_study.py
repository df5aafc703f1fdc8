"""The study entry point end to end at toy scale: `python scripts/study.py run` trains every arm (multitask,
flat, one single-task model per task) at two sizes with two seeds on the demo corpus with a tiny BERT,
reports and publishes the results page; `check` passes on it, and fails once a number on the page changes."""

import re
import statistics
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT, child_env, tiny_run
from mlflow.tracking import MlflowClient

PAGE = """# Toy study

<!-- study:setup -->
<!-- /study:setup -->

<!-- study:results -->
<!-- /study:results -->

<!-- study:dev -->
<!-- /study:dev -->
"""
SIZES, SEEDS = (40, 100), (1, 2)


def study(tmp_path, *args) -> subprocess.CompletedProcess:
    env = child_env(HF_HUB_OFFLINE="1", PATH="/usr/bin:/bin", TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "study.py"), *args]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=7200)


@pytest.mark.slow
def test_study_runs_every_arm_reports_publishes_and_checks(tmp_path, tiny_bert):
    page = tmp_path / "docs" / "study.md"
    page.parent.mkdir()
    page.write_text(PAGE)
    overrides = [
        "data=demo",  # the demo corpus instead of EWT: every sentence has tags, entities and a category
        *tiny_run(tiny_bert, short=False),
        "callbacks.test_artifacts=null",  # no confusion-matrix plots per run
        f"study.sizes=[{','.join(map(str, SIZES))}]",
        f"study.seeds=[{','.join(map(str, SEEDS))}]",
        "study.all_seeds=[]",
        "study.budget.min_steps=4",  # demo batches of 16: 2 epochs at 40 examples, 1 at 100
        "study.budget.min_epochs=1",
        "study.arms.single_taught.sizes=[100]",  # the control runs at one size: here the larger toy one
        f"paths.root_dir={tmp_path}",
    ]
    out = study(tmp_path, "run", "--id", "toy", "--jobs", "2", "--page", str(page), *overrides)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # --jobs 2: each seed of a cell a process of its own, two at a time, each writing its own log
    assert "study toy: 48 runs in 48 multiruns" in out.stdout and "matches MLflow" in out.stdout
    assert re.search(r"single-ner-n40-s2: train.py -m .* seed=2 .* threads=\d+ ", out.stdout)
    cell_log = tmp_path / "outputs" / "studies" / "toy" / "toy-single-ner-n40-s2.log"
    assert "Joblib" not in out.stdout and "test/ner_f1" in cell_log.read_text()

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.study_id = 'toy'")
    trained = [r for r in runs if "report_of" not in r.data.tags]
    assert len(trained) == 48 and all(r.info.status == "FINISHED" for r in trained)
    single = [r for r in trained if r.data.params["study/arm"] == "single"]
    for run in single:  # one head, its own examples only, N of them
        heads = {k.split("/")[2] for k in run.data.params if k.startswith("model/heads/")}
        (task,) = heads
        assert run.data.params["data/tasks"] == f"['{task}']"
        assert run.data.metrics[f"data/train_examples/{task}"] == int(run.data.params["data/train_limit"])
        assert not any(k.startswith("test/") and not k.startswith(f"test/{task}_") for k in run.data.metrics
                       if k not in ("test/objective", "test/loss"))  # fmt: skip
    flat = {r.data.params["optim/layer_decay"] for r in trained if r.data.params["study/arm"] == "flat"}
    assert flat == {"1.0"}
    ensemble = [r for r in trained if r.data.params["study/arm"] == "born_again_ensemble_last"]  # at 100 only
    teachers = {r.data.params["seed"]: r.data.tags["distill/teacher/tagger"].split(",") for r in ensemble}
    singles = {(r.data.params["seed"], r.data.params["data/train_limit"]): r.info.run_id for r in single}
    tagger = {k: v for k, v in singles.items() if v in {t for ids in teachers.values() for t in ids}}
    assert sorted(teachers) == ["1", "2"] and all(len(ids) == 2 for ids in teachers.values())
    assert set(tagger) == {("1", "100"), ("2", "100")}  # each seed taught by the single runs of both seeds

    text = page.read_text()
    ner = [r for r in single if "model/heads/ner/_target_" in r.data.params]
    for size in SIZES:  # the page's single-task NER mean is the mean of the NER runs' test F1 in MLflow
        values = [
            r.data.metrics["test/ner_f1"] for r in ner if r.data.params["data/train_limit"] == str(size)
        ]
        assert len(values) == len(SEEDS)
        assert f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f} ({len(SEEDS)})" in text
    assert "- command: `python scripts/study.py run --id toy" in text
    assert "| validation of the tested checkpoint (per seed) | 40 | 100 |" in text
    assert re.search(r"\| multitask \(ner\+tagger\+textcat\) \| \d, \d of \d \| \d, \d of \d \|", text)
    assert "### `best/val/ner_f1`" in text.split("<!-- study:dev -->")[1]
    assert (page.parent / "study" / "learning_curve_test_ner_f1.png").read_bytes()[:4] == b"\x89PNG"
    (report,) = client.search_runs([trained[0].info.experiment_id], "tags.report_of = 'toy'")
    logged = {a.path for a in client.list_artifacts(report.info.run_id)}
    assert {
        "summary.md",
        "differences.md",
        "learning_curve_test_ner_f1.png",
        "difference_test_ner_f1.png",
    } <= logged

    assert study(tmp_path, "check", "--page", str(page)).returncode == 0
    mean = f"{statistics.fmean(values):.4f}"
    page.write_text(text.replace(mean, "0.9999"))
    changed = study(tmp_path, "check", "--page", str(page))
    assert changed.returncode == 1 and "block results differs" in changed.stdout
