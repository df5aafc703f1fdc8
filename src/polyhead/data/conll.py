"""CoNLL-U and one-token-per-line column formats, parsed from decoded lines (readers.py opens the files)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from polyhead.data.schema import CorpusError, Example, find_cycle, word_defect
from polyhead.data.spans import tags_to_spans

CONLLU_COLUMNS = ["id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc"]
UPOS = frozenset(  # Universal Dependencies' 17 universal part-of-speech tags
    "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
)


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


def parse_conllu(
    lines: list[str],
    path,
    tag_column: str = "upos",
    cat_from: str | None = None,
    cat_key: str = "genre",
    cat_prefix_separator: str = "-",
    head_column: str | None = None,
    deprel_column: str | None = None,
) -> list[Example]:
    """Sentences of a CoNLL-U file with one column as tags and, when `head_column` and `deprel_column` name
    columns (head, deprel), dependency trees. Multiword tokens and empty nodes are skipped: words are the
    integer ids 1..n, which is what HEAD numbers, so Example.heads index Example.words."""
    for option, column in (
        ("tag_column", tag_column),
        ("head_column", head_column),
        ("deprel_column", deprel_column),
    ):
        if column is not None and column not in CONLLU_COLUMNS:
            raise ValueError(f"unknown CoNLL-U column {column!r} ({option}); use one of {CONLLU_COLUMNS}")
    if (head_column is None) != (deprel_column is None):
        raise ValueError("head_column and deprel_column go together: give both (head, deprel) or neither")
    columns = Columns(
        CONLLU_COLUMNS.index(tag_column),
        tag_column,
        CONLLU_COLUMNS.index(head_column or "head"),
        CONLLU_COLUMNS.index(deprel_column) if deprel_column else None,
    )
    examples = []
    for block in blocks(lines):
        meta, sentence = conllu_sentence(block, path, columns)
        if sentence.words:
            cats = conllu_cats(meta, cat_from, cat_key, cat_prefix_separator, path, block[0][0])
            words, spaces, tags = sentence.words, sentence.spaces, sentence.tags
            source = f"{path}:{block[0][0]}"
            heads, deps, roots = (
                conllu_tree(sentence, path) if columns.deprel is not None else (None, None, [])
            )
            extra = {"extra_roots": roots[1:]} if len(roots) > 1 else {}  # lines of the roots after the first
            extra |= {"unknown_upos": sentence.unknown_upos} if sentence.unknown_upos else {}
            examples.append(
                Example(words, spaces, tags, None, cats, meta.get("sent_id"), source, extra, heads, deps)
            )
    return examples


@dataclass(frozen=True)
class Columns:
    """Indices of the columns a CoNLL-U sentence is read from."""

    tag: int
    tag_name: str
    head: int
    deprel: int | None  # None: no trees are read


@dataclass
class Sentence:
    """What one CoNLL-U sentence has read so far, and the id checks' state."""

    words: list[str] = field(default_factory=list)
    spaces: list[bool] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    heads: list[tuple[int, str]] = field(default_factory=list)  # (line, HEAD) of every word
    deprels: list[str] = field(default_factory=list)  # DEPREL of every word, when trees are read
    mwt: tuple[int, int, int, bool] = (0, 0, 0, True)  # line, first and last word, space of the open range
    empty: tuple[int, int] = (0, 0)  # word an empty node follows, its last decimal part
    unknown_upos: list[int] = field(default_factory=list)  # lines of UPOS tags that are none of UD's 17


def conllu_sentence(block, path, columns: Columns) -> tuple[dict, Sentence]:
    """The `# key = value` comments and the checked words of one sentence block."""
    meta, sent = {}, Sentence()
    for n, line in block:
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            meta[key.strip()] = value.strip()
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise CorpusError(path, n, f"expected 10 tab-separated columns, found {len(cols)}")
        if cols[1] == "":
            raise CorpusError(path, n, f"token {cols[0]} has an empty FORM (column 2)")
        if defect := word_defect(cols[1]):
            raise CorpusError(path, n, f"token {cols[0]}'s FORM {cols[1]!r} {defect}")
        space = "SpaceAfter=No" not in cols[9].split("|")
        if conllu_id(path, n, cols[0], sent, space):
            tag = cols[columns.tag]
            if tag == "" or (tag == "_" and columns.tag_name == "upos"):
                raise CorpusError(path, n, f"empty {columns.tag_name} tag")
            if columns.tag_name == "upos" and tag not in UPOS:
                sent.unknown_upos.append(n)
            word_id, (_, _, mwt_end, mwt_space) = len(sent.words) + 1, sent.mwt
            sent.words.append(cols[1])
            sent.spaces.append(space if word_id > mwt_end else word_id == mwt_end and mwt_space)
            sent.tags.append(tag)
            sent.heads.append((n, cols[columns.head]))
            if columns.deprel is not None:
                sent.deprels.append(cols[columns.deprel])
    check_sentence_end(sent, path)
    return meta, sent


