"""How many training examples carry each head's task: the x axis of per-task learning curves."""

from __future__ import annotations

import pytorch_lightning as pl


class TrainExamplesPerTask(pl.Callback):
    """Logs `data/train_examples/<task>` once, at step 0, for every head of the model: the training examples
    that carry that task's labels. With corpora feeding different tasks (EWT tags, UNER entities) a
    multitask run's `data/train_examples` counts them all, while the per-task counts match the single-task
    runs' and are what `data.train_limit` limits (polyhead.report plots a task's metrics against them)."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        examples = getattr(datamodule, "examples", {}).get("train")
        if not examples:
            return
        counts = {
            f"data/train_examples/{task}": sum(ex.has(task) for ex in examples)
            for task in pl_module.model.heads
        }
        for logger in trainer.loggers:
            logger.log_metrics(counts, step=0)
