"""run(cfg): a finished polyhead run (the teacher) -> a smaller student, tracked and exported like any run.

`python distill.py teacher=<MLflow run id | checkpoint> student=layers student.keep=[0,2,4]` trains the
teacher's encoder cut to those layers on the teacher's soft targets (polyhead.distill.layers);
`student=spacy_cnn` trains a spaCy CNN pipeline on its hard labels (polyhead.distill.spacy_cnn). Every
check that can fail (teacher, layers, corpora, transfer texts) runs before any MLflow run exists.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from polyhead.distill.layers import DistillationModule, student_config, student_from_teacher
from polyhead.distill.teacher import (
    Teacher,
    attach_targets,
    labelled_by_teacher,
    load_teacher,
    prefer_gold,
    raw_examples,
    targets_cache,
    teacher_targets_in_parts,
)
from polyhead.errors import UserError
from polyhead.models.build import build_model, objective_weights, optim_settings
from polyhead.models.encoder import check_keep_layers
from polyhead.models.stored_config import build_stored
from polyhead.pretrain.text import read_sources
from polyhead.tracking import mlflow_config

log = logging.getLogger(__name__)
STUDENTS = ("layers", "spacy_cnn")
LABELS = ("teacher", "gold", "gold_first")  # what spacy_cnn learns (conf/student/spacy_cnn.yaml)


def run_job(cfg: DictConfig):
    """`python distill.py` calls this."""
    if cfg.student.name not in STUDENTS:
        raise UserError(f"student={cfg.student.name!r}: must be one of {STUDENTS}")
    mlflow = mlflow_config(cfg)
    teacher = load_teacher(cfg.teacher, mlflow.get("tracking_uri") if mlflow is not None else None)
    if cfg.student.name == "layers":
        try:
            check_keep_layers(list(cfg.student.keep), teacher.model.encoder.num_layers)
        except ValueError as err:
            n = teacher.model.encoder.num_layers
            raise UserError(f"{err} (the teacher's encoder has {n} layers)") from None
    scfg = student_config(teacher.cfg, cfg)
    from polyhead.training.run import load_data

    datamodule = load_data(scfg, make=build_stored)  # the teacher's corpora: gold train texts, dev and test
    gold = datamodule.examples["train"] if cfg.transfer.gold_texts else []
    raw = read_raw_texts(cfg, teacher.cfg.export.lang)  # unreadable text fails here, naming the file
    parts = [gold, *raw.values()]  # each part's targets are cached on their own
    examples = [ex for part in parts for ex in part]
    if not examples:
        raise UserError("the transfer set is empty: set transfer.gold_texts=true or give raw text (text=...)")
    targets = teacher_targets_in_parts(teacher, parts, cache_root(cfg), cfg.transfer.batch_size)
    tags = {
        "distill/teacher": str(cfg.teacher),
        "distill/teacher_run_id": teacher.run_id or "",
        "distill/teacher_checkpoint": str(teacher.checkpoint),
        "distill/student": cfg.student.name,
        "distill/transfer_gold_texts": str(len(gold)),
        "distill/transfer_raw_texts": str(len(examples) - len(gold)),
        "distill/teacher_cache": targets.cache_status,
        **{f"distill/text/{Path(p).name}": str(len(part)) for p, part in raw.items()},
    }
    if cfg.student.name == "spacy_cnn":
        from polyhead.distill.spacy_cnn import run_spacy_cnn

        labels = cfg.student.get("labels", "teacher")
        if labels not in LABELS:
            raise UserError(f"student.labels={labels!r}: must be one of {LABELS}")
        train = gold if labels == "gold" else labelled_by_teacher(teacher, examples, targets)
        if labels == "gold_first":  # the teacher fills in only what the gold annotation lacks
            train = [prefer_gold(ex, taught) for ex, taught in zip(examples, train)]
        tags["distill/labels"] = labels
        return run_spacy_cnn(scfg, train, datamodule.examples["dev"], datamodule.examples["test"], tags)
    return train_layers_student(scfg, teacher, datamodule, attach_targets(examples, targets), tags)


def train_layers_student(scfg: DictConfig, teacher: Teacher, datamodule, examples, tags: dict):
    from polyhead.training.run import run

    datamodule.examples["train"], datamodule.labels = examples, teacher.labels
    model = build_model(scfg, teacher.labels, make=build_stored)  # the teacher's encoder and heads: data
    student_from_teacher(teacher.model, model, list(scfg.student.keep))
    module = DistillationModule(
        model, optim_settings(scfg), objective_weights(scfg), scfg.student.temperature, scfg.student.alpha
    )
    return run(scfg, datamodule=datamodule, module=module, tags=tags)


def read_raw_texts(cfg: DictConfig, lang: str) -> dict[str, list]:
    """The raw transfer texts of each source of the `text` config, as word-split Examples, by path."""
    out = {}
    for source in (cfg.text.train if cfg.get("text") else None) or []:
        docs, _ = read_sources([source], cfg.text.get("invalid_utf8", "skip"))
        out[str(source.path)] = raw_examples(docs, lang, str(source.path))
    return out


def cache_root(cfg: DictConfig) -> Path:
    """transfer.cache_dir, else the user's cache (distill.teacher.targets_cache)."""
    return targets_cache(cfg.transfer.get("cache_dir"))
