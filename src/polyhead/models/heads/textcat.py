"""Document classification: exclusive classes (softmax) or independent labels (sigmoid)."""

from __future__ import annotations

import torch
from torch import nn

from polyhead.data.schema import Example
from polyhead.models.encoder import EncoderOutput
from polyhead.models.heads.base import HeadModule
from polyhead.models.heads.soft import kl_divergence
from polyhead.models.heads.tagger import IGNORE


class TextClassificationHead(HeadModule):
    """Pools the text into one vector ([CLS] or mean of words) and scores every label."""

    annotation = "cats"  # the kind of annotation it learns from (polyhead.data.schema.KINDS)
    task = ""  # the task whose annotation it learns: MultitaskModel names it

    def __init__(
        self,
        hidden_size: int,
        labels: list[str],
        exclusive: bool = True,
        pooling: str = "cls",
        dropout: float = 0.1,
        cats_prefix: str = "",
    ):
        super().__init__()
        # cats_prefix: put before each label in doc.cats, to keep two classification tasks' labels apart
        # in the exported pipeline (Banking77's and CLINC150's both have "exchange_rate")
        self.spacy_options = {"cats_prefix": cats_prefix}
        if pooling not in ("cls", "mean"):
            raise ValueError(f"textcat pooling must be 'cls' or 'mean', got {pooling!r}")
        self.labels, self.exclusive, self.pooling = list(labels), exclusive, pooling
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
                [self.index[ex.get(self.task)[0]] if ex.has(self.task) else IGNORE for ex in examples],
                dtype=torch.long,
            )
        out = torch.full((len(examples), len(self.labels)), float(IGNORE))
        for i, ex in enumerate(examples):
            if ex.has(self.task):
                out[i] = 0.0
                out[i, [self.index[c] for c in ex.get(self.task)]] = 1.0
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
    soft_decodes = True

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

    # spaCy side (as spaCy's TextCategorizer): doc.cats, which two classification tasks share (their labels
    # must differ: the export checks; a task's cats_prefix keeps them apart)
    spacy_options: dict = {"cats_prefix": ""}

    @staticmethod
    def score_names(options: dict) -> dict[str, str]:
        return {"cats_macro_f": "macro_f1", "cats_micro_f": "micro_f1"}

    def as_gold(self, scores: dict[str, float], words: list[str]) -> tuple[str, ...]:
        """The best category (exclusive classes), or every one scored 0.5 or more."""
        if self.exclusive:
            return (max(scores, key=scores.get),)
        return tuple(label for label, p in scores.items() if p >= 0.5)

    @staticmethod
    def writes(options: dict) -> str | None:
        return None  # doc.cats holds every classification task's labels (the export checks they differ)

    def doc_labels(self, options: dict) -> list[str]:
        """The labels as doc.cats holds them (with the task's cats_prefix)."""
        return self.prefixed(self.labels, options)

    @staticmethod
    def prefixed(labels: list[str], options: dict) -> list[str]:
        """`labels` as doc.cats holds them under `options` (with their cats_prefix)."""
        return [f"{options.get('cats_prefix', '')}{label}" for label in labels]

    def set_annotations(self, doc, scores: dict[str, float], index: list[int], options: dict) -> None:
        prefix = options.get("cats_prefix", "")
        doc.cats.update({f"{prefix}{label}": score for label, score in scores.items()} if prefix else scores)

    def score(self, examples, options: dict, **kwargs) -> dict:
        from spacy.scorer import Scorer

        labels, multi = self.doc_labels(options), not self.exclusive
        return Scorer.score_cats(examples, "cats", labels=labels, multi_label=multi, **kwargs)

    @staticmethod
    def write_gold(doc, cats: tuple[str, ...], options: dict) -> None:
        """doc.cats over the corpus labels (options["cat_labels"]): 1.0 for the example's, 0.0 for others."""
        prefix = options.get("cats_prefix", "")
        doc.cats.update({f"{prefix}{label}": float(label in cats) for label in options["cat_labels"]})

    def confusion_pairs(self, examples, options: dict) -> list[tuple[str, str]] | None:
        """(gold, predicted) top category of every text with gold categories (of this task's labels)."""
        prefix, labels = options.get("cats_prefix", ""), self.doc_labels(options)

        def top(cats: dict) -> str:
            return max(labels, key=lambda label: cats.get(label, -1.0)).removeprefix(prefix)

        return [
            (top(e.reference.cats), top(e.predicted.cats))
            for e in examples
            if any(label in e.reference.cats for label in labels)
        ]
