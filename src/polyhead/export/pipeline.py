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
from polyhead.hardware import detect, inference_precision
from polyhead.models.multitask import MultitaskModel
from polyhead.tracking import mlflow_loggers

PACKAGE_META = ("name", "version", "description", "author", "email", "url", "license")


def build_pipeline(
    model: MultitaskModel, collate: Collator, lang: str = "en", tag_attr: str = "pos", precision: str = "auto"
) -> Language:
    """A blank `lang` pipeline whose components hold the trained encoder and heads (shared, not copied).

    Weights are saved in fp32; `precision` (auto, fp32, bf16, onnx or an int8 variant) is how the pipeline
    runs, resolved where it loads, and can be changed at load time:
    spacy.load(path, config={"components": {"encoder": {"precision": "int8"}}})."""
    nlp = spacy.blank(lang)
    encoder = nlp.add_pipe("polyhead_encoder", name="encoder", config={"precision": precision})
    encoder.set_model(model.encoder, collate)
    settings = {"attr": tag_attr}  # what the export config says about heads' spaCy side
    for task, head in model.heads.items():
        options = {k: v for k, v in settings.items() if k in head.spacy_options}
        nlp.add_pipe("polyhead_head", name=task, config={"options": options}).set_model(head)
    return nlp


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
        tag_attr=cfg.export.tag_attr,
        precision=cfg.export.precision,
    )
    resolved = inference_precision(cfg.export.precision, detect())
    for lg in mlflow_loggers(loggers):
        lg.experiment.log_artifacts(lg.run_id, str(path), "spacy_pipeline")
        lg.experiment.set_tag(lg.run_id, "hw/inference_precision", resolved)
    return path
