"""callbacks.progress without a fit: its settings, its durations, and that every training command gets it."""

from __future__ import annotations

import sys

import pytest
from conftest import compose_config

from polyhead.errors import UserError
from polyhead.training.callbacks.progress import ProgressLog, format_duration, replaces_progress_bar


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (44.6, "45s"), (372, "6m12s"), (3599, "59m59s"), (7500, "2h05m")]
)
def test_progress_format_duration_is_as_precise_as_an_estimate(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"mode": "tqdm"}, "callbacks.progress.mode"), ({"every_n_steps": 0}, "every_n_steps")],
)
def test_progress_rejects_bad_settings_naming_the_key(kwargs, key):
    with pytest.raises(UserError, match=key):
        ProgressLog(**kwargs)


def test_progress_mode_decides_lines_and_bar():
    # pytest captures stderr, so it is not a terminal here: auto prints lines, as under nohup or SLURM
    assert ProgressLog("auto").lines and ProgressLog("lines").lines and not ProgressLog("bar").lines
    assert replaces_progress_bar([object(), ProgressLog("auto")])
    assert not replaces_progress_bar([ProgressLog("bar")])


def test_progress_auto_keeps_the_bar_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert not ProgressLog("auto").lines and ProgressLog("lines").lines


@pytest.mark.parametrize(
    ("name", "overrides", "loss_key"),
    [
        ("train", [], "train/loss"),
        ("pretrain", [], "train/mlm_loss"),
        ("distill", ["teacher=x"], "train/loss"),
    ],
)
def test_progress_is_configured_for_every_training_command(tmp_path, name, overrides, loss_key):
    cfg = compose_config(name, tmp_path, overrides, tmp_path / "out")
    spec = cfg.callbacks.progress
    assert spec._target_ == "polyhead.training.callbacks.progress.ProgressLog"
    assert (spec.mode, spec.every_n_steps, spec.loss_key) == ("auto", 50, loss_key)
