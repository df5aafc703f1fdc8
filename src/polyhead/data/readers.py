"""The only code that opens corpus files: CoNLL-U, IOB/BILUO columns, CSV/TSV, JSONL, spaCy DocBin."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

from polyhead.data.conll import parse_columns, parse_conllu
from polyhead.data.schema import CorpusError, Example


def read_text(path) -> list[str]:
    """Lines of a UTF-8 file (BOM stripped); bad bytes, a missing or an empty file raise CorpusError."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(path, None, "file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise CorpusError(
            path, line, f"not valid UTF-8 (byte {data[err.start]:#04x}); re-encode the file as UTF-8"
        ) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise CorpusError(path, None, "empty file")
    return [line.removesuffix("\r") for line in text.split("\n")]  # not splitlines(): it splits on U+2028


def nonempty(examples: list[Example], path) -> list[Example]:
    """The examples, or a CorpusError when there are none."""
    if not examples:
        raise CorpusError(path, None, "no examples found")
    return examples


def read_csv(
    path, text_column: str = "text", label_column: str = "label", delimiter: str = ",", lang: str = "en"
) -> list[Example]:
    """One text and one label per row (header required), tokenised by spaCy; TSV is delimiter="\\t"."""
    import spacy

    reader = csv.DictReader(io.StringIO("\n".join(read_text(path))), delimiter=delimiter)
    missing = {text_column, label_column} - set(reader.fieldnames or [])
    if missing:
        raise CorpusError(path, 1, f"header lacks column(s) {sorted(missing)}; found {reader.fieldnames}")
    rows = [(reader.line_num, row) for row in reader]
    tokenizer = spacy.blank(lang).tokenizer
    examples = []
    for (n, row), doc in zip(rows, tokenizer.pipe(row[text_column] or "" for _, row in rows)):
        for column in (text_column, label_column):
            if not (row[column] or "").strip():
                raise CorpusError(path, n, f"empty {column!r}")
        examples.append(
            Example(
                [t.text for t in doc],
                [bool(t.whitespace_) for t in doc],
                cats=(row[label_column],),
                source=f"{path}:{n}",
            )
        )
    return nonempty(examples, path)


def read_conllu(
    path,
    tag_column: str = "upos",
    cat_from: str | None = None,
    cat_key: str = "genre",
    cat_prefix_separator: str = "-",
) -> list[Example]:
    """Sentences of a CoNLL-U file with one column (upos, xpos, deprel...) as tags."""
    examples = parse_conllu(read_text(path), path, tag_column, cat_from, cat_key, cat_prefix_separator)
    return nonempty(examples, path)


def read_columns(
    path, scheme: str = "iob2", word_column: int = 0, tag_column: int = -1, separator: str | None = None
) -> list[Example]:
    """One token per line with an entity tag column (CoNLL-2003, WNUT, UNER); tags decoded strictly."""
    examples = parse_columns(read_text(path), path, scheme, word_column, tag_column, separator)
    return nonempty(examples, path)


def cats_from_json(cats) -> tuple[str, ...] | None:
    """Positive labels from a {label: score} dict (score >= 0.5) or a list of labels."""
    if cats is None:
        return None
    return tuple(k for k, v in cats.items() if v >= 0.5) if isinstance(cats, dict) else tuple(cats)


def read_jsonl(path, lang: str = "en") -> list[Example]:
    """One JSON object a line: `text` (char-offset ents) or `tokens` (token-offset ents), tags, cats."""
    nlp = None
    examples = []
    for n, obj in json_lines(enumerate(read_text(path), 1), path):
        if not isinstance(obj, dict) or not ("tokens" in obj or "text" in obj):
            raise CorpusError(path, n, "expected an object with a 'text' or a 'tokens' field")
        if "tokens" not in obj and nlp is None:
            import spacy

            nlp = spacy.blank(lang)
        try:
            examples.append(json_example(obj, nlp, f"{path}:{n}"))
        except (TypeError, ValueError) as err:  # Example's length checks, malformed fields
            raise CorpusError(path, n, str(err).split(f"{path}:{n}: ", 1)[-1]) from None
    return nonempty(examples, path)


