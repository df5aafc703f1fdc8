"""Trained MultitaskModel -> spaCy pipeline directory: one `encoder` component, then one per head."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import spacy
from omegaconf import DictConfig
from spacy.language import Language

import polyhead.export.factories  # noqa: F401  (registers the polyhead_encoder and polyhead_head factories)
from polyhead.data.collate import Collator
from polyhead.errors import UserError
from polyhead.export.runtimes import resolve_precision
from polyhead.models.heads.registry import cats_clash, place_clash
from polyhead.models.heads.tagger import TokenTaggingHead
from polyhead.models.multitask import MultitaskModel
from polyhead.tracking import log_artifacts, set_tags

PACKAGE_META = ("name", "version", "description", "author", "email", "url", "license")


def build_pipeline(
    model: MultitaskModel,
    collate: Collator,
    lang: str = "en",
    tag_attr: str | None = None,
    precision: str = "auto",
) -> Language:
    """A blank `lang` pipeline whose components hold the trained encoder and heads (shared, not copied); one
    component per task, named after it, writing where its head says (head_options).

    Weights are saved in fp32; `precision` (auto, fp32, bf16, onnx or an int8 variant) is how the pipeline
    runs, resolved where it loads, and can be changed at load time:
    spacy.load(path, config={"components": {"encoder": {"precision": "int8"}}})."""
    nlp = spacy.blank(lang)
    encoder = nlp.add_pipe("polyhead_encoder", name="encoder", config={"precision": precision})
    encoder.set_model(model.encoder, collate)
    options = head_options(model, tag_attr)
    for task, head in model.heads.items():
        nlp.add_pipe("polyhead_head", name=task, config={"options": options[task]}).set_model(head)
    return nlp


def head_options(model: MultitaskModel, tag_attr: str | None = None) -> dict[str, dict]:
    """Each task's component options: its head's spaCy side, with `tag_attr` (export.tag_attr, from before
    a tag task named its own attr) for the one plain tagger. Two tasks that would write one place of the Doc
    (token.pos, doc.ents...), or two classification tasks with a label in common, are an error."""
    taggers = [task for task, head in model.heads.items() if type(head) is TokenTaggingHead]
    if tag_attr is not None and len(taggers) > 1:
        raise UserError(
            f"export.tag_attr={tag_attr} cannot choose for {len(taggers)} tag tasks ({', '.join(taggers)}): "
            f"set model.heads.<task>.attr for each instead"
        )
    options = {
        task: {"attr": tag_attr} if tag_attr is not None and task in taggers else {} for task in model.heads
    }
    clash = place_clash(
        {task: head.writes({**head.spacy_options, **options[task]}) for task, head in model.heads.items()}
    )
    if clash is not None:
        first, task, place = clash
        raise UserError(
            f"tasks {first!r} and {task!r} both write {place}: give one another place "
            f"(model.heads.{task}.attr for a tag task, model.heads.{task}.spans_key for entities)"
        )
    clash = cats_clash(
        {
            task: head.doc_labels({**head.spacy_options, **options[task]})
            for task, head in model.heads.items()
            if head.annotation == "cats"
        }
    )
    if clash is not None:
        first, task, label = clash
        why = f"both write doc.cats: give one a prefix (model.heads.{task}.cats_prefix)"
        raise UserError(f"tasks {first!r} and {task!r} have the label {label!r} and {why}")
    return options


def export_pipeline(
    model: MultitaskModel, collate: Collator, path: str | Path, meta: dict | None = None, **options
) -> Path:
    """`model` as a spaCy pipeline folder at `path`, written beside it and then swapped in, so a pipeline
    exported there before is replaced whole (none of its components survives) and a failed export leaves
    it as it was. A folder there that is not a pipeline is refused, never deleted."""
    nlp = build_pipeline(model, collate, **options)
    nlp.meta.update(meta or {})
    path = Path(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.export-", dir=path.parent))
    try:
        nlp.to_disk(staging / "new")
        if path.exists() or path.is_symlink():
            os.replace(path, staging / "old")  # the same folder: a rename, not a copy
        os.replace(staging / "new", path)
    except BaseException:
        if (staging / "old").exists() and not path.exists():
            os.replace(staging / "old", path)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # the previous pipeline, or what a failure left
    return path


def check_replaceable(path: Path) -> None:
    """`path` is free, an empty folder, or a spaCy pipeline folder (config.cfg and meta.json)."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return
    if not (path.is_dir() and (path / "config.cfg").is_file() and (path / "meta.json").is_file()):
        raise UserError(f"{path}: exists and is not a spaCy pipeline folder; refusing to replace it")


def export_run(cfg: DictConfig, model: MultitaskModel, collate: Collator, loggers: list) -> Path:
    """A run's tested model as <output_dir>/spacy_pipeline, also logged as the MLflow artifact spacy_pipeline/
    (with the precision `auto` resolves to here) when an MLflow logger is among `loggers`."""
    meta = {key: cfg.export[key] for key in PACKAGE_META if cfg.export.get(key) is not None}
    path = export_pipeline(
        model,
        collate,
        Path(cfg.paths.output_dir) / "spacy_pipeline",
        meta,
        lang=cfg.export.lang,
        tag_attr=cfg.export.get("tag_attr"),
        precision=cfg.export.precision,
    )
    resolved = resolve_precision(cfg.export.precision, model.encoder)
    log_artifacts(loggers, path, "spacy_pipeline")
    set_tags(loggers, {"hw/inference_precision": resolved})
    return path
