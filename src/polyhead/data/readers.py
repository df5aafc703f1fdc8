"""The only code that opens corpus files: CoNLL-U, IOB/BILUO columns, CSV/TSV, JSONL, JSON, lines, DocBin."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import zlib
from pathlib import Path

from polyhead.data.conll import UPOS, parse_columns, parse_conllu
from polyhead.data.jsonl import cats_from_json, json_lines, parse_jsonl
from polyhead.data.lines import parse_lines
from polyhead.data.schema import CorpusError, Example, Gold, field_gold, word_defect

__all__ = ["READERS", "fingerprint", "json_lines", "read_corpus", "read_text"]
log = logging.getLogger(__name__)
DOCBIN_RATIO, DOCBIN_FLOOR = 100, 64 << 20  # a DocBin may inflate to 100x its size (64 MiB at least)


def read_text(path, encoding: str = "utf-8") -> list[str]:
    """Lines of a text file (BOM stripped; LF, CRLF and old Mac CR endings, as Python's universal newlines);
    bad bytes, a NUL, a missing or an empty file raise CorpusError."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(path, None, "file not found")
    try:
        name = "UTF-8" if codecs.lookup(encoding).name == "utf-8" else encoding
    except LookupError:
        raise CorpusError(path, None, f"unknown encoding {encoding!r}") from None
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = universal_newlines(data[: err.start].decode(encoding, errors="replace")).count("\n") + 1
        raise CorpusError(
            path,
            line,
            f"not valid {name} (byte {data[err.start]:#04x}); give the file's encoding "
            "(options: {encoding: latin-1}, say) or re-encode it",
        ) from None
    text = universal_newlines(text.removeprefix("\ufeff"))
    if not text.strip():
        raise CorpusError(path, None, "empty file")
    nul = text.find("\0")
    if nul >= 0:
        why = "binary file (NUL character); UTF-16 text needs its encoding (options: {encoding: utf-16})"
        raise CorpusError(path, text.count("\n", 0, nul) + 1, why)
    return text.split("\n")  # not splitlines(): it splits on U+2028 too


def universal_newlines(text: str) -> str:
    """CRLF and lone CR line endings as LF: a CR-only block is lines, not one line ending in CRs."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def checked(examples: list[Example], path) -> list[Example]:
    """The examples, or a CorpusError when there are none or a word is no word (see word_defect)."""
    if not examples:
        raise CorpusError(path, None, "no examples found")
    for ex in examples:
        for i, word in enumerate(ex.words, 1):
            if defect := word_defect(word):
                raise ex.error(f"word {i} {word!r} {defect}")
    return examples


def read_csv(
    path,
    text_column: str = "text",
    label_column: str = "label",
    delimiter: str = ",",
    lang: str = "en",
    encoding: str = "utf-8",
) -> list[Example]:
    """One text and one label per row (header required), tokenised by spaCy; TSV is delimiter="\\t"."""
    import spacy

    rows = csv_rows(read_text(path, encoding), path, delimiter, (text_column, label_column))
    tokenizer = spacy.blank(lang).tokenizer
    examples = []
    for (n, row), doc in zip(rows, tokenizer.pipe(row[text_column] for _, row in rows)):
        for column in (text_column, label_column):
            if not row[column].strip():
                raise CorpusError(path, n, f"empty {column!r}")
        examples.append(
            Example(
                [t.text for t in doc],
                [bool(t.whitespace_) for t in doc],
                gold=field_gold(cats=(row[label_column],)),
                source=f"{path}:{n}",
            )
        )
    return checked(examples, path)


def csv_rows(lines: list[str], path, delimiter: str, needed) -> list[tuple[int, dict]]:
    """(first line, {column: value}) of every row; a quote left open names the line where it opens."""
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except csv.Error as err:
        raise csv_defect(lines, path, 1, reader.line_num, f"malformed CSV header ({err})") from None
    missing = set(needed) - set(header)
    if missing:
        raise CorpusError(path, 1, f"header lacks column(s) {sorted(missing)}; found {header}")
    rows = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return rows
        except csv.Error as err:
            raise csv_defect(lines, path, start, reader.line_num, f"malformed CSV ({err})") from None
        if row and len(row) != len(header):
            why = f"{len(row)} fields where the header has {len(header)}"
            raise csv_defect(lines, path, start, reader.line_num, why)
        if row:
            rows.append((start, dict(zip(header, row))))


def csv_defect(lines: list[str], path, start: int, end: int, why: str) -> CorpusError:
    """A row that runs over several lines means a quote opened and never closed: name where it opens."""
    inside, opened = False, None
    for n in range(start, min(end, len(lines)) + 1):
        was_inside, inside = inside, inside ^ (lines[n - 1].count('"') % 2 == 1)
        opened = n if inside and not was_inside else opened
    if opened is None or end <= start:
        return CorpusError(path, start, why)
    return CorpusError(path, opened, f"a quote opened on this line is never closed (row runs to line {end})")


def read_conllu(
    path,
    tag_column: str = "upos",
    cat_from: str | None = None,
    cat_key: str = "genre",
    cat_prefix_separator: str = "-",
    encoding: str = "utf-8",
    head_column: str | None = None,
    deprel_column: str | None = None,
    fields: tuple[str, ...] | None = None,
) -> list[Example]:
    """Sentences of a CoNLL-U file with the fields its tasks read (conll.CONLLU_FIELDS: upos, xpos, feats,
    lemma, tree, cats...); by default tag_column as tags and, with head_column: head and deprel_column:
    deprel, dependency trees."""
    lines = read_text(path, encoding)
    examples = parse_conllu(
        lines, path, tag_column, cat_from, cat_key, cat_prefix_separator, head_column, deprel_column, fields
    )
    extra = [n for ex in examples for n in ex.meta.get("extra_roots", ())]
    what = "sentence(s) with more than one root word, kept as given (the parser predicts one root per text)"
    warn_places(path, sum("extra_roots" in ex.meta for ex in examples), what, extra)
    warn_unknown_upos(path, examples)
    return checked(examples, path)


def warn_unknown_upos(path, examples: list[Example]) -> None:
    """A `tag_column: upos` corpus with tags that are none of UD's 17 (a shifted column, a typo) is read as
    given, with one warning that names the tags and their first lines."""
    found = [place for ex in examples for place in ex.meta.get("unknown_upos", ())]
    lines, names = [n for n, _ in found], sorted({tag for _, tag in found})
    what = f"word(s) with a UPOS tag UD does not have ({', '.join(names[:5])}; UD's 17 are "
    what += f"{' '.join(sorted(UPOS))})"
    warn_places(path, len(lines), what, lines)


def warn_places(path, count: int, what: str, lines: list[int]) -> None:
    """One warning per file for input read in a way worth knowing: how many, what, the first places."""
    if lines:
        log.warning("%s: %d %s, first at %s", path, count, what, ", ".join(f"{path}:{n}" for n in lines[:5]))


def read_columns(
    path,
    scheme: str = "iob2",
    word_column: int = 0,
    tag_column: int = -1,
    separator: str | None = None,
    strict: bool = False,
    encoding: str = "utf-8",
    fields: tuple[str, ...] | None = None,
) -> list[Example]:
    """One token per line with tag and entity columns (CoNLL-2003, WNUT, UNER); IOB read as conlleval does.
    A task reads "<column>" as tags, "<column>:<scheme>" as entities, "spans" as tag_column with `scheme`."""
    lines = read_text(path, encoding)
    examples = parse_columns(lines, path, scheme, word_column, tag_column, separator, strict, fields)
    repaired = [n for ex in examples for n in ex.meta.get("repaired_tags", ())]
    what = "tag(s) that do not continue an entity read as opening one (as conlleval does; strict: true "
    what += "refuses them)"
    warn_places(path, len(repaired), what, repaired)
    return checked(examples, path)


def read_jsonl(path, lang: str = "en", encoding: str = "utf-8") -> list[Example]:
    """One JSON object a line: `text` (char-offset ents) or `tokens` (token-offset ents), tags, cats."""
    return checked(parse_jsonl(read_text(path, encoding), path, lang), path)


def read_json(
    path,
    records: str,
    text_field: str | int = "text",
    label_field: str | int = "label",
    lang: str = "en",
    encoding: str = "utf-8",
) -> list[Example]:
    """One JSON document holding a list of records (CLINC150's data_full.json: {"train": [[text, label],
    ...], "val": ..., "test": ...}): `records` names the list (a key, or keys joined by "."), each record
    an object with `text_field` and `label_field` or a list indexed by them (0 and 1); its label as cats."""
    import spacy

    try:
        document = json.loads("\n".join(read_text(path, encoding)))
    except json.JSONDecodeError as err:
        raise CorpusError(path, err.lineno, f"invalid JSON: {err.msg} at column {err.colno}") from None
    except RecursionError:
        raise CorpusError(path, None, "JSON nested too deeply") from None
    found = document
    for key in str(records).split("."):
        if not isinstance(found, dict) or key not in found:
            keys = sorted(found) if isinstance(found, dict) else type(found).__name__
            raise CorpusError(path, None, f"records={records!r}: no key {key!r} (found {keys})")
        found = found[key]
    if not isinstance(found, list):
        raise CorpusError(
            path, None, f"records={records!r} is a {type(found).__name__}, not a list of records"
        )
    rows = []
    for i, record in enumerate(found):
        try:
            text, label = record[text_field], record[label_field]
        except (KeyError, IndexError, TypeError):
            why = f"has no {text_field!r} and {label_field!r} (options text_field, label_field)"
            raise CorpusError(path, None, f"{records}[{i}] {why}: {json.dumps(record)[:60]}") from None
        if not (isinstance(text, str) and text.strip() and isinstance(label, str) and label.strip()):
            raise CorpusError(path, None, f"{records}[{i}]: text and label must be non-empty strings")
        rows.append((i, text, label))
    tokenizer = spacy.blank(lang).tokenizer
    examples = [
        Example(
            [t.text for t in doc],
            [bool(t.whitespace_) for t in doc],
            field_gold(cats=(label,)),
            source=f"{path}:{records}[{i}]",
        )
        for (i, _, label), doc in zip(rows, tokenizer.pipe(text for _, text, _ in rows))
    ]
    return checked(examples, path)


def read_lines(path, encoding: str = "utf-8", **options) -> list[Example]:
    """One text a line with its label in front: `label text`, fastText `__label__X text`, or a regex."""
    return checked(parse_lines(read_text(path, encoding), path, **options), path)


def read_docbin(path, tag_attr: str = "pos", lang: str = "en") -> list[Example]:
    """Docs of a spaCy DocBin: fields pos, tag, morph, lemma (token attributes; "tags" is the one tag_attr
    names), spans (doc.ents), cats (score >= 0.5) and tree (token.head, token.dep_) where every token has a
    relation."""
    import spacy
    from spacy.tokens import DocBin

    if not Path(path).is_file():
        raise CorpusError(path, None, "file not found")
    data = Path(path).read_bytes()
    check_inflated_size(data, path)
    try:
        docs = list(DocBin().from_bytes(data).get_docs(spacy.blank(lang).vocab))
    except Exception as err:
        raise CorpusError(path, None, f"not a spaCy DocBin: {err}") from None
    examples = []
    for i, doc in enumerate(docs):
        parsed = doc.has_annotation("DEP", require_complete=True)
        gold = field_gold(
            None,
            [(e.start, e.end, e.label_) for e in doc.ents] if doc.has_annotation("ENT_IOB") else None,
            cats_from_json(doc.cats) if doc.cats else None,
            heads=[0 if t.head.i == t.i else t.head.i + 1 for t in doc] if parsed else None,
            deps=[t.dep_ for t in doc] if parsed else None,
        )
        for attr, kind in DOC_WORD_FIELDS.items():  # "" (not set) leaves a token unannotated
            values = [doc_value(t, attr) for t in doc]
            if any(values):
                gold[attr] = Gold(kind, [v or None for v in values])
        if tag_attr in gold:
            gold["tags"] = gold[tag_attr]
        words, spaces = [t.text for t in doc], [bool(t.whitespace_) for t in doc]
        examples.append(Example(words, spaces, gold, source=f"{path}:doc {i + 1}"))
    return checked(examples, path)


def doc_value(token, attr: str) -> str:
    """token.pos_ / tag_ / lemma_, or its FEATS string ("_" for a token whose empty morph was set)."""
    if attr == "morph":
        return (str(token.morph) or "_") if token.has_morph() else ""
    return getattr(token, f"{attr}_")


def check_inflated_size(data: bytes, path) -> None:
    """A DocBin is zlib data that spaCy inflates whole: measure it in 1 MiB steps first, and refuse one
    that inflates to more than DOCBIN_RATIO times its size (a decompression bomb, not a corpus)."""
    cap, inflater, size = max(DOCBIN_FLOOR, DOCBIN_RATIO * len(data)), zlib.decompressobj(), 0
    try:
        while data:
            size += len(inflater.decompress(data, 1 << 20))
            data = inflater.unconsumed_tail
            if size > cap:
                why = f"inflates to more than {cap >> 20} MiB ({DOCBIN_RATIO}x its size or 64 MiB at least)"
                raise CorpusError(path, None, f"not a spaCy DocBin polyhead reads: it {why}")
    except zlib.error as err:
        raise CorpusError(path, None, f"not a spaCy DocBin: {err}") from None


DOC_WORD_FIELDS = {"pos": "tags", "tag": "tags", "morph": "feats", "lemma": "lemmas"}  # token.<attr>_


READERS = {
    "conllu": read_conllu,
    "columns": read_columns,
    "csv": read_csv,
    "jsonl": read_jsonl,
    "docbin": read_docbin,
    "lines": read_lines,
    "json": read_json,
}


# The fields a reader gives whatever its tasks ask: those of schema.field_gold it finds in the file.
# conllu, columns take the fields their tasks name (they read and check those columns only).
ASKED = ("conllu", "columns")


def read_corpus(path, format: str, fields: tuple[str, ...] | None = None, **options) -> list[Example]:
    """Read a corpus file as Examples with the reader for `format` (a key of READERS); each Example's gold
    is keyed by field (a corpus's `tasks` maps task names to them): `fields` are those its tasks read."""
    if format not in READERS:
        raise ValueError(f"{path}: unknown corpus format {format!r}; use one of {sorted(READERS)}")
    return READERS[format](path, **options, **({"fields": fields} if format in ASKED else {}))


def fingerprint(path) -> str:
    """First 16 hex digits of the file's sha256, to tag a run with the exact data it used."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
