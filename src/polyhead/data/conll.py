"""CoNLL-U and one-token-per-line column formats, parsed from decoded lines (readers.py opens the files)."""

from __future__ import annotations

import itertools

from polyhead.data.schema import CorpusError, Example
from polyhead.data.spans import tags_to_spans

CONLLU_COLUMNS = ["id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc"]


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


def conllu_id(path, n: int, token_id: str) -> int | None:
    """The word's integer id; None for a multiword-token range ("1-2") or an empty node ("8.1")."""
    if token_id.isdigit():
        return int(token_id)
    first, sep, last = token_id.replace(".", "-").partition("-")
    if not (sep and first.isdigit() and last.isdigit()):
        raise CorpusError(path, n, f"token id {token_id!r} is not an integer, a range or a decimal")
    return None


def parse_conllu(
    lines: list[str],
    path,
    tag_column: str = "upos",
    cat_from: str | None = None,
    cat_key: str = "genre",
    cat_prefix_separator: str = "-",
) -> list[Example]:
    """Sentences of a CoNLL-U file with one column as tags; multiword tokens and empty nodes skipped."""
    if tag_column not in CONLLU_COLUMNS:
        raise ValueError(f"unknown CoNLL-U column {tag_column!r}; use one of {CONLLU_COLUMNS}")
    col = CONLLU_COLUMNS.index(tag_column)
    examples = []
    for block in blocks(lines):
        meta, words, spaces, tags = {}, [], [], []
        mwt_end, mwt_space = 0, True  # words inside a multiword token are not separated by spaces
        for n, line in block:
            if line.startswith("#"):
                key, _, value = line[1:].partition("=")
                meta[key.strip()] = value.strip()
                continue
            cols = line.split("\t")
            if len(cols) != 10:
                raise CorpusError(path, n, f"expected 10 tab-separated columns, found {len(cols)}")
            word_id = conllu_id(path, n, cols[0])
            space = "SpaceAfter=No" not in cols[9].split("|")
            if word_id is None:
                if "-" in cols[0]:
                    mwt_end, mwt_space = int(cols[0].partition("-")[2]), space
                continue
            if cols[col] == "" or (cols[col] == "_" and tag_column == "upos"):
                raise CorpusError(path, n, f"empty {tag_column} tag")
            words.append(cols[1])
            spaces.append(space if word_id > mwt_end else word_id == mwt_end and mwt_space)
            tags.append(cols[col])
        if words:
            cats = conllu_cats(meta, cat_from, cat_key, cat_prefix_separator, path, block[0][0])
            source = f"{path}:{block[0][0]}"
            examples.append(Example(words, spaces, tags, None, cats, meta.get("sent_id"), source))
    return examples


def conllu_cats(meta: dict, cat_from, cat_key: str, separator: str, path, n: int) -> tuple[str, ...] | None:
    """The sentence's category from its sent_id prefix or from a `# key = value` comment."""
    if cat_from is None:
        return None
    key = "sent_id" if cat_from == "sent_id_prefix" else cat_key
    if cat_from not in ("sent_id_prefix", "comment"):
        raise ValueError(f"cat_from must be None, 'sent_id_prefix' or 'comment', not {cat_from!r}")
    if not meta.get(key):
        raise CorpusError(path, n, f"sentence has no '# {key} = ...' comment")
    return (meta[key].split(separator)[0] if cat_from == "sent_id_prefix" else meta[key],)


def parse_columns(
    lines: list[str],
    path,
    scheme: str = "iob2",
    word_column: int = 0,
    tag_column: int = -1,
    separator: str | None = None,
) -> list[Example]:
    """One token per line with an entity tag column (CoNLL-2003, WNUT, UNER); tags decoded strictly."""
    needed = max(2, *(c + 1 if c >= 0 else -c for c in (word_column, tag_column)))
    examples = []
    lines = [("" if line.startswith("-DOCSTART-") else line) for line in lines]
    for block in blocks(lines):
        sent_id, rows = None, []
        for n, line in block:
            cols = line.split(separator)
            # "# sent_id = x" before the tokens is a comment; "#\tO" or "#tag O" is a token
            if not rows and line.startswith("#") and (len(cols) < 2 or " = " in line):
                key, _, value = line[1:].partition("=")
                sent_id = value.strip() if key.strip() == "sent_id" else sent_id
                continue
            if rows and len(cols) != len(rows[0][1]):
                raise CorpusError(
                    path, n, f"expected {len(rows[0][1])} columns like line {rows[0][0]}, found {len(cols)}"
                )
            if len(cols) < needed:
                raise CorpusError(path, n, f"expected at least {needed} columns, found {len(cols)}")
            rows.append((n, cols))
        if not rows:
            continue
        words = [cols[word_column].strip() for _, cols in rows]  # BTC has "word \tO"
        tags = [cols[tag_column].strip() for _, cols in rows]
        ents = tags_to_spans(tags, scheme, path=str(path), lines=[n for n, _ in rows])
        meta = {}
        if "" in words:
            words, ents = drop_empty_words(words, ents, [n for n, _ in rows], path)
            meta["dropped_empty_words"] = len(rows) - len(words)
        if words:
            source = f"{path}:{rows[0][0]}"
            examples.append(Example(words, ents=ents, id=sent_id, source=source, meta=meta))
    return examples


def drop_empty_words(words: list[str], ents: list, lines: list[int], path) -> tuple[list[str], list]:
    """Drop empty words outside entities (BTC has a few "\\tO" lines), shifting entity offsets to match."""
    for start, end, _ in ents:
        if "" in words[start:end]:
            raise CorpusError(path, lines[start + words[start:end].index("")], "empty word inside an entity")
    dropped = list(itertools.accumulate(w == "" for w in words))  # empty words up to and including i
    ents = [(start - dropped[start], end - dropped[end - 1], label) for start, end, label in ents]
    return [w for w in words if w], ents
