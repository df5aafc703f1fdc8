"""What a checkpoint carries besides weights: RNG states (Lightning saves none), so a resumed run continues
the same random stream; the resolved config, label sets and MLflow run id, so a checkpoint alone rebuilds
the model and names its run."""

from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch


class RngState(pl.Callback):
    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint["rng_states"] = {
            "python": random.getstate(),
            "numpy": _numpy_state_to_plain(np.random.get_state()),
            "torch": torch.get_rng_state(),
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        states = checkpoint.get("rng_states")
        if states:
            random.setstate(states["python"])
            kind, keys, pos, has_gauss, cached = states["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            torch.set_rng_state(states["torch"])


def _numpy_state_to_plain(state) -> tuple:
    """Tensors and Python scalars only, so checkpoints load with torch.load(weights_only=True)."""
    kind, keys, pos, has_gauss, cached = state
    return kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)


class RunSpec(pl.Callback):
    """The resolved config and label sets in every checkpoint, so a checkpoint alone rebuilds the model
    (`python -m polyhead.export checkpoint=...`), and the MLflow run id, so `resume=<checkpoint>` continues
    that run. Plain strings and lists: loads with weights_only=True."""

    def __init__(self, config_yaml: str, labels: dict[str, list[str]]):
        self.config_yaml, self.labels = config_yaml, labels

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        from pytorch_lightning.loggers import MLFlowLogger

        checkpoint["polyhead"] = {"config": self.config_yaml, "labels": self.labels}
        # trainer.loggers, not pl_module.logger: under fast_dev_run that is a DummyLogger whose every
        # attribute is a local function (pickling one fails), and only an MLflow logger has a run id
        run_ids = [lg.run_id for lg in trainer.loggers if isinstance(lg, MLFlowLogger)]
        if run_ids and isinstance(run_ids[0], str):
            checkpoint["mlflow_run_id"] = run_ids[0]