def conllu_id(path, n: int, token_id: str, sent: Sentence, space: bool) -> bool:
    """Check the id column against the sentence so far; True for a word, False for a range or empty node."""
    last = len(sent.words)
    if token_id.isdigit():
        if int(token_id) != last + 1:
            raise CorpusError(path, n, f"token id {token_id} out of order: expected {last + 1}")
        return True
    first, sep, end = token_id.replace(".", "-").partition("-")
    if not (sep and first.isdigit() and end.isdigit()):
        raise CorpusError(path, n, f"token id {token_id!r} is not an integer, a range or a decimal")
    first, end = int(first), int(end)
    if "." in token_id:  # an empty node N.M follows word N (N = 0 before the first word), M = 1, 2, ...
        expected = sent.empty[1] + 1 if sent.empty[0] == last else 1
        if first != last or end != expected:
            raise CorpusError(path, n, f"empty node {token_id} out of order: expected {last}.{expected}")
        sent.empty = (last, end)
        return False
    if first != last + 1 or end <= first:
        why = "ends before it starts" if end <= first else f"should start at the next word, {last + 1}"
        raise CorpusError(path, n, f"multiword token range {token_id} {why}")
    if sent.mwt[2] > last:
        why = f"opens inside the range on line {sent.mwt[0]}"
        raise CorpusError(path, n, f"multiword token range {token_id} {why}")
    sent.mwt = (n, first, end, space)
    return False


def check_sentence_end(sent: Sentence, path) -> None:
    """Every multiword range is complete, every numeric HEAD names a word of the sentence (or 0)."""
    line, first, end, _ = sent.mwt
    if end > len(sent.words):
        why = f"covers words the sentence lacks (it has {len(sent.words)})"
        raise CorpusError(path, line, f"multiword token range {first}-{end} {why}")
    for i, (n, head) in enumerate(sent.heads, 1):
        if head == "_":
            continue
        if not head.isdigit() or int(head) > len(sent.words):
            why = f"is not 0 or a word id of this sentence (1-{len(sent.words)})"
            raise CorpusError(path, n, f"HEAD {head!r} of word {i} {why}")
        if int(head) == i:
            raise CorpusError(path, n, f"word {i} is its own HEAD")


def conllu_tree(sent: Sentence, path) -> tuple[list[int] | None, list[str] | None, list[int]]:
    """HEAD and DEPREL of a sentence (None, None when every HEAD is "_": not annotated, masked) and the lines
    of its root words. A partial tree, an empty relation or a cycle is a CorpusError naming the word's line.

    More than one root is accepted (UD asks for one, other dependency treebanks allow several): the caller
    warns, training learns every arc as given, and the decoder still predicts one root per text."""
    given = [head != "_" for _, head in sent.heads]
    if not any(given):
        return None, None, []
    if not all(given):
        n = sent.heads[given.index(False)][0]
        raise CorpusError(path, n, "HEAD '_' in a sentence whose other words have heads (a partial tree)")
    heads = [int(head) for _, head in sent.heads]
    for (n, _), deprel in zip(sent.heads, sent.deprels):
        if deprel in ("", "_"):
            raise CorpusError(path, n, f"empty DEPREL {deprel!r} for a word with a HEAD")
    cycle = find_cycle(heads)
    if cycle:
        path_text = " -> ".join(map(str, cycle))
        raise CorpusError(path, sent.heads[cycle[0] - 1][0], f"HEAD makes a cycle ({path_text}): not a tree")
    roots = [n for (n, _), head in zip(sent.heads, heads) if head == 0]
    return heads, list(sent.deprels), roots


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
    strict: bool = False,
) -> list[Example]:
    """One token per line with an entity tag column (CoNLL-2003, WNUT, UNER).

    IOB tags are read as conlleval reads them unless `strict`; each example lists the lines of the
    tags read that way in meta["repaired_tags"]."""
    needed = max(2, *(c + 1 if c >= 0 else -c for c in (word_column, tag_column)))
    examples = []
    lines = [("" if line.startswith("-DOCSTART-") else line) for line in lines]
    for block in blocks(lines):
        sent_id, rows = column_rows(block, path, separator, needed)
        if not rows:
            continue
        words = [cols[word_column].strip() for _, cols in rows]  # BTC has "word \tO"
        for (n, _), word in zip(rows, words):
            if word and (defect := word_defect(word)):
                raise CorpusError(path, n, f"word {word!r} {defect}")
        tags = [cols[tag_column].strip() for _, cols in rows]
        lines_of, repairs = [n for n, _ in rows], []  # repairs: indices of tags read as opening an entity
        ents = tags_to_spans(tags, scheme, path=str(path), lines=lines_of, strict=strict, repairs=repairs)
        meta = {"repaired_tags": [lines_of[i] for i in repairs]} if repairs else {}
        if "" in words:
            words, ents = drop_empty_words(words, ents, lines_of, path)
            meta["dropped_empty_words"] = len(rows) - len(words)
        if words:
            source = f"{path}:{rows[0][0]}"
            examples.append(Example(words, ents=ents, id=sent_id, source=source, meta=meta))
    return examples


def column_rows(block, path, separator: str | None, needed: int) -> tuple[str | None, list]:
    """The block's `# sent_id = ...` and its (line, columns) rows, all with the same number of columns."""
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
    return sent_id, rows


def drop_empty_words(words: list[str], ents: list, lines: list[int], path) -> tuple[list[str], list]:
    """Drop empty words outside entities (BTC has a few "\\tO" lines), shifting entity offsets to match."""
    for start, end, _ in ents:
        if "" in words[start:end]:
            raise CorpusError(path, lines[start + words[start:end].index("")], "empty word inside an entity")
    dropped = list(itertools.accumulate(w == "" for w in words))  # empty words up to and including i
    ents = [(start - dropped[start], end - dropped[end - 1], label) for start, end, label in ents]
    return [w for w in words if w], ents
