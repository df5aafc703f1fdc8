"""Checkpoint files: the trainer writes them beside themselves, never through $TMPDIR, and a save that fails
midway leaves the previous file whole; a folder's best checkpoint is the one saved with the best score."""

from __future__ import annotations

import resource
import tempfile

import pytest
import torch
from conftest import compose_config
from omegaconf import open_dict
from pytorch_lightning.callbacks import ModelCheckpoint

from polyhead.errors import UserError
from polyhead.export.checkpoint import checkpoint_from_run, pick_checkpoint
from polyhead.training.trainer import build_trainer


@pytest.fixture
def checkpoint_io(tmp_path, monkeypatch):
    """The checkpoint IO of train.py's trainer, with $TMPDIR naming a folder that does not exist, so any
    temp file written there fails the save (root writes into read-only folders, so a missing one it is)."""
    elsewhere = tmp_path / "tmpfs"
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))  # tempfile caches TMPDIR once read
    cfg = compose_config("train", tmp_path, ["trainer.enable_progress_bar=false"], tmp_path / "out")
    with open_dict(cfg):
        cfg.callbacks = {"checkpoint": cfg.callbacks.checkpoint}  # what saves; the other callbacks do not
    trainer, _ = build_trainer(cfg, [])
    yield trainer.strategy.checkpoint_io
    assert not elsewhere.exists()


def test_checkpoint_files_trainer_checkpoint_is_saved_beside_itself_not_in_tmpdir(tmp_path, checkpoint_io):
    last = tmp_path / "out" / "checkpoints" / "last.ckpt"
    for step in (1, 2):
        checkpoint_io.save_checkpoint({"global_step": step, "w": torch.arange(5)}, last)
        assert torch.load(last, weights_only=True)["global_step"] == step
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]


def test_checkpoint_files_trainer_checkpoint_save_failing_midway_keeps_the_previous_one(
    tmp_path, checkpoint_io
):
    last = tmp_path / "out" / "checkpoints" / "last.ckpt"
    checkpoint_io.save_checkpoint({"global_step": 1, "w": torch.zeros(100)}, last)
    limit = 64 * 1024  # a file grown past 64 KiB fails to write (EFBIG): a disk filling up midway
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises((OSError, RuntimeError)):
            checkpoint_io.save_checkpoint({"global_step": 2, "w": torch.zeros(1_000_000)}, last)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    previous = torch.load(last, weights_only=True)
    assert previous["global_step"] == 1 and previous["w"].shape == (100,)
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]  # no temp file left behind


@pytest.mark.parametrize(
    ("mode", "scores", "best"),
    [
        ("max", {"best-epoch00-step4": 0.9, "best-epoch01-step8": 0.5, "best-epoch02-step12": 0.7}, 0),
        ("min", {"best-epoch00-step4": 0.3, "best-epoch01-step8": 0.1, "best-epoch02-step12": 0.2}, 1),
    ],
)
def test_checkpoint_files_pick_chooses_the_best_score_not_the_last_name(tmp_path, mode, scores, best):
    """Several best*.ckpt in one folder (kept before a resume, or a kill before the older was deleted): the
    one its ModelCheckpoint scored best, in that callback's mode; an empty file a kill left is passed over."""
    callback = ModelCheckpoint(dirpath=tmp_path, monitor="val/objective", mode=mode)
    for name, score in scores.items():
        callback.current_score = torch.tensor(score)
        state = {"state_dict": {}, "callbacks": {callback.state_key: callback.state_dict()}}
        torch.save(state, tmp_path / f"{name}.ckpt")
    (tmp_path / "best-epoch03-step16.ckpt").write_bytes(b"")
    torch.save({"state_dict": {}}, tmp_path / "last.ckpt")
    assert pick_checkpoint(tmp_path) == tmp_path / f"{list(scores)[best]}.ckpt"


def _scored_checkpoint(path, score, run_id):
    callback = ModelCheckpoint(dirpath=path.parent, monitor="val/objective", mode="max")
    callback.current_score = torch.tensor(score)
    state = {"state_dict": {}, "callbacks": {callback.state_key: callback.state_dict()}}
    torch.save({**state, "mlflow_run_id": run_id}, path)


def test_checkpoint_files_pick_for_a_run_passes_over_another_runs_files(tmp_path):
    """A job rerun afresh in the folder a killed one left: the killed run's better-scored file stays there,
    and a run's best checkpoint (`export run_id=`, `teacher=`) is its own, not the folder's best."""
    _scored_checkpoint(tmp_path / "best-epoch03-step40.ckpt", 0.9, "killed")
    _scored_checkpoint(tmp_path / "best-epoch02-step30-v1.ckpt", 0.7, "rerun")
    _scored_checkpoint(tmp_path / "best-epoch01-step20-v1.ckpt", 0.6, "rerun")
    torch.save({"state_dict": {}, "mlflow_run_id": "rerun"}, tmp_path / "last.ckpt")
    assert pick_checkpoint(tmp_path, "rerun") == tmp_path / "best-epoch02-step30-v1.ckpt"
    assert pick_checkpoint(tmp_path, "killed") == tmp_path / "best-epoch03-step40.ckpt"
    assert pick_checkpoint(tmp_path) == tmp_path / "best-epoch03-step40.ckpt"  # a folder, no run named
    with pytest.raises(UserError, match=r"best\*.ckpt or last.ckpt of run other"):
        pick_checkpoint(tmp_path, "other")


def test_checkpoint_files_resume_refuses_a_last_checkpoint_another_run_wrote(tmp_path):
    """`resume=<run id>` of a run whose folder a later run reused: its last.ckpt is the later run's now."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("runs", artifact_location=str(tmp_path / "artifacts"))
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    first, later = (
        client.create_run(experiment, tags={"checkpoint_dir": str(folder)}).info.run_id for _ in range(2)
    )
    torch.save({"state_dict": {}, "mlflow_run_id": later}, folder / "last.ckpt")
    assert checkpoint_from_run(uri, later) == str(folder / "last.ckpt")
    with pytest.raises(UserError, match=f"written by a later run \\({later}\\) .* not by run {first}"):
        checkpoint_from_run(uri, first)
