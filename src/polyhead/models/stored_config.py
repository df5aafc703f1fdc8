"""A config read back from a checkpoint is data, not code: it is parsed without YAML tags or interpolations,
kept to the sections a model and its corpora are rebuilt from, and built from an allow-list of classes (the
encoder, the registered heads, the data module) instead of Hydra's `instantiate`, which calls whatever
`_target_` names. A checkpoint anyone could write (a shared MLflow store's `checkpoint_dir`) then loads
weights and nothing else. The user's own command-line config stays Hydra's to instantiate."""

from __future__ import annotations

import functools
from typing import Any, NoReturn

import yaml
from omegaconf import DictConfig, OmegaConf

from polyhead.data.datamodule import SPLITS, MultitaskDataModule
from polyhead.data.readers import READERS
from polyhead.errors import UserError
from polyhead.models.encoder import Encoder
from polyhead.models.heads.registry import HEADS, qualified_name

SECTIONS = ("data", "encoder", "model", "objective", "export")  # what is rebuilt from a stored config
HYDRA_KEYS = ("_target_", "_partial_")  # `_args_`, `_recursive_`, `_convert_` never occur in a stored config


class StoredConfigError(UserError):
    """A stored config that names code, carries YAML tags or interpolations, or is not a config at all."""


def read_stored_config(text: str, source: str) -> DictConfig:
    """The config YAML `text` (written by a run) as a DictConfig of SECTIONS and top-level plain values, each
    `_target_` checked against the allow-list; `source` names where the text came from in errors."""
    if not isinstance(text, str):
        raise StoredConfigError(f"{source}: the stored config is {type(text).__name__}, not YAML text")
    refuse_tags(text, source)
    try:
        tree = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    except Exception as err:
        raise StoredConfigError(
            f"{source}: the stored config is not valid YAML ({first_line(err)})"
        ) from None
    if not isinstance(tree, dict):
        raise StoredConfigError(f"{source}: the stored config is not a mapping of settings")
    kept = {key: value for key, value in tree.items() if key in SECTIONS or is_plain(value)}
    check_tree(kept, (), source)
    lang = kept.get("export", {}).get("lang") if isinstance(kept.get("export"), dict) else None
    if lang is not None and not (isinstance(lang, str) and lang.isidentifier()):
        refuse(source, ("export", "lang"), f"= {lang!r} is not a language code (spacy.blank imports by it)")
    return OmegaConf.create(kept)


def refuse_tags(text: str, source: str) -> None:
    """No explicit YAML tag (`!!binary`, `!!python/...`, any `!x`) nor alias: OmegaConf's loader would turn
    `!!binary` into bytes and `!!python/object/apply:pathlib.Path` into an object; a run writes neither.
    Read from the parser's events, with the key each one is at."""
    frames: list[list] = []  # per open mapping ["map", key, key expected next]; per sequence ["seq", index]
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frames.pop()
                advance(frames)
                continue
            if not isinstance(event, yaml.NodeEvent):
                continue
            is_key = bool(frames) and frames[-1][0] == "map" and frames[-1][2]
            if is_key and isinstance(event, yaml.ScalarEvent):
                frames[-1][1:] = [event.value, False]
            where = tuple(str(f[1]) for f in frames)
            if isinstance(event, yaml.AliasEvent):
                refuse(source, where, f"is a YAML alias (*{event.anchor}), which a run never writes")
            if event.tag is not None:
                refuse(source, where, f"has the YAML tag {event.tag}, which a run never writes")
            if isinstance(event, yaml.MappingStartEvent):
                frames.append(["map", None, True])
            elif isinstance(event, yaml.SequenceStartEvent):
                frames.append(["seq", 0])
            elif not is_key:
                advance(frames)
    except yaml.YAMLError as err:
        raise StoredConfigError(
            f"{source}: the stored config is not valid YAML ({first_line(err)})"
        ) from None


def advance(frames: list[list]) -> None:
    """A value was read: its mapping expects a key next, its sequence the next item."""
    if frames and frames[-1][0] == "map":
        frames[-1][2] = True
    elif frames:
        frames[-1][1] += 1


