"""The one record type every reader produces and every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

TASKS = ("tagger", "ner", "textcat")


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

    def __post_init__(self) -> None:
        n = len(self.words)
        if self.spaces is not None and len(self.spaces) != n:
            raise ValueError(f"{self.source}: {len(self.spaces)} spaces for {n} words")
        if self.tags is not None and len(self.tags) != n:
            raise ValueError(f"{self.source}: {len(self.tags)} tags for {n} words")

    def has(self, task: str) -> bool:
        return {"tagger": self.tags, "ner": self.ents, "textcat": self.cats}[task] is not None

    def keep_tasks(self, tasks: list[str] | tuple[str, ...]) -> Example:
        """Drop the annotation of every task not in `tasks` (it becomes unlabelled, not negative)."""
        return Example(
            words=self.words,
            spaces=self.spaces,
            tags=self.tags if "tagger" in tasks else None,
            ents=self.ents if "ner" in tasks else None,
            cats=self.cats if "textcat" in tasks else None,
            id=self.id,
            source=self.source,
            meta=self.meta,
        )

    @property
    def text(self) -> str:
        spaces = self.spaces if self.spaces is not None else [True] * len(self.words)
        return "".join(w + (" " if s else "") for w, s in zip(self.words, spaces)).rstrip()
