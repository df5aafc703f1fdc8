"""One shared encoder, one head per task: the encoder runs once per batch and every head reads its output."""

from __future__ import annotations

import torch
from torch import nn

from polyhead.data.schema import Example
from polyhead.models.encoder import Encoder, EncoderOutput
from polyhead.tokens.alignment import Alignment


class MultitaskModel(nn.Module):
    def __init__(
        self, encoder: Encoder, heads: dict[str, nn.Module], loss_weights: dict[str, float] | None = None
    ):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)
        for task, head in self.heads.items():
            head.task = task  # the annotation it reads: Example.get(task)
        self.loss_weights = {task: float((loss_weights or {}).get(task, 1.0)) for task in heads}

    def forward(
        self, alignment: Alignment, texts: list[list[str]] | None = None
    ) -> tuple[EncoderOutput, dict[str, torch.Tensor]]:
        """One encoder pass, then every head on its view of it; `enc` is the shared output (the tensors each
        task's gradient flows back into). `texts`, the words, reach heads that read their forms."""
        enc = self.encoder(alignment)
        enc.texts = texts
        views = self.encoder.task_views(enc, self.heads.keys())
        return enc, {task: head(views[task]) for task, head in self.heads.items()}

    def targets(self, examples: list[Example], width: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {task: head.targets(examples, width).to(device) for task, head in self.heads.items()}

    def losses(
        self, logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Loss of every task that has at least one labelled item in the batch (others add nothing)."""
        out = {}
        for task, head in self.heads.items():
            labelled = targets[task] != -100
            if labelled.any():
                out[task] = head.loss(logits[task], targets[task])
        return out

    def total_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.loss_weights[task] * loss for task, loss in losses.items())

    @torch.inference_mode()
    def predict(self, alignment: Alignment, texts: list[list[str]] | None = None) -> dict[str, list]:
        """Decoded predictions per task: tag lists, entity spans, category scores."""
        enc, logits = self(alignment, texts)
        return {task: head.decode(logits[task], enc.word_mask) for task, head in self.heads.items()}
