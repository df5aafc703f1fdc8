"""Checkpoint extras Lightning does not save: RNG states, so a resumed run continues the same random stream."""

from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch


class RngState(pl.Callback):
    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint["rng_states"] = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        states = checkpoint.get("rng_states")
        if states:
            random.setstate(states["python"])
            np.random.set_state(states["numpy"])
            torch.set_rng_state(states["torch"])
