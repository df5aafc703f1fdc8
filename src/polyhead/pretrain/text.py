"""Raw text for continued pretraining: plain text, JSONL text fields, or the words of any corpus format.

Plain text and JSONL are read here line by line so one undecodable line can be skipped (and counted)
instead of failing the run; every other format goes through `read_corpus` and its strict checks."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from polyhead.data.readers import READERS, fingerprint, json_lines, read_corpus, read_text
from polyhead.data.schema import CorpusError

log = logging.getLogger(__name__)

TEXT_FORMATS = ("txt", "jsonl")  # read here; any other READERS format is a labelled corpus (labels ignored)


@dataclass
class TextStats:
    """What reading found: documents per source, lines skipped as invalid UTF-8, file fingerprints."""

    documents: dict[str, int] = field(default_factory=dict)
    skipped_lines: dict[str, int] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped_lines.values())


def decode_lines(
    path, invalid_utf8: str = "skip", encoding: str = "utf-8"
) -> tuple[list[tuple[int, str]], int]:
    """(line number, text) of a UTF-8 file and the number of undecodable lines skipped.

    A missing, empty or binary (NUL byte) file is an error; with invalid_utf8="error" so is a bad line.
    Another `encoding` is decoded whole and strictly, as the corpus readers do."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(path, None, "file not found")
    if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):  # read_text names a bad encoding
        return list(enumerate(read_text(path, encoding), 1)), 0
    data = path.read_bytes()
    if not data.strip():
        raise CorpusError(path, None, "empty file")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data[:nul].count(b"\n") + 1
        raise CorpusError(path, line, "binary file (NUL byte); expected UTF-8 text")
    lines, skipped = [], 0
    for n, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1):
        try:
            lines.append((n, raw.decode("utf-8").removesuffix("\r")))
        except UnicodeDecodeError as err:
            if invalid_utf8 != "skip":
                raise CorpusError(
                    path, n, f"not valid UTF-8 (byte {raw[err.start]:#04x}); re-encode the file as UTF-8"
                ) from None
            skipped += 1
    return lines, skipped


def read_plain(
    path, documents: str = "line", invalid_utf8: str = "skip", encoding: str = "utf-8"
) -> tuple[list[str], int]:
    """Documents of a text file: one per non-blank line, or ("blank_line") paragraphs between blank lines."""
    if documents not in ("line", "blank_line"):
        raise ValueError(f"{path}: documents must be 'line' or 'blank_line', got {documents!r}")
    lines, skipped = decode_lines(path, invalid_utf8, encoding)
    if documents == "line":
        return [t.strip() for _, t in lines if t.strip()], skipped
    docs, current = [], []
    for _, text in lines + [(0, "")]:  # a final blank line closes the last paragraph
        if text.strip():
            current.append(text.strip())
        elif current:
            docs.append(" ".join(current))
            current = []
    return docs, skipped


def read_jsonl_text(
    path, field: str = "text", invalid_utf8: str = "skip", encoding: str = "utf-8"
) -> tuple[list[str], int]:
    """The `field` string of every JSON object a line; objects with `tokens` instead are joined by spaces."""
    lines, skipped = decode_lines(path, invalid_utf8, encoding)
    docs = []
    for n, obj in json_lines(lines, path):
        text = obj.get(field) if isinstance(obj, dict) else None
        if text is None and isinstance(obj, dict) and isinstance(obj.get("tokens"), list):
            spaces = obj.get("spaces") or [True] * len(obj["tokens"])
            text = "".join(f"{t}{' ' * bool(s)}" for t, s in zip(obj["tokens"], spaces))
        if not isinstance(text, str):
            raise CorpusError(path, n, f"expected an object with a string {field!r} (or a 'tokens' list)")
        if text.strip():
            docs.append(text.strip())
    return docs, skipped


def read_documents(path, format: str = "txt", **options) -> tuple[list[str], int]:
    """Documents of one source and the number of lines skipped; labels of corpus formats are ignored."""
    if format == "txt":
        return read_plain(path, **options)
    if format == "jsonl":
        return read_jsonl_text(path, **options)
    if format in READERS:
        options.pop("invalid_utf8", None)  # corpus readers are strict: a bad byte is an error
        return [ex.text for ex in read_corpus(path, format, **options) if ex.words], 0
    raise ValueError(
        f"{path}: unknown text format {format!r}; use one of {sorted({*TEXT_FORMATS, *READERS})}"
    )


def read_sources(sources, invalid_utf8: str = "skip") -> tuple[list[str], TextStats]:
    """All documents of a list of {path, format, options} sources, in order; no text at all is an error."""
    docs: list[str] = []
    stats = TextStats()
    for source in sources or []:
        path = str(source["path"])
        options = {"invalid_utf8": invalid_utf8, **dict(source.get("options") or {})}
        found, skipped = read_documents(path, source.get("format", "txt"), **options)
        if not found:
            why = f" ({skipped} line(s) skipped as invalid UTF-8)" if skipped else ""
            raise CorpusError(path, None, f"no text found{why}")
        if skipped:
            log.warning("%s: skipped %d line(s) that are not valid UTF-8", path, skipped)
            stats.skipped_lines[path] = skipped
        stats.documents[path] = len(found)
        stats.fingerprints[path] = fingerprint(path)
        docs.extend(found)
    return docs, stats


def split_documents(docs: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded `fraction` of the documents held out for validation (at least one when fraction > 0)."""
    if fraction <= 0:
        return docs, []
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_val = min(len(docs) - 1, max(1, round(len(docs) * fraction)))
    if n_val < 1:
        raise ValueError(f"val_fraction={fraction} needs at least 2 documents, found {len(docs)}")
    held = set(order[:n_val])
    return [d for i, d in enumerate(docs) if i not in held], [d for i, d in enumerate(docs) if i in held]
