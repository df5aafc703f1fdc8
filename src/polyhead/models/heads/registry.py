"""The head classes polyhead knows, by key: what a pipeline directory's head.json may name.

Loading a pipeline looks its key up here; it never imports a module named in the directory's files, so a
crafted pipeline cannot make spacy.load import or call anything else. A new head kind registers itself
with `register_head("key", HeadClass)` before its pipelines are saved or loaded.
"""

from __future__ import annotations

from torch import nn

from polyhead.models.heads.ner import EntityRecognitionHead
from polyhead.models.heads.tagger import TokenTaggingHead
from polyhead.models.heads.textcat import TextClassificationHead

HEADS: dict[str, type[nn.Module]] = {
    "tagger": TokenTaggingHead,
    "ner": EntityRecognitionHead,
    "textcat": TextClassificationHead,
}


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_head(key: str, cls: type[nn.Module]) -> None:
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


def lookup_head(spec: dict) -> type[nn.Module] | None:
    """The registered class a head.json names: by its "head" key or, in pipelines written before keys,
    by a "class" path equal to a registered class's qualified name. None when it names anything else."""
    if "head" in spec:
        return HEADS.get(spec["head"]) if isinstance(spec["head"], str) else None
    named = spec.get("class")
    return next((cls for cls in HEADS.values() if qualified_name(cls) == named), None)
