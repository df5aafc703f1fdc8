"""Training speed in words per second (real words, not wordpieces or padding)."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class WordThroughput(pl.Callback):
    """Logs train/words_per_sec per epoch: wall time between training batches incl. data loading and the
    optimizer step, with validation time left out."""

    def __init__(self):
        self.words, self.seconds, self._last = 0, 0.0, 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self.words, self.seconds, self._last = 0, 0.0, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        self.seconds += now - self._last
        self._last = now
        self.words += int(batch["alignment"].word_mask.sum())

    def on_validation_end(self, trainer, pl_module):
        self._last = time.perf_counter()

    @property
    def words_per_sec(self) -> float | None:
        """Words per second so far this epoch (callbacks.progress prints it too); None before a batch ends."""
        return self.words / self.seconds if self.seconds > 0 else None

    def on_train_epoch_end(self, trainer, pl_module):
        if self.words_per_sec is not None:
            pl_module.log("train/words_per_sec", self.words_per_sec)
