"""A study's results page belongs to one study: publishing another study's results onto it is refused."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from polyhead.errors import UserError
from polyhead.study.page import fill, page_text, publish, read_blocks, setup_block

ROOT = Path(__file__).resolve().parents[2]


def foreign_page(tmp_path: Path, text: str = "# results\n") -> Path:
    """A page already published for study sharing-ewt-1."""
    page = tmp_path / "study.md"
    page.write_text(text)
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "study.json").write_text(json.dumps({"study_id": "sharing-ewt-1"}))
    return page


def test_study_page_refuses_another_studys_page(tmp_path):
    page = foreign_page(tmp_path, "# results\n<!-- study:setup -->\nold\n<!-- /study:setup -->\n")
    meta = {"study_id": "sharing-ewt-2", "compare": [], "metrics": [], "tracking_uri": "sqlite:///none.db"}
    with pytest.raises(UserError, match=r"holds study 'sharing-ewt-1', not 'sharing-ewt-2'.*--page"):
        publish(None, meta, page)
    assert "old" in page.read_text()  # nothing rewritten
    assert sorted(p.name for p in (tmp_path / "study").iterdir()) == ["study.json"]


def test_study_page_refusal_comes_before_any_report_run(tmp_path):
    """`scripts/study.py publish --id B` onto A's page fails in one line before the report run is logged;
    with --replace it goes past the page (and stops here at the study's missing runs instead)."""
    page = foreign_page(tmp_path)

    def publish_b(*args):
        command = [
            sys.executable,
            "scripts/study.py",
            "publish",
            "--id",
            "sharing-ewt-2",
            "--page",
            str(page),
        ]
        command += [*args, f"paths.root_dir={tmp_path}"]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)

    done = publish_b()
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].endswith("give this study its own page (--page)")
    assert not (tmp_path / "mlruns").exists()  # no store, no report run
    replaced = publish_b("--replace")
    assert replaced.returncode != 0 and "holds study" not in replaced.stderr


def test_study_page_run_refuses_another_studys_page_unless_replacing(tmp_path):
    """`run` checks the page before any run; `--dry-run` and `--replace` (make study) go on."""
    page = foreign_page(tmp_path)
    base = [sys.executable, "scripts/study.py", "run", "--id", "other", "--page", str(page)]
    paths = [f"paths.root_dir={tmp_path}", "paths.corpora=/nonexistent"]

    def study(*args):
        return subprocess.run([*base, *args, *paths], cwd=ROOT, capture_output=True, text=True, timeout=300)

    refused = study()
    assert refused.returncode == 1 and "holds study 'sharing-ewt-1', not 'other'" in refused.stderr
    assert study("--dry-run").returncode == 0
    assert not (tmp_path / "mlruns").exists()


def test_study_page_for_a_new_study_is_made_with_the_blocks_publish_fills(tmp_path):
    """--page naming a file that does not exist yet: publish writes the study's blocks into a new page."""
    text = page_text(tmp_path / "docs" / "new.md", "sharing-ewt-9")
    assert text.startswith("# Study `sharing-ewt-9`")
    assert set(read_blocks(text)) == {"setup", "results", "dev"}
    filled = fill(text, {"setup": "ran\n", "results": "numbers\n", "dev": "best\n"})
    assert read_blocks(filled) == {"setup": "ran\n", "results": "numbers\n", "dev": "best\n"}
    page = foreign_page(tmp_path, "kept\n")
    assert page_text(page, "sharing-ewt-1") == "kept\n"  # an existing page is read as it is


