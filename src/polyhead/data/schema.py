"""The one record type every reader produces and every later stage consumes."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace


class CorpusError(ValueError):
    """Malformed input: the message names the file, the line and what is wrong."""

    def __init__(self, path: str, line: int | None, message: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.reason = str(path), line, message


@dataclass
class Example:
    """One text with whatever annotation its corpus provides; None means "not annotated" (masked)."""

    words: list[str]
    spaces: list[bool] | None = None  # whitespace after each word, for rebuilding the text / a spaCy Doc
    tags: list[str] | None = None  # one tag per word
    ents: list[tuple[int, int, str]] | None = None  # word spans [start, end) with a type; [] = no entities
    cats: tuple[str, ...] | None = None  # positive document labels (exactly one for exclusive classes)
    id: str | None = None  # e.g. a CoNLL-U sent_id, used to join corpora
    source: str = ""  # "path:line" of the example's first line, for error messages
    meta: dict = field(default_factory=dict)
    heads: list[int] | None = None  # each word's head as CoNLL-U numbers it: 0 = root, k = the k-th word
    deps: list[str] | None = None  # each word's relation to its head

    def __post_init__(self) -> None:
        n = len(self.words)
        for name in ("spaces", "tags", "heads", "deps"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{self.source}: {len(value)} {name} for {n} words")
        if (self.heads is None) != (self.deps is None):
            raise ValueError(f"{self.source}: heads and deps go together (one is missing)")
        if self.heads is not None:
            if not all(type(h) is int and 0 <= h <= n for h in self.heads):
                raise ValueError(f"{self.source}: heads must be 0 (root) or word numbers 1-{n}")
            cycle = find_cycle(self.heads)
            if cycle:
                raise ValueError(
                    f"{self.source}: heads make a cycle ({' -> '.join(map(str, cycle))}): not a tree"
                )

    def has(self, task: str) -> bool:
        return getattr(self, ANNOTATIONS[task].fields[0]) is not None

    def keep_tasks(self, tasks: list[str] | tuple[str, ...]) -> Example:
        """Drop the annotation of every task not in `tasks` (it becomes unlabelled, not negative)."""
        dropped = [name for task, kind in ANNOTATIONS.items() if task not in tasks for name in kind.fields]
        return replace(self, **dict.fromkeys(dropped))

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
class Annotation:
    """One kind of annotation an Example carries, keyed by the task (registered head key) that learns it."""

    fields: tuple[str, ...]  # the Example fields that hold it: all None where a text lacks it
    what: str  # how messages name it
    labels: Callable[[Example], Iterable[str]]  # its label strings in an example that has it


# The data layer's one list of tasks: the annotation kinds an Example can hold. It sits below the models, so
# it cannot ask the head registry (polyhead.models.heads.registry, whose keys a test keeps equal to these);
# everything in data/ is generic over this table, everything from the models up over the registry.
ANNOTATIONS: dict[str, Annotation] = {
    "tagger": Annotation(("tags",), "tags", lambda ex: ex.tags),
    "ner": Annotation(("ents",), "entities", lambda ex: (label for _, _, label in ex.ents)),
    "textcat": Annotation(("cats",), "categories", lambda ex: ex.cats),
    "parser": Annotation(
        ("heads", "deps"),
        "dependency heads (CoNLL-U: options {head_column: head, deprel_column: deprel})",
        lambda ex: ex.deps,
    ),
}
TASKS = tuple(ANNOTATIONS)


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
