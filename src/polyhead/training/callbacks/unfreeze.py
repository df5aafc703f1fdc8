"""Gradual unfreezing (ULMFiT): heads and the top encoder layer train first, then one more layer at a time."""

from __future__ import annotations

import pytorch_lightning as pl

from polyhead.training.optim import encoder_depth


class GradualUnfreezing(pl.Callback):
    """Every `every_n_epochs` epochs (or `every_n_steps` steps) one more encoder layer, top-down, trains.

    Every parameter sits in the optimizer from the start with its layer-wise learning rate (see
    optim.param_groups); a frozen layer simply has requires_grad=False, so AdamW skips it and the
    schedule stays one schedule. Lightning's BaseFinetuning instead adds param groups on unfreezing,
    which would break the per-layer groups. Depth num_layers + 1 (pooler) counts with the top layer.
    """

    def __init__(self, every_n_epochs: int = 1, every_n_steps: int | None = None, start_layers: int = 1):
        self.every_n_epochs, self.every_n_steps, self.start_layers = (
            every_n_epochs,
            every_n_steps,
            start_layers,
        )

    def trainable_layers(self, trainer: pl.Trainer) -> int:
        stage = (
            trainer.global_step // self.every_n_steps
            if self.every_n_steps
            else trainer.current_epoch // self.every_n_epochs
        )
        return self.start_layers + stage

    def apply(self, pl_module: pl.LightningModule, n_trainable: int) -> None:
        encoder = pl_module.model.encoder
        lowest = encoder.num_layers + 1 - n_trainable  # depths >= lowest train
        for name, param in encoder.model.named_parameters():
            frozen = f"model.{name}" in getattr(encoder, "frozen", ())  # encoder.freeze_word_embeddings
            param.requires_grad = encoder_depth(name, encoder.num_layers) >= lowest and not frozen

    def on_train_epoch_start(self, trainer, pl_module):
        self.apply(pl_module, self.trainable_layers(trainer))
        pl_module.log("unfreeze/trainable_layers", float(self.trainable_layers(trainer)))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.every_n_steps:
            self.apply(pl_module, self.trainable_layers(trainer))
