"""The Lightning Trainer a run fits with: the configured callbacks plus the run's own, its loggers, and the
precision `trainer.precision` resolves to on this machine (`auto`: bf16 only where it is native). Checkpoints
are written beside themselves and renamed into place (callbacks.checkpoint.AtomicCheckpointIO)."""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from polyhead.hardware import resolve_trainer_precision
from polyhead.training.callbacks.checkpoint import AtomicCheckpointIO
from polyhead.training.callbacks.progress import replaces_progress_bar


def build_trainer(
    cfg: DictConfig, loggers: list, callbacks: Sequence[pl.Callback] = ()
) -> tuple[pl.Trainer, str]:
    """The Trainer of `cfg.trainer` with `cfg.callbacks` (a null entry is switched off) and `callbacks`,
    and the precision it trains in. A configured `trainer.plugins` replaces the atomic checkpoint IO."""
    configured = [instantiate(spec) for spec in cfg.callbacks.values() if spec is not None]
    precision = resolve_trainer_precision(cfg.trainer)
    bar = cfg.trainer.get("enable_progress_bar", True) and not replaces_progress_bar(configured)  # log lines
    trainer = instantiate(
        cfg.trainer,
        precision=precision,
        enable_progress_bar=bar,
        logger=loggers,
        callbacks=[*configured, *callbacks],
        **({} if cfg.trainer.get("plugins") else {"plugins": [AtomicCheckpointIO()]}),
    )
    return trainer, precision
