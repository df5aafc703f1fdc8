"""Checkpoint files written whole or not at all, beside themselves (never through $TMPDIR). They are read back
in polyhead.export.checkpoint (whole, or for the score their ModelCheckpoint saved them with)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_fabric.utilities.cloud_io import _is_local_file_protocol


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, but a local checkpoint goes to a temp file in its own folder, renamed over
    the old one. Lightning's fsspec transaction writes the temp file in $TMPDIR and moves it: with TMPDIR on
    tmpfs (cluster nodes) a kill during that cross-device copy left a truncated file, the previous one gone,
    and the temp file held in RAM. Remote paths (s3://, ...) keep Lightning's way."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path) or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_atomically(checkpoint, Path(path))


def save_atomically(obj: Any, path: Path) -> None:
    """torch.save to `<folder>/.<name>.tmp-<pid>`, fsync'd, then os.replace: at every instant `path` is the
    old file or the new one, whole. A failed write removes its temp file; temp files of dead processes (a
    kill mid-write) go once a later save of the same name succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)  # the rename itself survives a power loss
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            stale.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory
        pass
    finally:
        os.close(fd)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
