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

HYDRA_DIR, HYDRA_DIR_FILES = ".hydra", {"config.yaml", "hydra.yaml", "overrides.yaml"}  # and the job's .log


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
    """Delete this run's Hydra output folder if this process created it and it holds only Hydra's own files
    (.hydra/, the job log): a run that failed before writing checkpoints, a pipeline or an encoder. Only a
    folder `hydra.run.dir` claimed through ${unique_dir:...} is new for certain (polyhead.config.claim_dir
    never returns one that exists); a fixed hydra.run.dir may hold an earlier run's files, and is kept.
    Returns the folder removed."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return None
    try:
        hydra = HydraConfig.get()
        folder, asked = hydra.runtime.output_dir, OmegaConf.to_container(hydra.run, resolve=False)["dir"]
    except Exception:  # composed without a run (tests): no folder of its own
        return None
    if not folder or not Path(folder).is_dir() or not str(asked).startswith("${unique_dir:"):
        return None
    folder = Path(folder)
    if not all(_hydra_file(p) for p in folder.iterdir()):
        return None
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def _hydra_file(path: Path) -> bool:
    """A file Hydra writes into a run folder: the job's .log, or .hydra/ with its three YAML files."""
    if path.name == HYDRA_DIR:
        return path.is_dir() and all(p.name in HYDRA_DIR_FILES for p in path.iterdir())
    return path.suffix == ".log" and path.is_file()
