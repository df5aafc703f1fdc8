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
from polyhead.data.schema import KINDS, LEGACY_FIELDS, LEGACY_TASKS, CorpusError, Example

SPLITS = ("train", "dev", "test")
log = logging.getLogger(__name__)


@dataclass
class CorpusSpec:
    """One corpus file in one split, feeding the listed tasks (other annotation is dropped, i.e. masked).

    `tasks` maps each task to the field of the file it reads (`{upos: upos, lemma: lemma, parser: tree}`
    for CoNLL-U, `{pos: 1, ner: "3:iob2"}` for a column file, `{intent: cats}`); a list names tasks after
    the head kind that learns them and reads each from its kind's field ([tagger, parser] -> tags, tree).
    A JSONL file may leave `tasks` out: every task it holds, as `polyhead.prepare` wrote it (its `tasks`
    objects under their names, the fields tags, ents, cats and heads as tagger, ner, textcat, parser)."""

    path: str
    format: str
    tasks: dict | list | None = None
    options: dict = field(default_factory=dict)
    sample: dict | None = None  # {fraction, seed, part: head|tail}: a seeded split of the file
    join: bool = False  # merge annotation into the split's earlier examples with the same id
    on_mismatch: str = "error"  # join: same id, different words -> "error" or "skip" (leave unannotated)
    repaired: int = field(default=0, init=False)  # entity tags read as conlleval does (see read_columns)

    def __post_init__(self) -> None:
        if self.tasks is None and self.format == "jsonl":
            return  # the file's own tasks, once read
        if isinstance(self.tasks, str) or not hasattr(self.tasks, "__iter__"):
            raise ValueError(f"{self.path}: tasks must be a list of tasks or a mapping task -> field")
        if not hasattr(self.tasks, "items"):
            unknown = [task for task in self.tasks if task not in LEGACY_FIELDS]
            if unknown:
                raise ValueError(
                    f"{self.path}: task {unknown[0]!r} needs its field: tasks {{{unknown[0]}: <field>}} "
                    f"(a list names only {', '.join(LEGACY_FIELDS)})"
                )
            self.tasks = {task: LEGACY_FIELDS[task] for task in self.tasks}
        self.tasks = {str(task): str(name) for task, name in dict(self.tasks).items()}

    def read(self) -> list[Example]:
        if not Path(self.path).is_file():
            raise CorpusError(self.path, None, "file not found (check paths.corpora)")
        fields = None if self.tasks is None else tuple(dict.fromkeys(self.tasks.values()))
        examples = read_corpus(self.path, self.format, fields, **self.options)
        if self.tasks is None:
            found = dict.fromkeys(name for ex in examples for name in ex.gold)
            self.tasks = {LEGACY_TASKS.get(name, name): name for name in found}
        for task, name in self.tasks.items():
            if not any(name in ex.gold for ex in examples):
                what = KINDS[name].what if name in KINDS else name
                raise CorpusError(self.path, None, f"task {task!r} reads {name!r}, but no example has {what}")
        self.repaired = sum(len(ex.meta.get("repaired_tags", ())) for ex in examples)
        examples = [as_tasks(ex, self.tasks) for ex in examples]
        return seeded_part(examples, **self.sample, path=self.path) if self.sample else examples


def as_tasks(ex: Example, tasks: dict[str, str]) -> Example:
    """The example with its fields' annotation under the task names that read them (the rest dropped)."""
    ex.gold = {task: ex.gold[name] for task, name in tasks.items() if name in ex.gold}
    return ex


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
        target.gold.update(ex.gold)
    if skipped:
        log.warning(
            "%s: %d example(s) tokenised differently were not joined: %s", path, len(skipped), skipped
        )


def label_pairs(ex: Example) -> list[tuple[str, str]]:
    """(task, label) for every label an example carries (a word left unannotated has None: no label)."""
    return [
        (task, label)
        for task, (kind, value) in ex.gold.items()
        for label in KINDS[kind].labels(value, ex.words)
        if label is not None
    ]


def collect_labels(examples: list[Example]) -> dict[str, list[str]]:
    """Sorted label set of each task that has any annotation in `examples`."""
    found: dict[str, set] = {}
    for ex in examples:
        for task in ex.gold:
            found.setdefault(task, set())
        for task, label in label_pairs(ex):
            found[task].add(label)
    return {task: sorted(labels) for task, labels in found.items()}


def collect_kinds(examples: list[Example]) -> dict[str, str]:
    """The kind of annotation each task has (tags, lemmas, spans, cats, tree); one task fed two kinds by two
    corpora (a tag column and an entity column both named `ner`) is an error naming the second file."""
    kinds: dict[str, tuple[str, str]] = {}
    for ex in examples:
        for task, gold in ex.gold.items():
            first = kinds.setdefault(task, (gold.kind, ex.source))
            if first[0] != gold.kind:
                raise ex.error(f"task {task!r} is {gold.kind} here but {first[0]} in {first[1]}")
    return {task: kind for task, (kind, _) in kinds.items()}


def check_labels(examples: list[Example], labels: dict[str, list[str]], split: str) -> None:
    """A dev/test label never seen in training stops the run before it starts, naming where it is; in a
    kind with an open label set (feature bundles, lemmas' edit scripts) it is only an error to score."""
    known = {task: set(values) for task, values in labels.items()}
    for ex in examples:
        closed = {task for task, gold in ex.gold.items() if KINDS[gold.kind].closed}
        for task, label in label_pairs(ex):
            if task not in closed:
                continue
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
        self.kinds: dict[str, str] = {}  # task -> the kind of its annotation (schema.KINDS)
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
        self.kinds = collect_kinds(full + self.examples["dev"] + self.examples["test"])  # train is in full
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


def first_category(ex: Example) -> str:
    """The first label of the example's first classification task ("" without one): the sample's strata."""
    return next((value[0] for kind, value in ex.gold.values() if kind == "cats" and value), "")


def stratified_sample(examples: list[Example], pool: list[int], n: int, rng: random.Random) -> list[int]:
    """n indices of `pool` drawn with `rng`, each category (first_category) in proportion to its share."""
    if n >= len(pool):
        return pool
    groups: dict[str, list[int]] = {}
    for i in pool:
        groups.setdefault(first_category(examples[i]), []).append(i)
    chosen = []
    for members in groups.values():
        rng.shuffle(members)
        chosen += members[: max(1, round(n * len(members) / len(pool)))]
    rng.shuffle(chosen)
    return chosen[:n]
