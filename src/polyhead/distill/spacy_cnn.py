"""Student `spacy_cnn`: spaCy's own efficiency pipeline (CNN tok2vec; morphologizer or tagger, ner, textcat)
trained by `spacy train` on teacher-labelled (or, for the baseline, gold) Examples, scored on the gold test
set with polyhead's metric names and tracked as one MLflow run. The result is a plain spaCy pipeline: no
polyhead and no torch when it runs."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import spacy
from omegaconf import DictConfig, OmegaConf
from spacy.tokens import Doc, DocBin
from spacy.training import Example as GoldPair
from spacy.util import dot_to_dict
from thinc.api import Config

from polyhead.data.schema import Example
from polyhead.errors import UserError
from polyhead.evaluate import metric_names
from polyhead.export.convert import Writers, gold_writers, to_docbin
from polyhead.tracking import run_metadata, tracked_run

log = logging.getLogger(__name__)

# spaCy's component for the attribute a teacher's tag task sets: the morphologizer sets and scores
# token.pos_ (UPOS, `pos_acc`, as the teacher's pipeline is scored) and token.morph; spaCy's tagger sets
# token.tag_ (`tag_acc`), its trainable lemmatizer token.lemma_.
TAGGER_FACTORY = {
    "pos": "morphologizer",
    "morph": "morphologizer",
    "tag": "tagger",
    "lemma": "trainable_lemmatizer",
}
SPAN_FACTORY = {"doc.ents": "ner"}
TEXTCATS = ("auto", "textcat", "textcat_multilabel")
BUDGET = ("max_steps", "max_epochs", "patience", "eval_frequency")  # student.* -> spaCy's [training]
EVAL_ROW = re.compile(r"^\s*\d+\s+(\d+)\s+\d")  # spaCy's console table: epoch, step, losses, scores
EXCLUSIVE_SCORER = {"@scorers": "spacy.textcat_scorer.v2"}  # argmax over the labels, as the teacher scores


def run_spacy_cnn(
    cfg: DictConfig, train: list[Example], dev: list[Example], test: list[Example], tags: dict[str, str]
) -> Path:
    """Train a spaCy CNN pipeline with spaCy's own `spacy train` on `train` (teacher-labelled Examples with
    hard labels, or gold ones for the baseline), evaluate on the gold `dev`/`test`, log an MLflow run;
    return the trained pipeline dir (<output_dir>/spacy_cnn/model-best)."""
    lang = OmegaConf.select(cfg, "export.lang", default="en")
    tag_attr = OmegaConf.select(cfg, "export.tag_attr", default=None)
    out = Path(cfg.paths.output_dir) / "spacy_cnn"
    splits = {"train": train, "dev": merge_same_text(dev), "test": test}
    writers = gold_writers(train + dev + test, cfg.model.heads, tag_attr)
    corpus = write_corpora(out / "corpus", splits, lang, writers)
    config = efficiency_config(cfg, train, corpus, lang, writers)
    config.to_disk(out / "config.cfg")
    labels = str(cfg.student.get("labels", "teacher"))
    student_tags = {"distill/student": "spacy_cnn", "distill/labels": labels, **tags}
    name = cfg.get("run_name") or f"spacy_cnn ({student_tags['distill/labels']} labels)"
    with tracked_run(cfg, name, run_tags(cfg, student_tags)) as run:
        student = flat_params(OmegaConf.to_container(cfg.student, resolve=True), "student")
        run.log_params(flat_params(config, "spacy") | student)
        run.log_metrics({"data/train_examples": len(train)})
        start = time.perf_counter()
        stop = spacy_train(out / "config.cfg", out, out / "spacy_train.log", cfg.student.get("max_minutes"))
        run.set_tag("spacy_cnn/stopped_by", stop["stopped"])
        pipeline = out / "model-best"
        metrics = {"train/seconds": time.perf_counter() - start, "train/steps": stop["steps"]}
        metrics |= val_metrics(pipeline, writers)
        if test:
            nlp = spacy.load(pipeline)
            gold = list(DocBin().from_disk(corpus["test"]).get_docs(nlp.vocab))
            metrics |= {f"test/{k}": v for k, v in score_gold(nlp, gold, writers).items()}
        run.log_metrics(metrics)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        run.log_artifacts(pipeline, "spacy_pipeline")
        for name in ("config.cfg", "config.yaml", "spacy_train.log"):
            run.log_artifact(out / name)
    report(pipeline, metrics, run.describe())
    return pipeline


def merge_same_text(examples: list[Example]) -> list[Example]:
    """Examples of one text (same id, same words) from several corpora as one, their annotation united:
    EWT dev's sentence and UNER's entities for it become one gold Doc that carries both."""
    merged: list[Example] = []
    first: dict[tuple, Example] = {}
    for ex in examples:
        key = (ex.id, tuple(ex.words))
        target = first.get(key) if ex.id is not None else None
        if target is None:
            ex = replace(ex, gold=dict(ex.gold))  # a copy: the caller's examples stay as they were
            merged.append(ex)
            first.setdefault(key, ex)
            continue
        for task, gold in ex.gold.items():
            target.gold.setdefault(task, gold)
    return merged


def write_corpora(folder: Path, splits: dict[str, list[Example]], lang: str, writers: Writers) -> dict:
    """Each split as a DocBin (polyhead.export.convert.to_docbin). Annotation an Example lacks stays unset
    on its Doc, which spaCy reads as missing: no tags -> POS/TAG unset (no loss for those tokens), no
    entities -> ENT_IOB 0 (every token's NER tag unknown, not "O"), no categories -> empty doc.cats."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, examples in splits.items():
        paths[split] = folder / f"{split}.spacy"
        to_docbin(examples, lang, writers).to_disk(paths[split])
    return paths


def pipeline_components(
    train: list[Example], writers: Writers, textcat: str = "auto", exclusive: bool | None = None
) -> tuple[list[str], bool]:
    """spaCy's trainable components for the tasks `train` carries (each where `writers` put it: the
    morphologizer for token.pos / token.morph, the tagger for token.tag, the trainable lemmatizer, ner for
    doc.ents, the parser, one textcat over every classification task), and whether categories are
    exclusive (`exclusive`: the teacher's textcat heads say; None: one category on every annotated text).

    spaCy's exclusive `textcat` has no missing values: a Doc with empty doc.cats trains as all-zero targets.
    So `auto` takes `textcat` only when every training text has exactly one category, `textcat_multilabel`
    (which masks the labels a Doc lacks) when some have none, e.g. gold EWT + UNER, whose UNER sentences
    carry no genre; with one category per annotated text it is still scored as exclusive (argmax)."""
    if textcat not in TEXTCATS:
        raise UserError(f"student.textcat={textcat!r}: must be one of {TEXTCATS}")
    present = {task for ex in train for task in ex.gold}
    names, cats = [], []
    for task, (head, options) in writers.items():
        if task not in present:
            continue
        if head.annotation == "cats":
            cats += [ex.get(task) for ex in train if ex.has(task)]
            continue
        place = head.writes(options)
        factory = {"tree": "parser"}.get(head.annotation) or SPAN_FACTORY.get(place)
        factory = factory or TAGGER_FACTORY.get(options.get("attr"))
        if factory is None:
            raise UserError(f"task {task!r} writes {place}: spaCy has no component the student could train")
        names += [factory] if factory not in names else []
    exclusive = all(len(c) == 1 for c in cats) if exclusive is None else exclusive
    if cats and textcat == "auto":
        textcat = "textcat" if exclusive and len(cats) == len(train) else "textcat_multilabel"
    if cats and textcat == "textcat" and not exclusive:
        raise UserError("student.textcat=textcat needs exactly one category per text; use textcat_multilabel")
    if not names and not cats:
        raise UserError("the spacy_cnn student's training texts carry no tags, entities or categories")
    return names + ([textcat] if cats else []), exclusive


def efficiency_config(cfg: DictConfig, train: list[Example], corpus: dict, lang: str, writers: Writers):
    """spaCy's own efficiency config (`spacy init config --optimize efficiency`) for the components the
    training data needs, with this run's corpora, seed and budget (student.*) and student.overrides."""
    from spacy.cli.init_config import init_config

    student = cfg.student
    exclusive_heads = [
        spec.get("exclusive", True) for spec in cfg.model.heads.values() if "exclusive" in spec
    ]
    head_exclusive = all(exclusive_heads) if exclusive_heads else None
    names, exclusive = pipeline_components(train, writers, student.get("textcat", "auto"), head_exclusive)
    config = init_config(lang=lang, pipeline=names, optimize="efficiency", silent=True)
    if "textcat_multilabel" in names and exclusive:
        config["components"]["textcat_multilabel"]["scorer"] = dict(EXCLUSIVE_SCORER)
    values = {
        "paths.train": str(corpus["train"]),
        "paths.dev": str(corpus["dev"]),
        "system.seed": int(cfg.seed),
        **{f"training.{k}": int(student[k]) for k in BUDGET},
        **flat_params(OmegaConf.to_container(student, resolve=True).get("overrides") or {}),
    }
    return Config(config).merge(dot_to_dict(values))


def spacy_train(config: Path, output: Path, log_path: Path, max_minutes: float | None = None) -> dict:
    """`python -m spacy train <config> --output <output>`, its console log to stdout and to `log_path`.

    With `max_minutes`, training stops at the first evaluation row spaCy prints after that much wall time:
    spaCy saves model-best before it prints the row, so the pipeline on disk is whole (spaCy itself has no
    time budget; Lightning's max_time is the teacher's). Returns the last evaluated step and the stop."""
    cmd = [sys.executable, "-m", "spacy", "train", str(config), "--output", str(output)]
    log.info("%s", " ".join(cmd))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # its progress as it happens, not in 8 KB blocks
    lines, step, stopped, start = [], 0, False, time.monotonic()
    with (
        log_path.open("w") as log_file,
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc,
    ):
        for line in proc.stdout:
            log_file.write(line)
            log_file.flush()
            sys.stdout.write(line)
            lines = [*lines[-40:], line]
            row = EVAL_ROW.match(line)
            step = int(row.group(1)) if row else step
            if row and max_minutes and time.monotonic() - start > 60 * max_minutes and not stopped:
                stopped = True
                proc.terminate()
    if proc.returncode != 0 and not stopped:
        raise RuntimeError(f"spacy train failed (exit {proc.returncode}), log {log_path}:\n{''.join(lines)}")
    return {"steps": step, "stopped": "max_minutes" if stopped else "spacy"}


def score_gold(nlp, gold: list[Doc], writers: Writers, batch_size: int = 256) -> dict[str, float]:
    """Each component's own spaCy score on the gold Docs, predicted from their gold tokens (as polyhead's
    test metrics are), under the teacher's metric names (polyhead_names)."""
    bare = [Doc(nlp.vocab, words=[t.text for t in g], spaces=[bool(t.whitespace_) for t in g]) for g in gold]
    scores = nlp.evaluate([GoldPair(b, g) for b, g in zip(bare, gold)], batch_size=batch_size)
    return polyhead_names(scores, writers)


def polyhead_names(scores: dict, writers: Writers) -> dict[str, float]:
    """spaCy's score keys (pos_acc, ents_f, cats_macro_f, ...) under the metric names of the tasks the
    student learnt (tagger_acc, ner_f1, ...), and <task>_f1_<type> from an entity task's per-type table."""
    scalar = {key: value for key, value in scores.items() if isinstance(value, (int, float))}
    named = {}
    for task, (head, options) in writers.items():
        for key, name in metric_names(task, head, options).items():
            if scalar.get(key) is not None:
                named[name] = float(scalar[key])
            elif (
                head.annotation == "spans"
                and name.endswith("_per_type")
                and isinstance(scores.get(key), dict)
            ):
                stem = name.removesuffix("_per_type")
                named |= {f"{stem}_f1_{label}": float(s["f"]) for label, s in scores[key].items() if "f" in s}
    return named


def val_metrics(pipeline: Path, writers: Writers) -> dict[str, float]:
    """The best dev scores `spacy train` recorded in the pipeline's meta.json, as val/<name>."""
    performance = spacy.util.load_meta(pipeline / "meta.json").get("performance", {})
    return {f"val/{k}": v for k, v in polyhead_names(performance, writers).items()}


def flat_params(tree: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as dotted keys (spaCy's override form), empty sections and nulls left out."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat |= flat_params(value, name)
        elif value is not None:
            flat[name] = value
    return flat


def run_tags(cfg: DictConfig, tags: dict[str, str]) -> dict[str, str]:
    """Tagged like train.py's runs (hardware, git state) plus spaCy's version and `tags`."""
    return {
        **run_metadata(cfg, "fp32"),  # thinc's numpy ops: the CNN trains and runs in fp32
        "spacy_version": spacy.__version__,
        **tags,
    }


def report(pipeline: Path, metrics: dict[str, float], run: str) -> None:
    lines = [f"  {k:<28} {v:.4f}" for k, v in sorted(metrics.items()) if k.startswith("test/")]
    print("\n".join(["spacy_cnn test metrics:", *lines, run, f"spaCy pipeline: {pipeline}"]))
