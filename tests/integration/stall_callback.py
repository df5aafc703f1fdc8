"""Callbacks for test_resume: at one training step, or when testing starts, they write a marker file and wait
to be killed; or they script the validation score."""

import os
import time
from pathlib import Path

import pytorch_lightning as pl


class StallAt(pl.Callback):
    def __init__(self, step: int, marker: str):
        self.step, self.marker = step, Path(marker)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            self.marker.write_text(str(os.getpid()))
            time.sleep(600)  # until SIGKILL


class StallAtTest(pl.Callback):
    def __init__(self, marker: str):
        self.marker = Path(marker)

    def on_test_start(self, trainer, pl_module):
        self.marker.write_text(str(os.getpid()))
        time.sleep(600)  # until SIGKILL


class ScriptedScore(pl.Callback):
    """Logs `val/scripted` = scores[epoch] at each validation: with
    `callbacks.checkpoint.monitor=val/scripted` a test decides which epoch is the best."""

    def __init__(self, scores: list[float]):
        self.scores = list(scores)

    def on_validation_epoch_end(self, trainer, pl_module):
        pl_module.log("val/scripted", float(self.scores[trainer.current_epoch]))
