"""Progress lines of a tiny real fit where stderr is not a terminal (pytest captures it, as nohup or SLURM
would): the steps they fall on, their fields, the validation line, and none in `bar` mode."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT, child_env, compose_config, tiny_run

from polyhead.models.build import build_model
from polyhead.training.lit_module import MultitaskModule
from polyhead.training.loggers import instantiate_loggers
from polyhead.training.run import load_data
from polyhead.training.trainer import build_trainer

STEP_LINE = re.compile(
    r"^step (\d+)/10 \(\d+%\) \| epoch ([12])/2 \| loss (\d+\.\d{4}) \| ([\d,]+) words/s \| ETA (\w+)$"
)


def fit(tmp_path, tiny_bert, *overrides):
    """The trainer of train.py's config fitted on the demo corpus with a tiny BERT (5 steps an epoch)."""
    tiny = tiny_run(
        tiny_bert,
        "trainer.limit_train_batches=5",
        "trainer.limit_val_batches=2",
        "trainer.enable_progress_bar=true",  # the bar on: the progress lines must show without a terminal
        "logger=csv",
        short=False,
    )
    cfg = compose_config("train", tmp_path, [*tiny, *overrides], tmp_path / "out")
    datamodule = load_data(cfg)
    module = MultitaskModule(build_model(cfg, datamodule.labels), cfg.optim, dict(cfg.objective))
    trainer, _ = build_trainer(cfg, instantiate_loggers(cfg, None))
    trainer.fit(module, datamodule=datamodule)
    return trainer


def progress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "polyhead.training.callbacks.progress"]


def test_progress_fit_logs_steps_and_validations_where_stderr_is_no_terminal(tmp_path, tiny_bert, caplog):
    caplog.set_level(logging.INFO, logger="polyhead.training.callbacks.progress")
    trainer = fit(tmp_path, tiny_bert, "trainer.max_epochs=2", "callbacks.progress.every_n_steps=2")
    assert trainer.progress_bar_callback is None  # Lightning's bar is off while lines are printed
    lines = progress_lines(caplog)
    steps = [STEP_LINE.match(line) for line in lines if "val/" not in line]
    assert all(steps), lines
    assert [int(m[1]) for m in steps] == [1, 2, 4, 6, 8, 10]  # the first step, then every 2nd
    assert [int(m[2]) for m in steps] == [1, 1, 1, 2, 2, 2]
    assert all(0 < float(m[3]) < 20 and int(m[4].replace(",", "")) > 0 for m in steps)
    assert steps[-1][5] == "0s"  # nothing left after the last step
    vals = [line for line in lines if "val/" in line]
    assert [v.split(" | ")[:2] for v in vals] == [
        ["step 5/10 (50%)", "epoch 1/2"],
        ["step 10/10 (100%)", "epoch 2/2"],
    ]
    for v in vals:
        keys = [field.split()[0] for field in v.split(" | ")[2:]]
        assert keys[0] == "val/objective"
        assert {"val/tagger_acc", "val/ner_f1", "val/textcat_macro_f1"} <= set(keys)
        assert all(0.0 <= float(field.split()[1]) for field in v.split(" | ")[2:])
    assert lines.index(vals[0]) == 3  # after steps 1, 2 and 4, before step 6


@pytest.mark.parametrize("mode", ["bar"])
def test_progress_fit_bar_mode_logs_no_lines_and_keeps_the_bar(tmp_path, tiny_bert, caplog, mode):
    caplog.set_level(logging.INFO, logger="polyhead.training.callbacks.progress")
    trainer = fit(tmp_path, tiny_bert, "trainer.max_epochs=1", f"callbacks.progress.mode={mode}")
    assert trainer.global_step == 5
    assert trainer.progress_bar_callback is not None
    assert progress_lines(caplog) == []


def test_progress_fit_lines_reach_the_job_log_and_console_of_a_run_under_nohup(tmp_path, tiny_bert):
    (tmp_path / "mlruns").mkdir()
    args = tiny_run(
        tiny_bert,
        f"paths.root_dir={tmp_path}",
        "hydra.run.dir=outputs/runs/nohup",
        "threads=1",
        "logger=csv",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=true",
        "callbacks.progress.every_n_steps=2",
        "export.enabled=false",
    )
    env = child_env(HF_HUB_OFFLINE="1", PATH="/usr/bin:/bin", TOKENIZERS_PARALLELISM="false")
    with open(tmp_path / "nohup.out", "w") as out:  # what `nohup python train.py ... &` writes to
        cmd = [sys.executable, str(PROJECT_ROOT / "train.py"), *args]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=600)
    console = (tmp_path / "nohup.out").read_text()
    assert proc.returncode == 0, console[-3000:]
    job_log = (tmp_path / "outputs" / "runs" / "nohup" / "train.log").read_text()
    for text in (console, job_log):
        assert re.findall(r"step (\d+)/4 \(\d+%\) \| epoch 1/1 \| loss", text) == ["1", "2", "4"]
        assert "step 4/4 (100%) | epoch 1/1 | val/objective " in text
    assert "Epoch 0" not in console  # no Lightning bar (rich: "Epoch 0/0 ━━", tqdm: "Epoch 0: 50%|")
