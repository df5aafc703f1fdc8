"""A finished polyhead run as a teacher: its model, the transfer texts it labels, and its cached targets.

The teacher's targets are its raw scores (logits) per word (tagger, ner) and per text (textcat) on every
transfer text, computed once in length-sorted batches and cached on disk under a key made of the
teacher's checkpoint content and the texts' fingerprint, so every later student reads them instead of
running the teacher again. Soft distributions at any temperature and hard labels are both derived from them.
Each file is written whole (a kill leaves none half written), an entry that cannot be read is labelled again,
and one another user could have written is refused (polyhead.cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import torch
from omegaconf import DictConfig

from polyhead.cache import cached_file, check_private, private_dir, write_private
from polyhead.data.collate import Collator
from polyhead.data.schema import Example, Gold
from polyhead.errors import UserError
from polyhead.export.checkpoint import (
    checkpoint_dir,
    load_checkpoint,
    pick_checkpoint,
    read_checkpoint,
    run_spec,
)
from polyhead.models.multitask import MultitaskModel
from polyhead.training.preflight import looks_like_path

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # bump when the cache layout changes (2: teachers keyed by checkpoint content)
CACHE_FILES = ("targets.safetensors", "meta.json")


@dataclass
class Teacher:
    model: MultitaskModel
    collate: Collator
    cfg: DictConfig  # the teacher run's resolved config (its data, encoder, heads, objective, export)
    labels: dict[str, list[str]]
    checkpoint: Path
    run_id: str | None  # the MLflow run it was trained in, when known

    @cached_property
    def key(self) -> str:
        """What identifies the teacher's weights: the sha256 of its checkpoint's bytes (a file replaced in
        place keeps its name, and may keep its size and mtime), read in 1 MiB chunks."""
        digest = hashlib.sha256()
        with self.checkpoint.open("rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()


def load_teacher(spec: str, tracking_uri: str | None) -> Teacher:
    """`spec` is a checkpoint file or folder, or the id of a FINISHED MLflow run of train.py."""
    spec = str(spec)
    if Path(spec).exists():
        path, run_id = pick_checkpoint(Path(spec)), None
    elif looks_like_path(spec) or spec.endswith(".ckpt"):
        raise UserError(f"teacher={spec}: no such checkpoint file or folder")
    else:
        path, run_id = finished_run_checkpoint(spec, tracking_uri), spec
    model, collate, cfg = load_checkpoint(path)  # its config is checked data; nothing it names is called
    ckpt = read_checkpoint(path)
    _, labels = run_spec(ckpt, path)
    return Teacher(model, collate, cfg, labels, path, run_id or ckpt.get("mlflow_run_id"))


def finished_run_checkpoint(run_id: str, tracking_uri: str | None) -> Path:
    """The best checkpoint of a FINISHED MLflow run of train.py (any other status is an error)."""
    if not tracking_uri:
        raise UserError(f"teacher={run_id}: not a checkpoint path, and no MLflow logger to find a run in")
    ckpt_dir = checkpoint_dir(tracking_uri, run_id)  # names the store and run when either is missing
    from mlflow.tracking import MlflowClient

    status = MlflowClient(tracking_uri).get_run(run_id).info.status
    if status != "FINISHED":
        raise UserError(f"teacher={run_id}: the run is {status}, not FINISHED; distil a finished run")
    return pick_checkpoint(ckpt_dir, run_id)


def raw_examples(texts: list[str], lang: str, source: str) -> list[Example]:
    """Raw texts the teacher labels, cut into words by spaCy's tokenizer for `lang` as the exported
    pipeline cuts them; they carry no gold labels."""
    import spacy

    out, tokenizer = [], spacy.blank(lang).tokenizer
    for i, doc in enumerate(tokenizer.pipe(texts, batch_size=256)):
        tokens = [t for t in doc if not t.is_space]  # whitespace gets no vector in the pipeline either
        if tokens:
            words, spaces = [t.text for t in tokens], [bool(t.whitespace_) for t in tokens]
            out.append(Example(words=words, spaces=spaces, source=f"{source}#{i + 1}"))
    return out


def texts_fingerprint(examples: list[Example]) -> str:
    digest = hashlib.sha256()
    for ex in examples:
        digest.update("\u241f".join(ex.words).encode())
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class Targets:
    """The teacher's logits for each task, concatenated over examples: (sum of words, L) for per-word tasks
    and (texts, L) for per-text tasks; `offsets[task][i]` is where example i starts."""

    logits: dict[str, torch.Tensor]
    offsets: dict[str, list[int]]
    kinds: dict[str, str]  # "word" (one row per word) or "text" (one row per text)
    cached: list[bool]  # per part: read from the cache (no teacher forward pass ran)
    paths: list[Path]  # per part: its cache folder

    def of(self, task: str, i: int) -> torch.Tensor:
        return self.logits[task][self.offsets[task][i] : self.offsets[task][i + 1]]

    @property
    def cache_status(self) -> str:
        return "hit" if all(self.cached) else "miss" if not any(self.cached) else "partial"


def concat_targets(parts: list[Targets]) -> Targets:
    """The targets of several example lists, in order, as one."""
    first = parts[0]
    logits = {task: torch.cat([p.logits[task] for p in parts]) for task in first.logits}
    offsets = {}
    for task in first.logits:
        out, base = [0], 0
        for p in parts:
            out += [base + o for o in p.offsets[task][1:]]
            base += p.offsets[task][-1]
        offsets[task] = out
    cached, paths = [c for p in parts for c in p.cached], [f for p in parts for f in p.paths]
    return Targets(logits, offsets, first.kinds, cached, paths)


def mean_targets(targets: list[Targets], task: str) -> Targets:
    """One task's targets from an ensemble of teachers on the same texts: the mean of their logits (one
    teacher: its own targets)."""
    if len(targets) == 1:
        return targets[0]
    first = targets[0]
    logits = torch.stack([t.logits[task] for t in targets]).mean(0)
    cached, paths = [c for t in targets for c in t.cached], [p for t in targets for p in t.paths]
    return Targets({task: logits}, {task: first.offsets[task]}, {task: first.kinds[task]}, cached, paths)


def targets_cache(configured: str | None) -> Path:
    """Where teacher targets are cached: the configured folder, else the user's polyhead cache's
    teacher_targets/ (polyhead.cache, as the ONNX runtime's)."""
    from polyhead.cache import cache_dir

    return Path(configured) if configured else cache_dir() / "teacher_targets"


def teacher_targets_in_parts(
    teacher: Teacher, parts: list[list[Example]], cache_root: Path, batch_size: int = 64
) -> Targets:
    """Targets of every part, each cached on its own: a student that adds a text source to the gold
    texts reuses the gold texts' targets and labels only the new source."""
    return concat_targets([teacher_targets(teacher, part, cache_root, batch_size) for part in parts if part])


def teacher_targets(
    teacher: Teacher, examples: list[Example], cache_root: Path, batch_size: int = 64
) -> Targets:
    """The teacher's logits on `examples`: read from the cache when this teacher already labelled exactly
    these texts, else computed once in batches and written there."""
    key = hashlib.sha256(f"{CACHE_VERSION}|{teacher.key}|{texts_fingerprint(examples)}".encode()).hexdigest()
    folder = private_dir(Path(cache_root)) / key[:24]
    cached = cached_targets(folder, len(examples))
    if cached is not None:
        log.info("teacher targets: reading the cache %s", folder)
        return cached
    log.info("teacher targets: labelling %d texts (cache %s)", len(examples), folder)
    logits = compute_logits(teacher, examples, batch_size)
    return write_targets(folder, logits, teacher, len(examples))


@torch.inference_mode()
def compute_logits(teacher: Teacher, examples: list[Example], batch_size: int) -> dict[str, list]:
    """Per task, one tensor per example in the order of `examples`: the rows its head's soft_targets give,
    (n_words, K) per word or (K,) per text."""
    model = teacher.model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].words))  # little padding
    out: dict[str, list] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        texts = [examples[i].words for i in chunk]
        enc, logits = model(teacher.collate.align(texts), texts)
        for task, values in logits.items():
            rows = model.heads[task].soft_targets(values, enc.word_mask)
            out.setdefault(task, [None] * len(examples))
            for row, i in enumerate(chunk):
                out[task][i] = rows[row].clone()
    return out


