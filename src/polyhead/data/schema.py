"""The one record type every reader produces and every later stage consumes."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from polyhead.data.edit_scripts import edit_script


class CorpusError(ValueError):
    """Malformed input: the message names the file, the line and what is wrong."""

    def __init__(self, path: str, line: int | None, message: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.reason = str(path), line, message


class Gold(NamedTuple):
    """One task's annotation of one text: its kind (a key of KINDS) and the value of that kind."""

    kind: str
    value: Any


@dataclass
class Example:
    """One text with its annotation per task: `gold[task]`, absent where the text is not annotated for
    the task (masked, not negative). A task is a name the user chooses (`xpos`, `intent`); its kind says
    what the annotation is (KINDS)."""

    words: list[str]
    spaces: list[bool] | None = None  # whitespace after each word, for rebuilding the text / a spaCy Doc
    gold: dict[str, Gold] = field(default_factory=dict)
    id: str | None = None  # e.g. a CoNLL-U sent_id, used to join corpora
    source: str = ""  # "path:line" of the example's first line, for error messages
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.spaces is not None and len(self.spaces) != len(self.words):
            raise ValueError(f"{self.source}: {len(self.spaces)} spaces for {len(self.words)} words")
        for task, gold in self.gold.items():
            if gold.kind not in KINDS:
                raise ValueError(f"{self.source}: task {task!r} has an unknown kind {gold.kind!r}")
            KINDS[gold.kind].check(gold.value, self.words, self.source, task)

    def has(self, task: str) -> bool:
        return task in self.gold

    def get(self, task: str):
        """The task's annotation (its kind's value), or None where the text has none."""
        gold = self.gold.get(task)
        return None if gold is None else gold.value

    def keep_tasks(self, tasks: Iterable[str]) -> Example:
        """Drop the annotation of every task not in `tasks` (it becomes unlabelled, not negative)."""
        return replace(self, gold={task: g for task, g in self.gold.items() if task in tasks})

    def error(self, message: str) -> CorpusError:
        """A CorpusError at the example's source: its file and line (a DocBin's "doc N" leads the message)."""
        path, _, where = self.source.rpartition(":")
        if where.isdigit():
            return CorpusError(path, int(where), message)
        return CorpusError(path, None, f"{where}: {message}") if path else CorpusError(where, None, message)

    @property
    def text(self) -> str:
        spaces = self.spaces if self.spaces is not None else [True] * len(self.words)
        return "".join(w + (" " if s else "") for w, s in zip(self.words, spaces)).rstrip()


@dataclass(frozen=True)
class Kind:
    """What a kind of annotation is: how messages name it, its label strings, and its checks."""

    what: str
    labels: Callable[[Any, list[str]], Iterable[str]]  # (value, words) -> the labels a head learns
    check: Callable[[Any, list[str], str, str], None]  # (value, words, source, task): ValueError
    closed: bool = True  # False: dev and test may hold labels training lacks (they count as errors)


def check_per_word(value, words: list[str], source: str, task: str) -> None:
    if len(value) != len(words):
        raise ValueError(f"{source}: {len(value)} {task} for {len(words)} words")


def check_tree(value, words: list[str], source: str, task: str) -> None:
    heads, deps = value
    n = len(words)
    for name, given in (("heads", heads), ("deps", deps)):
        if len(given) != n:
            raise ValueError(f"{source}: {len(given)} {name} for {n} words")
    if not all(type(h) is int and 0 <= h <= n for h in heads):
        raise ValueError(f"{source}: heads must be 0 (root) or word numbers 1-{n}")
    cycle = find_cycle(heads)
    if cycle:
        raise ValueError(f"{source}: heads make a cycle ({' -> '.join(map(str, cycle))}): not a tree")


def lemma_scripts(words: list[str], lemmas: list[str | None]) -> list[str | None]:
    """The edit script of each annotated word (None where its lemma is not given)."""
    return [None if lemma is None else edit_script(word, lemma) for word, lemma in zip(words, lemmas)]


def is_feats(value: str) -> bool:
    """UD FEATS: "_" or Feature=Value pairs joined by "|" (a value may list several, joined by ",")."""
    if value == "_":
        return True
    for pair in value.split("|"):
        name, sep, values = pair.partition("=")
        if not (sep and name and values and all(values.split(","))):
            return False
        if not name.replace("[", "").replace("]", "").isalnum():
            return False
    return True


def no_check(value, words: list[str], source: str, task: str) -> None:
    pass


