"""The only code that opens corpus files: CoNLL-U, IOB/BILUO columns, CSV/TSV, JSONL, spaCy DocBin."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

from polyhead.data.schema import CorpusError, Example
from polyhead.data.spans import tags_to_spans

CONLLU_COLUMNS = ["id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc"]


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
    return text.splitlines()


def blocks(lines: list[str]):
    """Blank-line separated blocks as lists of (line number, line)."""
    block: list[tuple[int, str]] = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            block.append((n, line))
        elif block:
            yield block
            block = []
    if block:
        yield block


def nonempty(examples: list[Example], path) -> list[Example]:
    if not examples:
        raise CorpusError(path, None, "no examples found")
    return examples


def read_conllu(
    path,
    tag_column: str = "upos",
    cat_from: str | None = None,
    cat_key: str = "genre",
    cat_prefix_separator: str = "-",
) -> list[Example]:
    col = CONLLU_COLUMNS.index(tag_column)
    examples = []
    for block in blocks(read_text(path)):
        meta, words, spaces, tags = {}, [], [], []
        for n, line in block:
            if line.startswith("#"):
                key, _, value = line[1:].partition("=")
                meta[key.strip()] = value.strip()
                continue
            cols = line.split("\t")
            if len(cols) != 10:
                raise CorpusError(path, n, f"expected 10 tab-separated columns, found {len(cols)}")
            if "-" in cols[0] or "." in cols[0]:
                continue  # multiword token or empty node: the syntactic words carry the annotation
            if not cols[0].isdigit():
                raise CorpusError(path, n, f"token id {cols[0]!r} is not an integer")
            if cols[col] in ("", "_") and tag_column == "upos":
                raise CorpusError(path, n, f"empty {tag_column} tag")
            words.append(cols[1])
            spaces.append("SpaceAfter=No" not in cols[9])
            tags.append(cols[col])
        if not words:
            continue
        cats = None
        if cat_from == "sent_id_prefix":
            cats = (meta.get("sent_id", "").split(cat_prefix_separator)[0],)
        elif cat_from == "comment":
            if cat_key not in meta:
                raise CorpusError(path, block[0][0], f"sentence has no '# {cat_key} = ...' comment")
            cats = (meta[cat_key],)
        examples.append(
            Example(words, spaces, tags, None, cats, meta.get("sent_id"), f"{path}:{block[0][0]}")
        )
    return nonempty(examples, path)


def read_columns(
    path, scheme: str = "iob2", word_column: int = 0, tag_column: int = -1, separator: str | None = None
) -> list[Example]:
    examples = []
    lines = [("" if line.startswith("-DOCSTART-") else line) for line in read_text(path)]
    for block in blocks(lines):
        sent_id, rows = None, []
        for n, line in block:
            if line.startswith("#"):
                key, _, value = line[1:].partition("=")
                sent_id = value.strip() if key.strip() == "sent_id" else sent_id
                continue
            cols = line.split(separator)
            if rows and len(cols) != len(rows[0][1]):
                raise CorpusError(
                    path, n, f"expected {len(rows[0][1])} columns like line {rows[0][0]}, found {len(cols)}"
                )
            if len(cols) < 2:
                raise CorpusError(path, n, f"expected a token and a tag column, found {len(cols)} column(s)")
            rows.append((n, cols))
        if not rows:
            continue
        words = [cols[word_column] for _, cols in rows]
        tags = [cols[tag_column] for _, cols in rows]
        ents = tags_to_spans(tags, scheme, path=str(path), lines=[n for n, _ in rows])
        examples.append(Example(words, None, None, ents, None, sent_id, f"{path}:{rows[0][0]}"))
    return nonempty(examples, path)


def read_csv(
    path, text_column: str = "text", label_column: str = "label", delimiter: str = ",", lang: str = "en"
) -> list[Example]:
    import spacy

    reader = csv.DictReader(io.StringIO("\n".join(read_text(path))), delimiter=delimiter)
    missing = {text_column, label_column} - set(reader.fieldnames or [])
    if missing:
        raise CorpusError(path, 1, f"header lacks column(s) {sorted(missing)}; found {reader.fieldnames}")
    rows = [(reader.line_num, row) for row in reader]
    tokenizer = spacy.blank(lang).tokenizer
    examples = []
    for (n, row), doc in zip(rows, tokenizer.pipe(row[text_column] or "" for _, row in rows)):
        if not row[label_column]:
            raise CorpusError(path, n, f"empty {label_column!r}")
        examples.append(
            Example(
                [t.text for t in doc],
                [bool(t.whitespace_) for t in doc],
                cats=(row[label_column],),
                source=f"{path}:{n}",
            )
        )
    return nonempty(examples, path)


def cats_from_json(cats) -> tuple[str, ...] | None:
    if cats is None:
        return None
    return tuple(k for k, v in cats.items() if v >= 0.5) if isinstance(cats, dict) else tuple(cats)


def read_jsonl(path, lang: str = "en") -> list[Example]:
    nlp = None
    examples = []
    for n, line in enumerate(read_text(path), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise CorpusError(path, n, f"invalid JSON: {err.msg} at column {err.colno}") from None
        if "tokens" in obj:
            words, spaces, ents = obj["tokens"], obj.get("spaces"), obj.get("ents")
            if ents is not None:
                ents = [tuple(e) for e in ents]
                bad = [e for e in ents if not 0 <= e[0] < e[1] <= len(words)]
                if bad:
                    raise CorpusError(path, n, f"entity {list(bad[0])} outside the {len(words)} tokens")
        elif "text" in obj:
            if nlp is None:
                import spacy

                nlp = spacy.blank(lang)
            doc = nlp.make_doc(obj["text"])
            words, spaces = [t.text for t in doc], [bool(t.whitespace_) for t in doc]
            ents = None if obj.get("ents") is None else [char_span(doc, e, path, n) for e in obj["ents"]]
        else:
            raise CorpusError(path, n, "needs a 'text' or a 'tokens' field")
        try:
            examples.append(
                Example(
                    words,
                    spaces,
                    obj.get("tags"),
                    ents,
                    cats_from_json(obj.get("cats")),
                    obj.get("id"),
                    f"{path}:{n}",
                )
            )
        except ValueError as err:
            raise CorpusError(path, n, str(err).split(": ", 1)[-1]) from None
    return nonempty(examples, path)


def char_span(doc, ent, path, n) -> tuple[int, int, str]:
    start, end, label = ent
    if not 0 <= start < end <= len(doc.text):
        raise CorpusError(path, n, f"entity {list(ent)} outside the text ({len(doc.text)} characters)")
    span = doc.char_span(start, end, label=label, alignment_mode="strict")
    if span is None:
        raise CorpusError(
            path, n, f"entity {list(ent)} {doc.text[start:end]!r} does not align with token boundaries"
        )
    return span.start, span.end, label


def read_docbin(path, tag_attr: str = "pos", lang: str = "en") -> list[Example]:
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
    if format not in READERS:
        raise ValueError(f"{path}: unknown corpus format {format!r}; use one of {sorted(READERS)}")
    return READERS[format](path, **options)


def fingerprint(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