def cached_targets(folder: Path, n: int) -> Targets | None:
    """The cached targets of n texts in `folder`, or None when there are none or they cannot be read
    (damaged: they are labelled again). A folder or file others could have written is refused."""
    if not folder.exists():
        return None
    check_private(folder)
    if not all([cached_file(folder / name) for name in CACHE_FILES]):
        return None
    from safetensors import SafetensorError

    try:
        return read_targets(folder, n)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
        log.warning("teacher targets: %s cannot be read (%s); labelling the texts again", folder, err)
        return None


def write_targets(folder: Path, logits: dict[str, list[torch.Tensor]], teacher: Teacher, n: int) -> Targets:
    """Write the targets and then their meta.json (which marks the entry complete), each file whole."""
    from safetensors.torch import save_file

    private_dir(folder)
    flat, offsets = {}, {}
    kinds = {task: "word" if values[0].ndim == 2 else "text" for task, values in logits.items()}
    for task, values in logits.items():
        sizes = [v.shape[0] if v.ndim == 2 else 1 for v in values]
        offsets[task] = [0, *torch.tensor(sizes).cumsum(0).tolist()]
        flat[task] = torch.cat([v if v.ndim == 2 else v.unsqueeze(0) for v in values]).contiguous()
    write_private(folder / "targets.safetensors", lambda tmp: save_file(flat, str(tmp)))
    meta = {"teacher": teacher.key, "run_id": teacher.run_id, "texts": n, "offsets": offsets, "kinds": kinds}
    write_private(folder / "meta.json", lambda tmp: tmp.write_text(json.dumps(meta)))
    return Targets(flat, offsets, kinds, cached=[False], paths=[folder])


