"""Document classification: exclusive classes (softmax) or independent labels (sigmoid)."""

from __future__ import annotations

import torch
from torch import nn

from polyhead.data.schema import Example
from polyhead.models.encoder import EncoderOutput
from polyhead.models.heads.soft import kl_divergence
from polyhead.models.heads.tagger import IGNORE


class TextClassificationHead(nn.Module):
    """Pools the text into one vector ([CLS] or mean of words) and scores every label."""

    def __init__(
        self,
        hidden_size: int,
        labels: list[str],
        exclusive: bool = True,
        pooling: str = "cls",
        dropout: float = 0.1,
    ):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"textcat pooling must be 'cls' or 'mean', got {pooling!r}")
        self.labels, self.exclusive, self.pooling = list(labels), exclusive, pooling
        self.config = {
            "hidden_size": hidden_size,
            "labels": self.labels,
            "exclusive": exclusive,
            "pooling": pooling,
            "dropout": dropout,
        }
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_size, len(self.labels))

    def pool(self, enc: EncoderOutput) -> torch.Tensor:  # -> (B, H)
        if self.pooling == "cls":
            return enc.cls
        mask = enc.word_mask.unsqueeze(-1).to(enc.words.dtype)
        return (enc.words * mask).sum(1) / mask.sum(1).clamp(min=1)

    def forward(self, enc: EncoderOutput) -> torch.Tensor:  # (B, H) -> (B, L)
        return self.proj(self.dropout(self.pool(enc)))

    def targets(self, examples: list[Example], width: int) -> torch.Tensor:
        """Exclusive: class id or IGNORE, (B,). Multilabel: 0/1 per label or a row of IGNORE, (B, L)."""
        if self.exclusive:
            return torch.tensor(
                [self.index[ex.cats[0]] if ex.cats is not None else IGNORE for ex in examples],
                dtype=torch.long,
            )
        out = torch.full((len(examples), len(self.labels)), float(IGNORE))
        for i, ex in enumerate(examples):
            if ex.cats is not None:
                out[i] = 0.0
                out[i, [self.index[c] for c in ex.cats]] = 1.0
        return out

    def labelled(self, targets: torch.Tensor) -> torch.Tensor:  # -> (B,) bool
        return targets != IGNORE if self.exclusive else targets[:, 0] != IGNORE

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        keep = self.labelled(targets)
        if self.exclusive:
            return nn.functional.cross_entropy(logits[keep].float(), targets[keep])
        return nn.functional.binary_cross_entropy_with_logits(logits[keep].float(), targets[keep])

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), -1) if self.exclusive else torch.sigmoid(logits.float())

    def decode(self, logits: torch.Tensor, word_mask: torch.Tensor) -> list[dict[str, float]]:
        return [dict(zip(self.labels, row)) for row in self.scores(logits).tolist()]

    # What a teacher gives a student: its logits per text, matched by KL (binary KL per label if independent)
    soft_kind = "text"

    def soft_targets(self, logits: torch.Tensor, word_mask: torch.Tensor) -> list[torch.Tensor]:
        return list(logits.float())  # B x (L,)

    def soft_loss(
        self, logits, teacher: torch.Tensor, mask: torch.Tensor, temperature: float
    ) -> torch.Tensor:
        return kl_divergence(logits[mask], teacher[mask], temperature, self.exclusive)  # (B, L), mask (B,)

    def metric(self):
        from torchmetrics import MetricCollection  # training only, not needed by the exported runtime
        from torchmetrics.classification import (
            MulticlassAccuracy,
            MulticlassConfusionMatrix,
            MulticlassF1Score,
            MultilabelAccuracy,
            MultilabelF1Score,
        )

        n = len(self.labels)
        if not self.exclusive:
            acc, f1 = MultilabelAccuracy(n, average="micro"), MultilabelF1Score(n, average="macro")
            return MetricCollection({"acc": acc, "macro_f1": f1})
        acc, f1 = MulticlassAccuracy(n, average="micro"), MulticlassF1Score(n, average="macro")
        # the (L, L) confusion matrix is written as a test artifact, not logged
        return MetricCollection({"acc": acc, "macro_f1": f1, "confusion": MulticlassConfusionMatrix(n)})

    def update_metric(self, metric, logits, targets, word_mask, examples) -> None:
        keep = self.labelled(targets)
        if keep.any():
            preds = logits[keep].argmax(-1) if self.exclusive else self.scores(logits[keep])
            metric.update(preds, targets[keep].long() if not self.exclusive else targets[keep])

    # spaCy side (as spaCy's TextCategorizer): doc.cats
    spacy_options: dict = {}
    spacy_scores = {"cats_macro_f": "macro_f1", "cats_micro_f": "micro_f1"}

    def set_annotations(self, doc, scores: dict[str, float], index: list[int], options: dict) -> None:
        doc.cats = scores

    def score(self, examples, options: dict, **kwargs) -> dict:
        from spacy.scorer import Scorer

        return Scorer.score_cats(
            examples, "cats", labels=self.labels, multi_label=not self.exclusive, **kwargs
        )

    @staticmethod
    def write_gold(doc, example: Example, options: dict) -> None:
        """doc.cats over the corpus labels (options["cat_labels"]): 1.0 for the example's, 0.0 for others."""
        if example.cats is not None:
            doc.cats = {label: float(label in example.cats) for label in options["cat_labels"]}

    def confusion_pairs(self, examples, options: dict) -> list[tuple[str, str]] | None:
        """(gold, predicted) top category of every text with gold categories."""
        return [
            (max(e.reference.cats, key=e.reference.cats.get), max(e.predicted.cats, key=e.predicted.cats.get))
            for e in examples
            if e.reference.cats
        ]
