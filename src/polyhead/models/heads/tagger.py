"""Per-word classification (UPOS, XPOS, ...): a linear layer over word vectors."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from polyhead.data.schema import Example
from polyhead.models.encoder import EncoderOutput
from polyhead.models.heads.base import HeadModule
from polyhead.models.heads.soft import kl_divergence, word_rows
from polyhead.models.surface import SurfaceEmbedding

IGNORE = -100
UNSEEN = -1  # a dev/test label training lacks (open label sets: feature bundles, edit scripts): always wrong


class TokenTaggingHead(HeadModule):
    """One label per word; words of texts without tags carry IGNORE and add no loss."""

    annotation = "tags"  # the kind of annotation it learns from (polyhead.data.schema.KINDS)
    task = ""  # the task whose annotation it learns: MultitaskModel names it

    def __init__(
        self,
        hidden_size: int,
        labels: list[str],
        dropout: float = 0.1,
        attr: str = "pos",
        surface: int = 0,
        surface_shape: bool = False,
    ):
        super().__init__()
        # attr: the token attribute the exported component sets: pos (token.pos_, UPOS), tag (token.tag_),
        # morph (token.morph), lemma (token.lemma_) or the name of a custom extension (token._.<name>)
        self.spacy_options = {"attr": attr}
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.dropout = nn.Dropout(dropout)
        # surface > 0: each word's shape and last letters (models.surface), `surface` wide, join its vector
        # through one hidden layer, so the written form can change what the context says (a capital mid-text);
        # surface_shape: its written shape too ("ddd,ddd")
        self.surface = SurfaceEmbedding(surface, word_shape=surface_shape) if surface else None
        self.mix = nn.Linear(hidden_size + surface, hidden_size) if surface else None
        self.proj = nn.Linear(hidden_size, len(self.labels))

    @property
    def reads_forms(self) -> bool:
        return self.surface is not None

    def forward(self, enc: EncoderOutput) -> torch.Tensor:  # (B, W, H) -> (B, W, L)
        words = self.dropout(enc.words)
        if self.surface is not None:
            forms = self.surface(enc.texts, words.shape[1]).to(words.dtype)
            words = self.dropout(nn.functional.gelu(self.mix(torch.cat([words, forms], -1))))
        return self.proj(words)

    def word_labels(self, example: Example) -> list[str | None] | None:
        """The example's label of every word for this head's task (None: the word is not annotated)."""
        return example.get(self.task)

    def targets(self, examples: list[Example], width: int) -> torch.Tensor:
        """Gold label ids, IGNORE where a text is unannotated or padded.  # -> (B, W)"""
        out = torch.full((len(examples), width), IGNORE, dtype=torch.long)
        for i, ex in enumerate(examples):
            labels = self.word_labels(ex)
            if labels is not None:
                ids = [IGNORE if t is None else self.index.get(t, UNSEEN) for t in labels]
                out[i, : len(labels)] = torch.tensor(ids, dtype=torch.long)
        return out

    def as_gold(self, labels: list[str], words: list[str]) -> list[str]:
        """A decoded prediction as the annotation this head learns from (a teacher's hard labels)."""
        return list(labels)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.masked_fill(targets == UNSEEN, IGNORE)  # a label training lacks teaches nothing
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
    soft_decodes = True  # decode reads its soft rows: a teacher's hard labels come from them

    def soft_targets(self, logits: torch.Tensor, word_mask: torch.Tensor) -> list[torch.Tensor]:
        return word_rows(logits, word_mask)  # B x (n_i, L)

    def soft_loss(
        self, logits, teacher: torch.Tensor, mask: torch.Tensor, temperature: float
    ) -> torch.Tensor:
        return kl_divergence(logits[mask], teacher[mask], temperature)  # teacher (B, W, L), mask (B, W)

    # spaCy side (as spaCy's Tagger): what the exported component sets, how it scores, what a gold Doc holds
    spacy_options: dict = {"attr": "pos"}  # the class's default; the constructor's `attr` sets an instance's

    @staticmethod
    def score_names(options: dict) -> dict[str, str]:
        return {f"{options['attr']}_acc": "acc"}  # pos_acc, tag_acc, morph_acc, lemma_acc

    def set_annotations(self, doc, labels: list[str], index: list[int], options: dict) -> None:
        """token.pos_ / tag_ of the words, one Doc.from_array for the Doc; whitespace tokens keep theirs."""
        from spacy.attrs import IDS

        attr, n = options["attr"], min(len(index), len(labels))  # as zip(index, labels) pairs them
        if not n:
            return
        values = attr_values(doc, attr, labels[:n])
        if values is None:  # an attribute or label the bulk path does not know: the setter says why
            for i, label in zip(index, labels):
                set_token_attr(doc[i], attr, label)
            return
        column = doc.to_array(IDS[attr.upper()]) if n < len(doc) else np.empty(len(doc), dtype="uint64")
        column[index[:n]] = values
        doc.from_array([IDS[attr.upper()]], column)

    @staticmethod
    def writes(options: dict) -> str | None:
        """Where the exported component writes (two tasks may not write one place)."""
        return f"token.{options['attr']}"

    def score(self, examples, options: dict, **kwargs) -> dict:
        from spacy.scorer import Scorer

        attr = options["attr"]
        return Scorer.score_token_attr(examples, attr, getter=score_getter(attr), **kwargs)

    @staticmethod
    def write_gold(doc, labels: list[str | None], options: dict) -> None:
        for token, label in zip(doc, labels):
            if label is not None:
                set_token_attr(token, options["attr"], label)

    def confusion_pairs(self, examples, options: dict) -> list[tuple[str, str]] | None:
        """(gold, predicted) label of every token, for a confusion plot."""
        attr = options["attr"]
        return [
            (token_attr(g, attr), token_attr(p, attr))
            for e in examples
            for g, p in zip(e.reference, e.predicted)
        ]


TOKEN_ATTRS = ("pos", "tag", "morph", "lemma")  # what a tag task may set besides a custom extension


def set_token_attr(token, attr: str, label: str) -> None:
    """token.pos_ / tag_ / lemma_ = label, token.set_morph(label) ("_": no features), or token._.<attr>."""
    if attr == "morph":
        token.set_morph(label)  # "_": annotated with no features (spaCy's empty morph, not an unset one)
    elif attr in TOKEN_ATTRS:
        setattr(token, f"{attr}_", label)
    else:
        if not type(token).has_extension(attr):
            type(token).set_extension(attr, default=None)
        token._.set(attr, label)


def score_getter(attr: str):
    """How spaCy's Scorer reads the attribute: a morph by its key (0 = unset, skipped as missing)."""
    if attr == "morph":
        return lambda token, _: token.morph.key
    if attr in TOKEN_ATTRS:
        return getattr
    return lambda token, name: token._.get(name)


def token_attr(token, attr: str) -> str:
    if attr == "morph":
        return str(token.morph) or "_"
    return getattr(token, f"{attr}_") if attr in TOKEN_ATTRS else token._.get(attr)


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
