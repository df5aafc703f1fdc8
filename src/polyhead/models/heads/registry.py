"""The head classes polyhead knows, by key: the task list of everything above the data layer, and what a
pipeline directory's head.json may name.

Loading a pipeline looks its key up here; it never imports a module named in the directory's files, so a
crafted pipeline cannot make spacy.load import or call anything else. A new head kind registers itself
with `register_head("key", HeadClass)` before its pipelines are saved or loaded; the class implements `Head`,
and its `annotation` names the kind of annotation it learns from (a key of `polyhead.data.schema.KINDS`).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from polyhead.data.schema import KINDS, Example
from polyhead.models.encoder import EncoderOutput
from polyhead.models.heads.lemmatizer import LemmatizerHead
from polyhead.models.heads.morphologizer import MorphologizerHead
from polyhead.models.heads.ner import EntityRecognitionHead
from polyhead.models.heads.parser import DependencyParsingHead
from polyhead.models.heads.tagger import TokenTaggingHead
from polyhead.models.heads.textcat import TextClassificationHead


class Head(Protocol):
    """What a head kind provides: the training side, then the spaCy side, the way spaCy's own pipes own
    set_annotations, get_loss and score. `options` are the component's settings over `spacy_options`."""

    annotation: str  # the kind of annotation it learns from: a key of polyhead.data.schema.KINDS
    task: str  # the task it learns (a name the user chose); MultitaskModel sets it
    config: dict  # the constructor's arguments, written to head.json
    labels: list[str]
    spacy_options: dict  # settings of the exported component and their defaults (the tagger's attr)

    @staticmethod
    def score_names(options: dict) -> dict[str, str]: ...  # a key `score` returns -> training's metric name

    def forward(self, enc: EncoderOutput) -> Any: ...  # scores, e.g. (B, W, H) -> (B, W, L)

    def targets(self, examples: list[Example], width: int) -> torch.Tensor: ...  # IGNORE = unlabelled

    def loss(self, scores: Any, targets: torch.Tensor) -> torch.Tensor: ...

    def decode(self, scores: Any, word_mask: torch.Tensor) -> list: ...  # one prediction per text

    def metric(self) -> Any: ...  # a torchmetrics Metric or MetricCollection (imported lazily)

    def update_metric(self, metric, scores, targets, word_mask, examples: list[Example]) -> None: ...

    # What a teacher gives a student (distill.py, born-again training): per text, the rows it learns to
    # match, one per word (soft_kind "word") or one per text ("text"), and the student's loss against them
    soft_kind: str
    soft_decodes: bool  # decode reads its soft rows, so a cached teacher gives hard labels too

    def soft_targets(self, scores: Any, word_mask: torch.Tensor) -> list[torch.Tensor]: ...

    def soft_loss(self, scores: Any, teacher: torch.Tensor, mask: torch.Tensor, temperature: float): ...

    def as_gold(self, prediction, words: list[str]) -> Any: ...  # decode's answer as the Example annotation

    @staticmethod
    def writes(options: dict) -> str | None: ...  # the Doc place it sets ("token.pos"); None: shared

    def set_annotations(self, doc, prediction, index: list[int], options: dict) -> None:
        """Write one text's prediction on its Doc; word k of the text is doc[index[k]]."""

    def score(self, examples, options: dict, **kwargs) -> dict: ...  # what `spacy evaluate` reports

    @staticmethod
    def write_gold(doc, value, options: dict) -> None:
        """Write one task's annotation of a text (Example.get(task)) on its Doc (one token per word)."""

    def confusion_pairs(self, examples, options: dict) -> list[tuple[str, str]] | None: ...


HEADS: dict[str, type[nn.Module]] = {
    "tagger": TokenTaggingHead,
    "ner": EntityRecognitionHead,
    "textcat": TextClassificationHead,
    "parser": DependencyParsingHead,
    "lemmatizer": LemmatizerHead,
    "morphologizer": MorphologizerHead,
}


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_head(key: str, cls: type[nn.Module]) -> None:
    if getattr(cls, "annotation", None) not in KINDS:
        raise ValueError(
            f"{qualified_name(cls)}.annotation must name a kind of annotation ({', '.join(KINDS)})"
        )
    if HEADS.get(key, cls) is not cls:
        raise ValueError(f"head key {key!r} is taken by {qualified_name(HEADS[key])}")
    HEADS[key] = cls


def head_key(head: nn.Module) -> str:
    """The key of `head`'s exact class (a subclass is a different head kind and needs its own key)."""
    for key, cls in HEADS.items():
        if type(head) is cls:
            return key
    raise ValueError(
        f"{qualified_name(type(head))} is not a registered head class; "
        f"call polyhead.models.heads.registry.register_head(key, cls) first"
    )


def place_clash(places: dict[str, str | None]) -> tuple[str, str, str] | None:
    """(first task, second task, place) for the first two tasks that write one place of the Doc (`places`:
    task -> its head's `writes(options)`; None, doc.cats, is shared and checked by label), else None."""
    seen: dict[str, str] = {}
    for task, place in places.items():
        if place is None:
            continue
        if place in seen:
            return seen[place], task, place
        seen[place] = task
    return None


def cats_clash(labels: dict[str, list[str]]) -> tuple[str, str, str] | None:
    """(first task, second task, label) for the first two classification tasks with one label in doc.cats
    (`labels`: task -> its distinct labels as doc.cats holds them, cats_prefix included), else None."""
    seen: dict[str, str] = {}
    for task, names in labels.items():
        for label in names:
            if label in seen:
                return seen[label], task, label
            seen[label] = task
    return None


def lookup_head(spec: dict) -> type[nn.Module] | None:
    """The registered class a head.json names: by its "head" key or, in pipelines written before keys,
    by a "class" path equal to a registered class's qualified name. None when it names anything else."""
    if "head" in spec:
        return HEADS.get(spec["head"]) if isinstance(spec["head"], str) else None
    named = spec.get("class")
    return next((cls for cls in HEADS.values() if qualified_name(cls) == named), None)
