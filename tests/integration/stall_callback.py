"""A callback for test_resume: at one training step it writes a marker file and waits to be killed."""

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
