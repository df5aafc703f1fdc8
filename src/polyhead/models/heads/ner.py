"""Named entities as per-word BIO/BILUO tags, decoded with a constrained Viterbi into valid spans."""

from __future__ import annotations

import numpy as np
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

    annotation = "spans"

    def __init__(
        self,
        hidden_size: int,
        labels: list[str],
        scheme: str = "bio",
        dropout: float = 0.1,
        spans_key: str | None = None,
    ):
        self.types, self.scheme = sorted(labels), scheme
        super().__init__(hidden_size, scheme_labels(self.types, scheme), dropout)
        # where the exported component writes: doc.ents (None), or doc.spans[spans_key] (two span tasks
        # cannot both own doc.ents; the second's entities may overlap the first's)
        self.spacy_options = {"spans_key": spans_key}
        self.register_buffer(
            "transitions", _penalty(allowed_transitions(self.labels, scheme)), persistent=False
        )
        self.register_buffer("starts", _penalty(allowed_starts(self.labels, scheme)), persistent=False)
        self.register_buffer("ends", _penalty(allowed_ends(self.labels, scheme)), persistent=False)

    def word_labels(self, example: Example) -> list[str] | None:
        spans = example.get(self.task)
        return None if spans is None else spans_to_tags(spans, len(example.words), self.scheme)

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
        gold = [ex.get(self.task) for ex in examples]
        if all(g is None for g in gold):
            return
        pred = self.decode(logits, word_mask)
        metric.update([p for p, g in zip(pred, gold) if g is not None], [g for g in gold if g is not None])

    # spaCy side (as spaCy's EntityRecognizer): doc.ents, or doc.spans[key] with the option spans_key
    spacy_options: dict = {"spans_key": None}

    @staticmethod
    def score_names(options: dict) -> dict[str, str]:
        prefix = f"spans_{options['spans_key']}" if options.get("spans_key") else "ents"
        names = {"p": "precision", "r": "recall", "f": "f1", "per_type": "per_type"}
        return {f"{prefix}_{key}": name for key, name in names.items()}

    def set_annotations(
        self, doc, spans: list[tuple[int, int, str]], index: list[int], options: dict
    ) -> None:
        """doc.ents from word spans (as `doc.ents = ...`, without building each Span twice), or
        doc.spans[spans_key]."""
        from spacy.tokens import Span

        found = [Span(doc, index[s], index[e - 1] + 1, label=label) for s, e, label in spans]
        if options.get("spans_key"):
            doc.spans[options["spans_key"]] = found
        else:
            doc.set_ents(found)

    def as_gold(self, spans: list[tuple[int, int, str]], words: list[str]) -> list[tuple[int, int, str]]:
        return list(spans)

    @staticmethod
    def writes(options: dict) -> str | None:
        return f"doc.spans[{options['spans_key']!r}]" if options.get("spans_key") else "doc.ents"

    def score(self, examples, options: dict, **kwargs) -> dict:
        from spacy.scorer import Scorer, get_ner_prf

        key = options.get("spans_key")
        if not key:
            return get_ner_prf(examples, **kwargs)
        return Scorer.score_spans(
            examples, f"spans_{key}", getter=lambda doc, _: doc.spans.get(key, []), **kwargs
        )

    @staticmethod
    def write_gold(doc, spans: list[tuple[int, int, str]], options: dict) -> None:
        from spacy.tokens import Span

        found = [Span(doc, start, end, label=label) for start, end, label in spans]
        if options.get("spans_key"):
            doc.spans[options["spans_key"]] = found
        else:
            doc.ents = found

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
    """Best tag path per text under additive transition penalties, every text of the batch at once: one
    loop over positions forward (torch), one back (numpy); ties go to the lowest tag.  # (B, W, L), (B,) ->
    B x [len]"""
    batch, width, _ = emissions.shape
    if batch == 0 or width == 0:
        return [[] for _ in range(batch)]
    lengths = lengths.to(emissions.device)
    score = emissions[:, 0] + starts  # (B, L)
    back = []
    for t in range(1, width):
        total = score.unsqueeze(2) + transitions.unsqueeze(0)  # (B, L_prev, L_next)
        best, arg = total.max(1)
        active = (t < lengths).unsqueeze(1)
        score = torch.where(active, best + emissions[:, t], score)
        back.append(arg)
    # score holds each text's score at its word n - 1 because inactive steps left it unchanged
    final = (score + ends).argmax(-1).cpu().numpy()  # (B,) the tag of each text's last word
    return backtrack(torch.stack(back).cpu().numpy() if back else None, final, lengths.cpu().numpy())


def backtrack(back: np.ndarray | None, final: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    """Every text's path, walked back from its last word (n - 1) by its best predecessors.
    # (W-1, B, L) best previous tag per position and tag, (B,), (B,) -> B x [len]"""
    batch = len(final)
    width = 1 if back is None else back.shape[0] + 1
    rows, last = np.arange(batch), lengths - 1
    path = np.empty((batch, width), dtype=np.int64)
    tag = final
    for t in range(width - 1, -1, -1):
        tag = np.where(last == t, final, tag)  # texts whose last word is t start their walk here
        path[:, t] = tag
        if t:
            tag = back[t - 1, rows, tag]
    return [row[:n] for row, n in zip(path.tolist(), lengths.tolist())]