def test_study_page_says_when_no_finished_run_recorded_the_command():
    facts = {
        "study_id": "s",
        "finished": 0,
        "unfinished": "no others",
        "commit": "`c`",
        "cpu": "c",
        "threads": "1",
        "precision": "bf16-mixed",
        "busy": 0,
        "span": 0,
        "compute": 0,
        "kept": {},
    }
    assert "- command: not recorded yet" in setup_block(facts | {"commands": []}, [])
    line = "- command: `python scripts/study.py run --id s`"
    assert line in setup_block(facts | {"commands": ["python scripts/study.py run --id s"]}, [])
    resumed = ["python scripts/study.py run --id s", "python scripts/study.py run --id s --resume seed=4"]
    lines = setup_block(facts | {"commands": resumed}, []).splitlines()
    at = lines.index(
        "- commands: the study ran as 2 `study.py run`s, oldest first (each `--resume` trained "
        "what the ones before had not):"
    )
    assert lines[at + 1 : at + 3] == [f"  1. `{resumed[0]}`", f"  2. `{resumed[1]}`"]


def test_study_page_lists_every_run_of_the_study_oldest_first_once(tmp_path):
    """In a real MLflow store: the report runs' commands by start time, a repeated one once, none empty."""
    from mlflow.tracking import MlflowClient

    from polyhead.study.page import commands

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("reports", artifact_location=str(tmp_path / "artifacts"))
    for start, command in ((3, "c"), (1, "a"), (2, "b"), (4, "a"), (5, "")):
        run = client.create_run(
            experiment, start_time=start, tags={"report_of": "s", "study_command": command}
        )
        client.set_terminated(run.info.run_id)
    assert commands(client.search_runs([experiment], "tags.report_of = 's'")) == ["a", "b", "c"]


def test_study_page_difference_cell_names_its_method_and_seeds():
    """Each difference says over how many seeds it was computed: the seeds both arms ran when paired, each
    arm's when not (an arm with more seeds than the other still shows its own n in its mean cell)."""
    import pandas as pd

    from polyhead.study.page import metric_table

    summary = pd.DataFrame(
        [
            {
                "config": f"study/arm={arm}",
                "train_limit": "500",
                "train_examples": 500.0,
                "mean": m,
                "std": 0.01,
                "n": n,
            }
            for arm, m, n in (("multitask", 0.93, 3), ("single", 0.94, 6), ("flat", 0.92, 1))
        ]
    )
    common = {"train_limit": "500", "train_examples": 500.0, "b": "study/arm=single", "n_b": 3}
    diffs = pd.DataFrame(
        [
            {
                **common,
                "a": "study/arm=multitask",
                "diff": -0.01,
                "ci_low": -0.02,
                "ci_high": -0.005,
                "method": "paired",
                "n_a": 3,
            },
            {
                **common,
                "a": "study/arm=flat",
                "diff": -0.02,
                "ci_low": float("nan"),
                "ci_high": float("nan"),
                "method": "welch",
                "n_a": 1,
                "n_b": 6,
            },
        ]
    )
    row = metric_table(summary, diffs)[2].split(" | ")
    assert row[1:4] == ["0.9300 ± 0.0100 (3)", "0.9400 ± 0.0100 (6)", "0.9200 ± 0.0100 (1)"]
    assert row[4] == "-0.0100 [-0.0200, -0.0050] paired (3): single ahead"
    assert row[5] == "-0.0200 [–, –] welch (1, 6): no interval (n < 2) |"


def test_study_page_kept_validation_is_the_monitors_first_best_or_the_last_without_one(tmp_path):
    """In a real MLflow store: the first best of the monitor (a later equal value is not kept), the last
    validation for a run that monitored nothing (`callbacks.checkpoint.monitor=null`), None without values."""
    from mlflow.tracking import MlflowClient

    from polyhead.study.page import kept_validation

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("runs", artifact_location=str(tmp_path / "artifacts"))

    def run(monitor, values):
        made = client.create_run(experiment)
        client.log_param(made.info.run_id, "callbacks/checkpoint/monitor", monitor)
        for step, value in enumerate(values):
            client.log_metric(made.info.run_id, "val/objective", value, step=step)
        return client.get_run(made.info.run_id)

    assert kept_validation(client, run("val/objective", [0.5, 0.7, 0.6, 0.7])) == (2, 4)
    assert kept_validation(client, run("None", [0.5, 0.7, 0.6])) == (3, 3)
    assert kept_validation(client, run("val/objective", [])) is None
