"""Progress where users look: where stderr is not a terminal (nohup, SLURM, CI logs) Lightning's bar draws
nothing useful, so a log line every N optimizer steps and at each validation instead; the bar on terminals.

The lines go through `logging`, so Hydra writes them to the job's .log file and to the console:

    step 150/1200 (12%) | epoch 1/5 | loss 0.8321 | 1,234 words/s | ETA 6m12s
    step 240/1200 (20%) | epoch 1/5 | val/objective 0.8123 | val/ner_f1 0.7410 | val/tagger_acc 0.9012
"""

from __future__ import annotations

import logging
import math
import sys
import time

import pytorch_lightning as pl

from polyhead.errors import UserError
from polyhead.training.callbacks.throughput import WordThroughput

log = logging.getLogger(__name__)
MODES = ("auto", "lines", "bar")


class ProgressLog(pl.Callback):
    """Logs step/total, epoch, the mean train loss since the last line, words/s (WordThroughput's count)
    and an ETA every `every_n_steps` optimizer steps (and after the first), and the val scores after each
    validation. mode: auto (lines where stderr is not a terminal, else the bar) | lines | bar (no lines)."""

    def __init__(self, mode: str = "auto", every_n_steps: int = 50, loss_key: str = "train/loss"):
        if mode not in MODES:
            raise UserError(f"callbacks.progress.mode={mode!r}: must be one of {MODES}")
        if int(every_n_steps) < 1:
            raise UserError(f"callbacks.progress.every_n_steps={every_n_steps}: must be 1 or more")
        self.lines = mode == "lines" or (mode == "auto" and not sys.stderr.isatty())
        self.every_n_steps, self.loss_key = int(every_n_steps), loss_key
        self._start_time, self._start_step, self._last_step = 0.0, 0, -1
        self._loss_sum, self._loss_count = None, 0

    def on_train_start(self, trainer, pl_module):
        self._start_time, self._start_step = time.perf_counter(), trainer.global_step  # a resume starts late
        self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not (self.lines and trainer.is_global_zero):
            return
        loss = trainer.callback_metrics.get(self.loss_key)
        if loss is not None and (outputs.get("loss") if isinstance(outputs, dict) else outputs) is not None:
            self._loss_sum = loss.detach() + (0 if self._loss_sum is None else self._loss_sum)  # no sync here
            self._loss_count += 1
        step = trainer.global_step  # optimizer steps: unchanged while gradients accumulate
        if step == self._last_step or not (step == self._start_step + 1 or step % self.every_n_steps == 0):
            return
        self._last_step = step
        log.info("%s", " | ".join([*self._position(trainer), *self._training_fields(trainer)]))

    def on_validation_end(self, trainer, pl_module):
        if not (self.lines and trainer.is_global_zero) or trainer.sanity_checking:
            return
        # the headline metrics the module marks for a progress bar: val/objective and each task's score
        metrics = {k: v for k, v in trainer.progress_bar_metrics.items() if k.startswith("val/")}
        order = sorted(metrics, key=lambda k: (k != "val/objective", k))  # the objective first
        fields = [f"{k} {float(metrics[k]):.4f}" for k in order]
        log.info("%s", " | ".join([*self._position(trainer), *fields]))

    def _position(self, trainer) -> list[str]:
        """`step 150/1200 (12%)` and `epoch 1/5` (no total where the run has none)."""
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        if math.isfinite(total) and total > 0:
            where = f"step {step}/{int(total)} ({int(100 * step / total)}%)"
        else:
            where = f"step {step}"
        epochs = trainer.max_epochs
        epoch = f"epoch {trainer.current_epoch + 1}" + (f"/{epochs}" if epochs and epochs > 0 else "")
        return [where, epoch]

    def _training_fields(self, trainer) -> list[str]:
        """Mean train loss since the last line, words per second this epoch, time left at the pace so far."""
        fields = []
        if self._loss_count:
            fields.append(f"loss {float(self._loss_sum) / self._loss_count:.4f}")
            self._loss_sum, self._loss_count = None, 0
        rate = words_per_sec(trainer)
        if rate is not None:
            fields.append(f"{rate:,.0f} words/s")
        total, done = trainer.estimated_stepping_batches, trainer.global_step - self._start_step
        if math.isfinite(total) and done > 0:  # validation included: it recurs until the end as well
            elapsed = time.perf_counter() - self._start_time
            fields.append(f"ETA {format_duration(elapsed / done * max(0, total - trainer.global_step))}")
        return fields


def words_per_sec(trainer: pl.Trainer) -> float | None:
    """What the run's WordThroughput callback measured this epoch; None without one (pretraining)."""
    meters = [c for c in trainer.callbacks if isinstance(c, WordThroughput)]
    return meters[0].words_per_sec if meters else None


def format_duration(seconds: float) -> str:
    """45s, 6m12s, 2h05m: as precise as an estimate deserves."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def replaces_progress_bar(callbacks) -> bool:
    """Whether a ProgressLog among `callbacks` prints lines, so Lightning's bar should be off (a bar written
    to a file is carriage-return junk)."""
    return any(isinstance(c, ProgressLog) and c.lines for c in callbacks)
