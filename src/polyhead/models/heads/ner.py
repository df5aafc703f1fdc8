"""Named entities as per-word BIO/BILUO tags, decoded with a constrained Viterbi into valid spans."""

from __future__ import annotations

import torch

from polyhead.data.schema import Example
from polyhead.data.spans import (
    allowed_ends,
    allowed_starts,
    allowed_transitions,
    scheme_labels,
    spans_to_tags,
)
from polyhead.data.spans import tags_to_spans as spans_from_tags
from polyhead.models.heads.tagger import TokenTaggingHead

NEG = -1e4  # score of a forbidden transition: finite so that sums stay finite


class EntityRecognitionHead(TokenTaggingHead):
    """`labels` are entity types; the per-word tag set is derived from them and the scheme."""

    def __init__(self, hidden_size: int, labels: list[str], scheme: str = "bio", dropout: float = 0.1):
        self.types, self.scheme = sorted(labels), scheme
        super().__init__(hidden_size, scheme_labels(self.types, scheme), dropout)
        self.config = {"hidden_size": hidden_size, "labels": self.types, "scheme": scheme, "dropout": dropout}
        self.register_buffer(
            "transitions", _penalty(allowed_transitions(self.labels, scheme)), persistent=False
        )
        self.register_buffer("starts", _penalty(allowed_starts(self.labels, scheme)), persistent=False)
        self.register_buffer("ends", _penalty(allowed_ends(self.labels, scheme)), persistent=False)

    def word_labels(self, example: Example) -> list[str] | None:
        return None if example.ents is None else spans_to_tags(example.ents, len(example.words), self.scheme)

    def decode_tags(self, logits: torch.Tensor, word_mask: torch.Tensor) -> list[list[int]]:
        emissions = torch.log_softmax(logits.float(), -1)
        return viterbi(emissions, word_mask.sum(-1), self.transitions, self.starts, self.ends)

    def decode(self, logits: torch.Tensor, word_mask: torch.Tensor) -> list[list[tuple[int, int, str]]]:
        """Spans of the constrained best paths, read as the corpus readers read IOB (I-X after O opens X)."""
        return [
            spans_from_tags([self.labels[j] for j in path], self.scheme, strict=False)
            for path in self.decode_tags(logits, word_mask)
        ]

    def metric(self):
        from polyhead.metrics import SpanF1  # torchmetrics: training only, not needed by the exported runtime

        return SpanF1(self.types)

    def update_metric(self, metric, logits, targets, word_mask, examples) -> None:
        gold = [ex.ents for ex in examples]
        if all(g is None for g in gold):
            return
        pred = self.decode(logits, word_mask)
        metric.update([p for p, g in zip(pred, gold) if g is not None], [g for g in gold if g is not None])

    # spaCy side (as spaCy's EntityRecognizer): doc.ents
    spacy_options: dict = {}
    spacy_scores = {"ents_p": "precision", "ents_r": "recall", "ents_f": "f1", "ents_per_type": "per_type"}

    def set_annotations(
        self, doc, spans: list[tuple[int, int, str]], index: list[int], options: dict
    ) -> None:
        from spacy.tokens import Span

        doc.ents = [Span(doc, index[s], index[e - 1] + 1, label=label) for s, e, label in spans]

    def score(self, examples, options: dict, **kwargs) -> dict:
        from spacy.scorer import get_ner_prf

        return get_ner_prf(examples, **kwargs)

    @staticmethod
    def write_gold(doc, example: Example, options: dict) -> None:
        from spacy.tokens import Span

        if example.ents is not None:
            doc.ents = [Span(doc, start, end, label=label) for start, end, label in example.ents]

    def confusion_pairs(self, examples, options: dict) -> None:
        return None  # spans, not one label per token: the per-type table says more


def _penalty(allowed: torch.Tensor) -> torch.Tensor:
    return torch.where(allowed, 0.0, NEG)


def viterbi(
    emissions: torch.Tensor,
    lengths: torch.Tensor,
    transitions: torch.Tensor,
    starts: torch.Tensor,
    ends: torch.Tensor,
) -> list[list[int]]:
    """Best tag path per text under additive transition penalties.  # (B, W, L), (B,) -> B x [len]"""
    batch, width, n_labels = emissions.shape
    score = emissions[:, 0] + starts  # (B, L)
    back = []
    for t in range(1, width):
        total = score.unsqueeze(2) + transitions.unsqueeze(0)  # (B, L_prev, L_next)
        best, arg = total.max(1)
        active = (t < lengths).unsqueeze(1)
        score = torch.where(active, best + emissions[:, t], score)
        back.append(arg)
    paths = []
    for b in range(batch):
        n = int(lengths[b])
        if n == 0:
            paths.append([])
            continue
        # score[b] holds the score at position n - 1 because inactive steps left it unchanged.
        tag = int((score[b] + ends).argmax())
        path = [tag]
        for t in range(n - 1, 0, -1):
            tag = int(back[t - 1][b, tag])
            path.append(tag)
        paths.append(path[::-1])
    return paths
