"""Corpora described in config -> validated train/dev/test examples, label sets and dataloaders."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from polyhead.data.collate import LengthGroupedBatchSampler
from polyhead.data.readers import fingerprint, read_corpus
from polyhead.data.schema import ANNOTATIONS, CorpusError, Example

SPLITS = ("train", "dev", "test")
log = logging.getLogger(__name__)


@dataclass
class CorpusSpec:
    """One corpus file in one split, feeding the listed tasks (other annotation is dropped, i.e. masked)."""

    path: str
    format: str
    tasks: list[str]
    options: dict = field(default_factory=dict)
    sample: dict | None = None  # {fraction, seed, part: head|tail}: a seeded split of the file
    join: bool = False  # merge annotation into the split's earlier examples with the same id
    on_mismatch: str = "error"  # join: same id, different words -> "error" or "skip" (leave unannotated)
    repaired: int = field(default=0, init=False)  # entity tags read as conlleval does (see read_columns)

    def read(self) -> list[Example]:
        unknown = set(self.tasks) - set(ANNOTATIONS)
        if unknown:
            raise ValueError(f"{self.path}: unknown task(s) {sorted(unknown)}; known: {list(ANNOTATIONS)}")
        if not Path(self.path).is_file():
            raise CorpusError(self.path, None, "file not found (check paths.corpora)")
        examples = read_corpus(self.path, self.format, **self.options)
        for task in self.tasks:
            if not any(ex.has(task) for ex in examples):
                what = ANNOTATIONS[task].what
                raise CorpusError(self.path, None, f"tasks lists {task!r} but no example has {what}")
        self.repaired = sum(len(ex.meta.get("repaired_tags", ())) for ex in examples)
        examples = [ex.keep_tasks(self.tasks) for ex in examples]
        return seeded_part(examples, **self.sample, path=self.path) if self.sample else examples


def seeded_part(examples: list[Example], fraction: float, seed: int, part: str, path="") -> list[Example]:
    """The `head` fraction or the `tail` rest of a seeded shuffle: disjoint, reproducible partitions."""
    if part not in ("head", "tail") or not 0 < fraction < 1:
        why = f"got fraction={fraction!r}, part={part!r}"
        raise ValueError(f"{path}: sample needs 0 < fraction < 1 and part: head or tail; {why}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    cut = round(len(order) * fraction)
    chosen = sorted(order[:cut] if part == "head" else order[cut:])
    return [examples[i] for i in chosen]


def join_by_id(base: list[Example], extra: list[Example], path: str, on_mismatch: str = "error") -> None:
    """Copy the annotation of `extra` onto the examples of `base` with the same id and the same words."""
    by_id = {ex.id: ex for ex in base}
    skipped = []
    for ex in extra:
        target = by_id.get(ex.id)
        if target is None:
            raise CorpusError(path, None, f"{ex.source}: id {ex.id!r} has no match to join with")
        if target.words != ex.words:
            if on_mismatch == "skip":
                skipped.append(ex.source)
                continue
            raise CorpusError(path, None, f"{ex.source}: words differ from {target.source} with the same id")
        for kind in ANNOTATIONS.values():
            if getattr(ex, kind.fields[0]) is not None:
                for attr in kind.fields:
                    setattr(target, attr, getattr(ex, attr))
    if skipped:
        log.warning(
            "%s: %d example(s) tokenised differently were not joined: %s", path, len(skipped), skipped
        )


def label_pairs(ex: Example) -> list[tuple[str, str]]:
    """(task, label) for every label an example carries."""
    return [(task, label) for task, kind in ANNOTATIONS.items() if ex.has(task) for label in kind.labels(ex)]


def collect_labels(examples: list[Example]) -> dict[str, list[str]]:
    """Sorted label set of each task that has any annotation in `examples`."""
    found = {task: set() for task in ANNOTATIONS if any(ex.has(task) for ex in examples)}
    for ex in examples:
        for task, label in label_pairs(ex):
            found[task].add(label)
    return {task: sorted(labels) for task, labels in found.items()}


def check_labels(examples: list[Example], labels: dict[str, list[str]], split: str) -> None:
    """A dev/test label never seen in training stops the run before it starts, naming where it is."""
    known = {task: set(values) for task, values in labels.items()}
    for ex in examples:
        for task, label in label_pairs(ex):
            if label not in known.get(task, ()):
                path, _, line = ex.source.rpartition(":")
                raise CorpusError(
                    path,
                    int(line) if line.isdigit() else None,
                    f"{split} {task} label {label!r} never occurs in training data",
                )


class MultitaskDataModule(pl.LightningDataModule):
    def __init__(
        self,
        train: list[dict],
        dev: list[dict],
        test: list[dict],
        batch_size: int = 32,
        eval_batch_size: int = 64,
        group_by_length: bool = True,
        train_limit: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
        tasks: list[str] | None = None,
        sampling_alpha: float = 1.0,
        max_words: int | None = 1000,
    ):
        super().__init__()
        self.specs = {
            split: [CorpusSpec(**dict(c)) for c in corpora]
            for split, corpora in zip(SPLITS, (train, dev, test))
        }
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.group_by_length, self.train_limit = group_by_length, train_limit
        self.seed, self.num_workers = seed, num_workers
        # Only these tasks' annotation is kept (null: every task the corpora feed); examples left with none
        # are skipped. A single-task run sets it to its one head (conf/study/sharing.yaml).
        self.tasks = list(tasks) if tasks is not None else None
        if not 0.0 <= float(sampling_alpha) <= 1.0:
            raise CorpusError("data.sampling_alpha", None, f"must be in [0, 1], got {sampling_alpha}")
        self.sampling_alpha = float(sampling_alpha)  # per-corpus shares of an epoch (collate.corpus_shares)
        self.max_words = max_words  # a longer example stops the run (check_length); None: no limit
        self.examples: dict[str, list[Example]] = {}
        self.labels: dict[str, list[str]] = {}
        self.collate: Callable | None = None

    def load(self) -> None:
        """Read and validate every corpus; raises CorpusError before any training or tracking starts."""
        for split, specs in self.specs.items():
            examples: list[Example] = []
            for spec in specs:
                part = spec.read()
                check_length(part, self.max_words)
                if spec.join:
                    join_by_id(examples, part, spec.path, spec.on_mismatch)
                else:
                    examples += part
            self.examples[split] = examples
        full = self.examples["train"]
        if self.train_limit:  # drawn over every task of the corpora: a single-task run gets the same sample
            order = list(dict.fromkeys(task for spec in self.specs["train"] for task in spec.tasks))
            self.examples["train"] = limit_examples(full, self.train_limit, self.seed, order)
        if self.tasks is not None:
            full = only_tasks(full, self.tasks)
            self.examples = {split: only_tasks(exs, self.tasks) for split, exs in self.examples.items()}
        # Labels of the whole training set: a limited sample keeps every class a full run has (a rare tag
        # the sample lacks is a class it never sees, not an error on dev), so every size has the same heads.
        self.labels = collect_labels(full)
        for split in ("dev", "test"):
            check_labels(self.examples[split], self.labels, split)

    def corpus_repairs(self) -> dict[str, str]:
        """Run tags: entity tags read as conlleval does (IOB1 B-X after O...), in all and per file."""
        files = {Path(s.path).name: s.repaired for specs in self.specs.values() for s in specs if s.repaired}
        return {"corpus_repairs": str(sum(files.values()))} | {
            f"corpus_repairs/{name}": str(count) for name, count in files.items()
        }

    def fingerprints(self) -> dict[str, str]:
        return {
            f"corpus/{Path(s.path).name}": fingerprint(s.path) for specs in self.specs.values() for s in specs
        }

    def _replicas(self) -> dict[str, int]:
        """This process's share of the data under DDP (trainer=ddp sets use_distributed_sampler=false)."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return {}
        return {"num_replicas": trainer.world_size, "rank": trainer.global_rank}

    def train_dataloader(self) -> DataLoader:
        lengths = [len(ex.words) for ex in self.examples["train"]]
        sampler = LengthGroupedBatchSampler(
            lengths,
            self.batch_size,
            self.seed,
            shuffle=True,
            pool=50 if self.group_by_length else 0,
            **self._replicas(),
            corpora=[self.train_corpus(ex) for ex in self.examples["train"]],
            alpha=self.sampling_alpha,
        )
        return DataLoader(
            self.examples["train"],
            batch_sampler=sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )

    def train_corpus(self, ex: Example) -> int:
        """The index of the training corpus an example was read from (its source is "path:line")."""
        paths = [spec.path for spec in self.specs["train"]]
        path = ex.source.rpartition(":")[0]
        return paths.index(path) if path in paths else len(paths)

    def _eval_loader(self, split: str) -> DataLoader:
        lengths = [len(ex.words) for ex in self.examples[split]]
        sampler = LengthGroupedBatchSampler(lengths, self.eval_batch_size, shuffle=False, **self._replicas())
        return DataLoader(
            self.examples[split], batch_sampler=sampler, collate_fn=self.collate, num_workers=self.num_workers
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("dev")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


def check_length(examples: list[Example], max_words: int | None) -> None:
    """Refuse an example of more than `max_words` words: the encoder runs all its windows in one pass
    (100,000 words: 2,000 windows), and so long a "sentence" is nearly always a file whose blank lines are
    missing. Cutting it would split entities, trees and the text a category belongs to: it is not cut."""
    if max_words is None:
        return
    for ex in examples:
        if len(ex.words) > max_words:
            why = f"{len(ex.words):,} words in one example, more than data.max_words={max_words}"
            hint = "a blank line missing between sentences? Split the text, or raise data.max_words"
            raise ex.error(f"{why}: {hint} (null: no limit)")


def only_tasks(examples: list[Example], tasks: list[str]) -> list[Example]:
    """The examples with annotation for any of `tasks`, every other task's annotation dropped."""
    kept = [ex.keep_tasks(tasks) for ex in examples]
    return [ex for ex in kept if any(ex.has(task) for task in tasks)]


def limit_examples(examples: list[Example], n: int, seed: int, tasks: list[str]) -> list[Example]:
    """A seeded sample with n training examples per task (all of a task's when it has fewer), stratified by
    (first) textcat label where examples have one.

    Tasks are filled in the order given: examples already drawn for an earlier task count towards a later
    task's n when they carry it too, and the rest is drawn from the examples that carry it. A corpus with
    every task gives n examples; two corpora feeding different tasks (EWT tags and genres, UNER entities)
    give n of each. A task whose examples were drawn for two earlier tasks may get more than n."""
    rng = random.Random(seed)
    chosen: set[int] = set()
    for task in tasks:
        have = sum(examples[i].has(task) for i in chosen)
        pool = [i for i, ex in enumerate(examples) if ex.has(task) and i not in chosen]
        if n > have and pool:
            chosen.update(stratified_sample(examples, pool, n - have, rng))
    return [examples[i] for i in sorted(chosen)]


def stratified_sample(examples: list[Example], pool: list[int], n: int, rng: random.Random) -> list[int]:
    """n indices of `pool` drawn with `rng`, each textcat label (first one) in proportion to its share."""
    if n >= len(pool):
        return pool
    groups: dict[str, list[int]] = {}
    for i in pool:
        groups.setdefault(examples[i].cats[0] if examples[i].cats else "", []).append(i)
    chosen = []
    for members in groups.values():
        rng.shuffle(members)
        chosen += members[: max(1, round(n * len(members) / len(pool)))]
    rng.shuffle(chosen)
    return chosen[:n]