def json_lines(numbered_lines, path) -> Iterator[tuple[int, object]]:
    """(line number, parsed JSON) of every non-blank line; bad JSON is a CorpusError naming the line."""
    for n, line in numbered_lines:
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as err:
            raise CorpusError(path, n, f"invalid JSON: {err.msg} at column {err.colno}") from None


def json_example(obj: dict, nlp, source: str) -> Example:
    """An Example from one JSONL object; `nlp` tokenises `text` when there are no `tokens`."""
    ents = obj.get("ents")
    if "tokens" in obj:
        words, spaces = obj["tokens"], obj.get("spaces")
        if ents is not None:
            ents = [(start, end, label) for start, end, label in ents]
    else:
        doc = nlp.make_doc(obj["text"])
        words, spaces = [t.text for t in doc], [bool(t.whitespace_) for t in doc]
        if ents is not None:
            ents = [char_span(doc, start, end, label) for start, end, label in ents]
    if ents is not None:
        check_spans(sorted(ents), len(words))
    cats = cats_from_json(obj.get("cats"))
    return Example(words, spaces, obj.get("tags"), ents, cats, obj.get("id"), source)


def check_spans(ents: list[tuple[int, int, str]], n_words: int) -> None:
    """Sorted token spans must lie inside the words and not overlap."""
    for i, (start, end, label) in enumerate(ents):
        if not 0 <= start < end <= n_words:
            raise ValueError(f"entity {[start, end, label]} outside the {n_words} tokens")
        if i and start < ents[i - 1][1]:
            raise ValueError(f"entity {[start, end, label]} overlaps {list(ents[i - 1])}")


def char_span(doc, start: int, end: int, label: str) -> tuple[int, int, str]:
    """Character offsets -> token offsets; they must lie inside the text and on token boundaries."""
    if not 0 <= start < end <= len(doc.text):
        raise ValueError(f"entity {[start, end, label]} outside the text ({len(doc.text)} characters)")
    span = doc.char_span(start, end, label=label, alignment_mode="strict")
    if span is None:
        raise ValueError(
            f"entity {[start, end, label]} {doc.text[start:end]!r} does not align with token boundaries"
        )
    return span.start, span.end, label


def read_docbin(path, tag_attr: str = "pos", lang: str = "en") -> list[Example]:
    """Docs of a spaCy DocBin: tags from token.pos_ or token.tag_, ents, cats with score >= 0.5."""
    import spacy
    from spacy.tokens import DocBin

    if not Path(path).is_file():
        raise CorpusError(path, None, "file not found")
    try:
        docs = list(DocBin().from_bytes(Path(path).read_bytes()).get_docs(spacy.blank(lang).vocab))
    except Exception as err:
        raise CorpusError(path, None, f"not a spaCy DocBin: {err}") from None
    examples = []
    for i, doc in enumerate(docs):
        tags = [getattr(t, f"{tag_attr}_") for t in doc]
        examples.append(
            Example(
                [t.text for t in doc],
                [bool(t.whitespace_) for t in doc],
                tags if any(tags) else None,
                [(e.start, e.end, e.label_) for e in doc.ents] if doc.has_annotation("ENT_IOB") else None,
                cats_from_json(doc.cats) if doc.cats else None,
                source=f"{path}:doc {i + 1}",
            )
        )
    return nonempty(examples, path)


READERS = {
    "conllu": read_conllu,
    "columns": read_columns,
    "csv": read_csv,
    "jsonl": read_jsonl,
    "docbin": read_docbin,
}


def read_corpus(path, format: str, **options) -> list[Example]:
    """Read a corpus file as Examples with the reader for `format` (conllu, columns, csv, jsonl, docbin)."""
    if format not in READERS:
        raise ValueError(f"{path}: unknown corpus format {format!r}; use one of {sorted(READERS)}")
    return READERS[format](path, **options)


def fingerprint(path) -> str:
    """First 16 hex digits of the file's sha256, to tag a run with the exact data it used."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