# The kinds of annotation an Example can hold: the data layer is generic over this table (it sits below the
# models: a head kind names the kind it learns from, polyhead.models.heads.registry). Values:
#   tags    one label per word (UPOS, XPOS, a chunk tag)
#   feats   one feature bundle per word (UD FEATS: "Number=Sing|Person=3", "_" for none)
#   lemmas  one lemma per word; its labels are the edit scripts from form to lemma (data.edit_scripts)
#   spans   word spans [start, end) with a type; [] = none
#   cats    a text's positive labels (exactly one for exclusive classes)
#   tree    (heads, deps): each word's head as CoNLL-U numbers it (0 = root) and its relation
# A per-word value (tags, feats, lemmas) may hold None for a word left unannotated (UD's "_" in XPOS, LEMMA).
KINDS: dict[str, Kind] = {
    "tags": Kind("tags", lambda value, words: value, check_per_word),
    "feats": Kind("feature bundles", lambda value, words: value, check_per_word, closed=False),
    "lemmas": Kind("lemmas", lambda value, words: lemma_scripts(words, value), check_per_word, closed=False),
    "spans": Kind("entities", lambda value, words: (label for _, _, label in value), no_check),
    "cats": Kind("categories", lambda value, words: value, no_check),
    "tree": Kind("dependency heads (CoNLL-U: HEAD and DEPREL)", lambda value, words: value[1], check_tree),
}


def field_gold(tags=None, ents=None, cats=None, heads=None, deps=None) -> dict[str, Gold]:
    """The annotation every reader may give, keyed by its field (the kind's name: tags, spans, cats, tree);
    a corpus's `tasks` maps task names to fields."""
    if (heads is None) != (deps is None):
        raise ValueError("heads and deps go together (one is missing)")
    found = {
        "tags": None if tags is None else Gold("tags", list(tags)),
        "spans": None if ents is None else Gold("spans", [tuple(e) for e in ents]),
        "cats": None if cats is None else Gold("cats", tuple(cats)),
        "tree": None if heads is None else Gold("tree", (list(heads), list(deps))),
    }
    return {name: gold for name, gold in found.items() if gold is not None}


def legacy_gold(tags=None, ents=None, cats=None, heads=None, deps=None) -> dict[str, Gold]:
    """field_gold under the tasks named after the head kind that learns each field (LEGACY_TASKS)."""
    return {LEGACY_TASKS[name]: gold for name, gold in field_gold(tags, ents, cats, heads, deps).items()}


# A corpus whose `tasks` is a list (as before tasks had names: [tagger, parser]) reads each of these tasks
# from its kind's field: the task is named after the head kind that learns it.
LEGACY_TASKS = {"tags": "tagger", "spans": "ner", "cats": "textcat", "tree": "parser"}
LEGACY_FIELDS = {task: name for name, task in LEGACY_TASKS.items()}


# Unicode categories that draw nothing on their own: format controls (U+200B zero width space, U+FEFF,
# U+202E right-to-left override), combining marks with no letter to sit on, separators, control characters.
INVISIBLE = frozenset({"Cf", "Mn", "Me", "Cc", "Zs", "Zl", "Zp"})


def word_defect(word: str) -> str | None:
    """Why `word` cannot be a word (empty, a NUL or other control character, a lone surrogate, nothing
    visible), or None. A mark after its letter (e + U+0301) or a joiner inside a word is part of it, and a
    word of whitespace only is the whitespace token spaCy's tokenizer makes of "a  b": both are fine."""
    if word.isascii() and word.isprintable():
        return None if word else "is empty"
    for char in word:
        category = unicodedata.category(char)
        if category == "Cs" or (category == "Cc" and not char.isspace()):
            what = "a lone surrogate" if category == "Cs" else "the control character"
            return f"contains {what} U+{ord(char):04X}"
    if word.isspace() or any(unicodedata.category(char) not in INVISIBLE for char in word):
        return None
    return f"has no visible character ({' '.join(f'U+{ord(char):04X}' for char in word[:8])})"


def find_cycle(heads: list[int]) -> list[int]:
    """A cycle of heads (0 = root, k = the k-th word) as word numbers, from its lowest back to it
    ([3, 5, 3]: word 3's head is 5, whose head is 3); [] when every word reaches the root."""
    state = [0] * (len(heads) + 1)  # 0 unvisited, 1 on the current walk, 2 known to reach the root
    state[0] = 2
    for start in range(1, len(heads) + 1):
        walk, node = [], start
        while state[node] == 0:
            state[node] = 1
            walk.append(node)
            node = heads[node - 1]
        if state[node] == 1:  # the walk came back to a word on it
            cycle = walk[walk.index(node) :]
            first = cycle.index(min(cycle))
            cycle = cycle[first:] + cycle[:first]
            return [*cycle, cycle[0]]
        for visited in walk:
            state[visited] = 2
    return []
