"""Fail fast on a diverged run, so Lightning marks its MLflow run FAILED instead of training on NaNs."""

from __future__ import annotations

import math

import pytorch_lightning as pl


class NonFiniteLoss(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs  # {} for a step with no labels
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"train/loss is {float(loss)} at step {trainer.global_step}: the run diverged "
                "(lower optim.lr or raise trainer.gradient_clip_val)"
            )
