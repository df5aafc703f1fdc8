"""LightningModule: one encoder pass per step, masked per-task losses, torchmetrics per split."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import Metric

from polyhead.models.multitask import MultitaskModel
from polyhead.training.optim import build_optimizer


class MultitaskModule(pl.LightningModule):
    """`grad_norm_every`: every that many steps, log each task's gradient norm into the shared encoder."""

    def __init__(self, model: MultitaskModel, optim, objective: dict[str, float], grad_norm_every: int = 0):
        super().__init__()
        self.model, self.optim_cfg, self.objective = model, optim, objective
        self.grad_norm_every = int(grad_norm_every or 0)
        self.metrics = nn.ModuleDict(
            {
                split: nn.ModuleDict({t: h.metric() for t, h in model.heads.items()})
                for split in ("val", "test")
            }
        )
        # Non-scalar metric outputs (confusion matrices, per-type tables) of the last evaluation, per split
        # and task: callbacks.artifacts.TestArtifacts writes the test ones to MLflow.
        self.details: dict[str, dict[str, dict[str, torch.Tensor]]] = {"val": {}, "test": {}}

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return {"alignment": batch["alignment"].to(device), "examples": batch["examples"]}

    def _forward(self, batch):
        alignment = batch["alignment"]
        enc, logits = self.model(alignment, [ex.words for ex in batch["examples"]])
        targets = self.model.targets(batch["examples"], alignment.word_mask.shape[1], self.device)
        return enc, logits, targets

    def training_step(self, batch, batch_idx):
        enc, logits, targets = self._forward(batch)
        losses = self.model.losses(logits, targets)
        if not losses:
            return None  # nothing labelled in this batch: skip the step
        total = self.model.total_loss(losses)
        self.log_losses(total, losses, len(batch["examples"]))
        self.log_grad_norms(enc, losses, len(batch["examples"]))
        return total

    def log_losses(self, total: torch.Tensor, losses: dict[str, torch.Tensor], size: int) -> None:
        self.log("train/loss", total, prog_bar=True, batch_size=size)
        for task, loss in losses.items():
            self.log(f"train/{task}_loss", loss, prog_bar=True, batch_size=size)

    def log_grad_norms(self, enc, losses: dict[str, torch.Tensor], size: int) -> None:
        """Every `grad_norm_every` steps, `train/grad_norm/<task>` (task_grad_norms)."""
        if not self.grad_norm_every or self.global_step % self.grad_norm_every or not enc.words.requires_grad:
            return
        for task, norm in task_grad_norms(enc, losses, self.model.loss_weights).items():
            self.log(f"train/grad_norm/{task}", norm, batch_size=size)

    def _eval_step(self, batch, split: str):
        enc, logits, targets = self._forward(batch)
        losses = self.model.losses(logits, targets)
        size = len(batch["examples"])
        if losses:
            self.log(f"{split}/loss", self.model.total_loss(losses), batch_size=size)
        for task, head in self.model.heads.items():
            head.update_metric(
                self.metrics[split][task], logits[task], targets[task], enc.word_mask, batch["examples"]
            )

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def _log_metrics(self, split: str) -> None:
        values, self.details[split] = {}, {}
        for task, metric in self.metrics[split].items():
            if not any(m.update_called for m in metric.modules() if isinstance(m, Metric)):
                continue  # no labelled text for this task in this split
            for name, value in metric.compute().items():
                if value.ndim:  # a matrix or table: kept for artifacts, not a metric
                    self.details[split].setdefault(task, {})[name] = value.detach().cpu()
                    continue
                values[f"{task}_{name}"] = value
                self.log(f"{split}/{task}_{name}", value, prog_bar=name in ("acc", "f1", "macro_f1"))
            metric.reset()
        weights = {k: w for k, w in self.objective.items() if k in values}
        if weights:  # the value checkpoints and sweeps optimise: weighted mean of the chosen task scores
            score = sum(w * values[k] for k, w in weights.items()) / sum(weights.values())
            self.log(f"{split}/objective", score, prog_bar=True)

    def on_validation_epoch_end(self):
        self._log_metrics("val")
        mixes = {"": self.model.encoder.mix} if self.model.encoder.mix is not None else {}
        mixes.update({f"{task}/": mix for task, mix in self.model.encoder.task_mixes.items()})
        for prefix, mix in mixes.items():  # scalar_mix/layer_00, or per task scalar_mix/<task>/layer_00
            for i, w in enumerate(torch.softmax(mix.weights.detach().float(), 0).tolist()):
                self.log(f"scalar_mix/{prefix}layer_{i:02d}", w)

    def on_test_epoch_end(self):
        self._log_metrics("test")

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Clip here rather than in Lightning's AMP plugin, which refuses fused AdamW; safe because bf16 and
        fp32 use no gradient scaler (fp16 "16-mixed" needs optim.fused=false)."""
        if not gradient_clip_val:
            return
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(self.parameters(), gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)

    def configure_optimizers(self):
        optimizer, scheduler = build_optimizer(
            self.model, self.trainer.estimated_stepping_batches, self.optim_cfg
        )
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def task_grad_norms(
    enc, losses: dict[str, torch.Tensor], weights: dict[str, float]
) -> dict[str, torch.Tensor]:
    """Per task, the norm of the gradient its weighted loss sends into the shared encoder output (word and
    text vectors), so a starved or dominating task shows. One backward pass through each head, not through
    the encoder; the graph is kept for the training step's own backward."""
    norms = {}
    for task, loss in losses.items():
        grads = torch.autograd.grad(
            weights[task] * loss, [enc.words, enc.cls], retain_graph=True, allow_unused=True
        )
        norms[task] = torch.stack([g.float().pow(2).sum() for g in grads if g is not None]).sum().sqrt()
    return norms