def read_targets(folder: Path, n: int | None = None) -> Targets:
    """Targets written by write_targets; ValueError when the two files do not fit together (or n texts)."""
    from safetensors.torch import load_file

    meta = json.loads((folder / "meta.json").read_text())
    flat = load_file(str(folder / "targets.safetensors"))
    offsets, kinds = meta["offsets"], meta["kinds"]
    texts = meta["texts"] if n is None else n
    for task in {*flat, *offsets, *kinds}:
        known = task in flat and task in offsets and task in kinds
        if not known or len(offsets[task]) != texts + 1 or flat[task].shape[0] != offsets[task][-1]:
            raise ValueError(f"task {task!r}: its logits, offsets and the {texts} texts disagree")
    return Targets(flat, offsets, kinds, cached=[True], paths=[folder])


def attach_targets(examples: list[Example], targets: Targets) -> list[Example]:
    """Each example with its teacher logits in meta["teacher"] ({task: tensor}): they travel with it
    through sampling and collation to the distillation loss."""
    tasks = list(targets.logits)
    return [
        replace(ex, meta={**ex.meta, "teacher": {t: targets.of(t, i) for t in tasks}})
        for i, ex in enumerate(examples)
    ]


def labelled_by_teacher(teacher: Teacher, examples: list[Example], targets: Targets) -> list[Example]:
    """Each example with the teacher's hard labels (its decoded best answer) for every task it has: the
    training corpus of a student that learns labels, not distributions (student=spacy_cnn)."""
    out = []
    for start in range(0, len(examples), 256):
        chunk = range(start, min(start + 256, len(examples)))
        width = max(1, max(len(examples[i].words) for i in chunk))
        mask = torch.zeros(len(chunk), width, dtype=torch.bool)
        for row, i in enumerate(chunk):
            mask[row, : len(examples[i].words)] = True
        decoded = {}
        for task, kind in targets.kinds.items():
            if not teacher.model.heads[task].soft_decodes:  # rows its decode does not read (the parser's)
                continue
            rows = [targets.of(task, i) for i in chunk]
            batch = pad_words(rows, width) if kind == "word" else torch.cat(rows)
            decoded[task] = teacher.model.heads[task].decode(batch, mask)
        for row, i in enumerate(chunk):
            out.append(with_annotation(examples[i], {task: d[row] for task, d in decoded.items()}, teacher))
    return out


def prefer_gold(gold: Example, taught: Example) -> Example:
    """`taught` (the teacher's labels for `gold`'s text) with every annotation `gold` has put back."""
    return replace(taught, gold={**taught.gold, **gold.gold})


def pad_words(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    """Per-word rows (n_i, L) -> one zero-padded batch.  # -> (B, width, L)"""
    batch = torch.zeros(len(rows), width, rows[0].shape[-1])
    for row, value in enumerate(rows):
        batch[row, : value.shape[0]] = value
    return batch


def with_annotation(ex: Example, predicted: dict, teacher: Teacher) -> Example:
    """An example carrying the decoded predictions (what a head's decode returns) as its annotation."""
    heads = teacher.model.heads
    taught = {
        task: Gold(heads[task].annotation, heads[task].as_gold(prediction, ex.words))
        for task, prediction in predicted.items()
    }
    return replace(ex, gold={**ex.gold, **taught})
