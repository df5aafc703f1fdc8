"""Per-word classification (UPOS, XPOS, ...): a linear layer over word vectors."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from polyhead.data.schema import Example
from polyhead.models.encoder import EncoderOutput
from polyhead.models.heads.soft import kl_divergence, word_rows

IGNORE = -100


class TokenTaggingHead(nn.Module):
    """One label per word; words of texts without tags carry IGNORE and add no loss."""

    def __init__(self, hidden_size: int, labels: list[str], dropout: float = 0.1):
        super().__init__()
        self.config = {"hidden_size": hidden_size, "labels": list(labels), "dropout": dropout}  # for export
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_size, len(self.labels))

    def forward(self, enc: EncoderOutput) -> torch.Tensor:  # (B, W, H) -> (B, W, L)
        return self.proj(self.dropout(enc.words))

    def word_labels(self, example: Example) -> list[str] | None:
        return example.tags

    def targets(self, examples: list[Example], width: int) -> torch.Tensor:
        """Gold label ids, IGNORE where a text is unannotated or padded.  # -> (B, W)"""
        out = torch.full((len(examples), width), IGNORE, dtype=torch.long)
        for i, ex in enumerate(examples):
            labels = self.word_labels(ex)
            if labels is not None:
                out[i, : len(labels)] = torch.tensor([self.index[t] for t in labels], dtype=torch.long)
        return out

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(
            logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE
        )

    def decode(self, logits: torch.Tensor, word_mask: torch.Tensor) -> list[list[str]]:
        ids = logits.argmax(-1).tolist()
        return [[self.labels[j] for j in row[: int(n)]] for row, n in zip(ids, word_mask.sum(-1))]

    def metric(self):
        from torchmetrics import MetricCollection  # training only, not needed by the exported runtime
        from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

        n = len(self.labels)
        return MetricCollection(  # the (L, L) confusion matrix is written as a test artifact, not logged
            {
                "acc": MulticlassAccuracy(n, average="micro", ignore_index=IGNORE),
                "confusion": MulticlassConfusionMatrix(n, ignore_index=IGNORE),
            }
        )

    def update_metric(self, metric, logits, targets, word_mask, examples) -> None:
        keep = targets != IGNORE
        if keep.any():
            metric.update(logits.argmax(-1)[keep], targets[keep])

    # What a teacher gives a student: its logits per word, matched by KL
    soft_kind = "word"

    def soft_targets(self, logits: torch.Tensor, word_mask: torch.Tensor) -> list[torch.Tensor]:
        return word_rows(logits, word_mask)  # B x (n_i, L)

    def soft_loss(
        self, logits, teacher: torch.Tensor, mask: torch.Tensor, temperature: float
    ) -> torch.Tensor:
        return kl_divergence(logits[mask], teacher[mask], temperature)  # teacher (B, W, L), mask (B, W)

    # spaCy side (as spaCy's Tagger): what the exported component sets, how it scores, what a gold Doc holds
    # attr: the token attribute the exported tagger sets, pos (token.pos_, UPOS) or tag (token.tag_)
    spacy_options: dict = {"attr": "pos"}
    spacy_scores = {"pos_acc": "acc", "tag_acc": "acc"}  # spaCy's score key -> this task's metric name

    def set_annotations(self, doc, labels: list[str], index: list[int], options: dict) -> None:
        """token.pos_ / tag_ of the words, one Doc.from_array for the Doc; whitespace tokens keep theirs."""
        from spacy.attrs import IDS

        attr, n = options["attr"], min(len(index), len(labels))  # as zip(index, labels) pairs them
        if not n:
            return
        values = attr_values(doc, attr, labels[:n])
        if values is None:  # an attribute or label the bulk path does not know: the setter says why
            for i, label in zip(index, labels):
                setattr(doc[i], f"{attr}_", label)
            return
        column = doc.to_array(IDS[attr.upper()]) if n < len(doc) else np.empty(len(doc), dtype="uint64")
        column[index[:n]] = values
        doc.from_array([IDS[attr.upper()]], column)

    def score(self, examples, options: dict, **kwargs) -> dict:
        from spacy.scorer import Scorer

        return Scorer.score_token_attr(examples, options["attr"], **kwargs)

    @staticmethod
    def write_gold(doc, example: Example, options: dict) -> None:
        for token, tag in zip(doc, example.tags or []):
            setattr(token, f"{options['attr']}_", tag)

    def confusion_pairs(self, examples, options: dict) -> list[tuple[str, str]] | None:
        """(gold, predicted) label of every token, for a confusion plot."""
        attr = f"{options['attr']}_"
        return [
            (getattr(g, attr), getattr(p, attr)) for e in examples for g, p in zip(e.reference, e.predicted)
        ]


def attr_values(doc, attr: str, labels: list[str]) -> np.ndarray | None:
    """The ids `token.pos_ = label` / `token.tag_ = label` would store, or None where that setter would
    refuse a label (pos_ takes UPOS names only) or the attribute is another.  # n labels -> (n,) uint64"""
    if attr == "pos":
        from spacy.parts_of_speech import IDS as UPOS

        ids = {label: UPOS.get(label) for label in dict.fromkeys(labels)}
        if None in ids.values():
            return None
    elif attr == "tag":
        ids = {label: doc.vocab.strings.add(label) for label in dict.fromkeys(labels)}
    else:
        return None
    return np.array([ids[label] for label in labels], dtype="uint64")