def check_tree(node: Any, path: tuple[str, ...], source: str) -> None:
    """Every `_target_` where the allow-list expects it and names an allowed class; no interpolation."""
    if isinstance(node, dict):
        for key in node:
            if str(key).startswith("_") and str(key).endswith("_") and key not in HYDRA_KEYS:
                refuse(source, path + (str(key),), "is a Hydra key a stored config never holds")
        if "_target_" in node or "_partial_" in node:
            check_target(node, path, source)
        if path == ("data",):
            check_readers(node, source)
        for key, value in node.items():
            check_tree(value, path + (str(key),), source)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_tree(value, path + (str(i),), source)
    elif isinstance(node, str) and "${" in node:
        refuse(source, path, f"is an interpolation ({node!r}); a stored config holds resolved values")


def allowed_targets(path: tuple[str, ...]) -> dict[str, type] | None:
    """The classes a `_target_` at `path` may name, by qualified name, or None where none may be."""
    if path == ("encoder",):
        return by_name(Encoder)
    if path == ("data",):
        return by_name(MultitaskDataModule)
    if len(path) == 3 and path[:2] == ("model", "heads"):
        return by_name(*HEADS.values())  # the registry as it is now: a registered head of the user's counts
    return None


def by_name(*classes: type) -> dict[str, type]:
    return {qualified_name(cls): cls for cls in classes}


def check_target(node: dict, path: tuple[str, ...], source: str) -> None:
    allowed = allowed_targets(path)
    if allowed is None:
        refuse(source, path + ("_target_",), "names code where a stored config may name none")
    target = node.get("_target_")
    if not isinstance(target, str) or target not in allowed:
        names = ", ".join(sorted(allowed))
        refuse(source, path + ("_target_",), f"= {node.get('_target_')!r} is not one of {names}")
    is_head = path[0] == "model"
    if node.get("_partial_", False) is not is_head:
        refuse(source, path + ("_partial_",), f"must be {'true' if is_head else 'absent'}")


def check_readers(data: dict, source: str) -> None:
    """Each corpus of each split names a registered reader format (polyhead.data.readers.READERS)."""
    for split in SPLITS:
        corpora = data.get(split) or []
        for i, corpus in enumerate(corpora if isinstance(corpora, list) else [corpora]):
            fmt = corpus.get("format") if isinstance(corpus, dict) else None
            if fmt not in READERS:
                known = ", ".join(sorted(READERS))
                refuse(source, ("data", split, str(i), "format"), f"= {fmt!r} is not a reader ({known})")


def build_stored(spec: DictConfig | dict, saved: bool = False, **extra: Any) -> Any:
    """The allow-listed object a checked stored `spec` names, `extra` added to its settings (as Hydra's
    instantiate takes them): the Encoder, the data module, or a registered head's class with its settings
    bound (`_partial_`: hidden_size and labels come later). `saved`: a head's settings it predates take the
    value heads were saved with before it existed (HeadModule.saved), not the class default."""
    settings = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else dict(spec)
    target, partial = settings.pop("_target_", None), settings.pop("_partial_", False)
    heads = by_name(*HEADS.values())
    cls = {**by_name(Encoder, MultitaskDataModule), **heads}.get(target) if isinstance(target, str) else None
    if cls is None or partial is not (target in heads):
        raise StoredConfigError(
            f"_target_={target!r} (_partial_={partial}): not what a stored config may build"
        )
    settings.update(extra)
    if partial:
        return functools.partial(cls, **(cls.saved(settings) if saved else settings))
    try:
        return cls(**settings)
    except TypeError as err:
        raise StoredConfigError(f"the stored settings of {target} do not fit it ({err})") from None


def is_plain(value: Any) -> bool:
    """A scalar, or a list of scalars: a value nothing is built from."""
    scalar = (str, int, float, bool, type(None))
    return isinstance(value, scalar) or (
        isinstance(value, list) and all(isinstance(v, scalar) for v in value)
    )


def refuse(source: str, path: tuple[str, ...], why: str) -> NoReturn:
    key = ".".join(path) or "top level"
    raise StoredConfigError(f"{source}: the stored config's {key} {why}; refusing to load it")


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
