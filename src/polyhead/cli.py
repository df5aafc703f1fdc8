"""What the command-line entry points (train.py, pretrain.py, python -m polyhead.export) share: a user error
is one line, `error: <message>`, on stderr and exit status 1; a run that fails before it wrote anything
leaves no output folder behind."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from polyhead.errors import find_user_error

HYDRA_FILES = {".hydra"}  # what Hydra itself writes into a run folder, besides the job's .log file


def run_cli(task: Callable[[DictConfig], object], cfg: DictConfig):
    """`task(cfg)`; a user error exits with its message, a bug keeps its traceback (Hydra prints it).
    Jobs of a multirun re-raise: the sweep records the failure and goes on with the other jobs."""
    try:
        return task(cfg)
    except Exception as err:
        if _multirun():
            raise
        remove_unused_output_dir()
        found = find_user_error(err)
        if found is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {found}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def remove_unused_output_dir() -> Path | None:
    """Delete this run's Hydra output folder if it holds only Hydra's own files (.hydra/, the job log):
    a run that failed before writing checkpoints, a pipeline or an encoder. Returns the folder removed."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    try:
        folder = HydraConfig.get().runtime.output_dir
    except Exception:  # composed without a run (tests): no folder of its own
        return None
    if not folder or not Path(folder).is_dir():
        return None
    folder = Path(folder)
    if any(p.name not in HYDRA_FILES and p.suffix != ".log" for p in folder.iterdir()):
        return None
    shutil.rmtree(folder, ignore_errors=True)
    return folder
