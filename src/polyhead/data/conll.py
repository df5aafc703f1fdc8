"""CoNLL-U and one-token-per-line column formats, parsed from decoded lines (readers.py opens the files)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from polyhead.data.schema import CorpusError, Example, Gold, find_cycle, is_feats, word_defect
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


# What a CoNLL-U corpus's `tasks` may read, per task: a word column (tags: UPOS, XPOS, FEATS, DEPREL, MISC;
# lemmas: LEMMA), the tree (HEAD + DEPREL), or the sentence's category (cats, from the cat_from option).
# "tags" is the column the tag_column option names (tasks given as a list: [tagger, parser, textcat]).
WORD_FIELDS = {
    "upos": "tags",
    "xpos": "tags",
    "feats": "feats",
    "deprel": "tags",
    "misc": "tags",
    "lemma": "lemmas",
}
CONLLU_FIELDS = (*WORD_FIELDS, "tags", "tree", "cats")


def parse_conllu(
    lines: list[str],
    path,
    tag_column: str = "upos",
    cat_from: str | None = None,
    cat_key: str = "genre",
    cat_prefix_separator: str = "-",
    head_column: str | None = None,
    deprel_column: str | None = None,
    fields: tuple[str, ...] | None = None,
) -> list[Example]:
    """Sentences of a CoNLL-U file with the `fields` asked for (CONLLU_FIELDS; None: the tag_column as
    "tags", the tree when `head_column` and `deprel_column` name columns, the category with cat_from).
    Multiword tokens and empty nodes are skipped: words are the integer ids 1..n, which is what HEAD
    numbers, so a tree's heads index Example.words. "_" in XPOS or LEMMA (of a word other than "_") leaves
    that word unannotated; in UPOS it is an error; in FEATS it is the empty feature bundle."""
    for option, column in (
        ("tag_column", tag_column),
        ("head_column", head_column),
        ("deprel_column", deprel_column),
    ):
        if column is not None and column not in CONLLU_COLUMNS:
            raise ValueError(f"unknown CoNLL-U column {column!r} ({option}); use one of {CONLLU_COLUMNS}")
    if (head_column is None) != (deprel_column is None):
        raise ValueError("head_column and deprel_column go together: give both (head, deprel) or neither")
    if fields is None:
        fields = ("tags", *(("tree",) if deprel_column else ()), *(("cats",) if cat_from else ()))
    unknown = [f for f in fields if f not in CONLLU_FIELDS]
    if unknown:
        raise ValueError(f"{path}: CoNLL-U has no field {unknown[0]!r}; a task reads one of {CONLLU_FIELDS}")
    if "cats" in fields and cat_from is None:
        raise ValueError(
            f"{path}: a task reads 'cats': say where from (options: {{cat_from: sent_id_prefix}})"
        )
    columns = {
        f: CONLLU_COLUMNS.index(tag_column if f == "tags" else f) for f in fields if f not in ("tree", "cats")
    }
    head = CONLLU_COLUMNS.index(head_column or "head")
    deprel = CONLLU_COLUMNS.index(deprel_column or "deprel")
    examples = []
    for block in blocks(lines):
        meta, sentence = conllu_sentence(block, path, head)
        if not sentence.words:
            continue
        gold, extra = {}, {}
        for name, column in columns.items():
            label = CONLLU_COLUMNS[column]
            value, unknown_upos = word_column(sentence, column, label, path)
            if value is not None:
                gold[name] = Gold(WORD_FIELDS.get(label, "tags"), value)
            if unknown_upos:
                extra["unknown_upos"] = unknown_upos
        if "tree" in fields:
            heads, deps, roots = conllu_tree(sentence, deprel, path)
            if heads is not None:
                gold["tree"] = Gold("tree", (heads, deps))
            if len(roots) > 1:
                extra["extra_roots"] = roots[1:]  # lines of the roots after the first
        if "cats" in fields:
            cats = conllu_cats(meta, cat_from, cat_key, cat_prefix_separator, path, block[0][0])
            gold["cats"] = Gold("cats", cats)
        source = f"{path}:{block[0][0]}"
        examples.append(Example(sentence.words, sentence.spaces, gold, meta.get("sent_id"), source, extra))
    return examples


def word_column(sentence: Sentence, column: int, name: str, path) -> tuple[list | None, list[int]]:
    """One label per word from `column` (None for a word left unannotated by "_"; None for the whole
    sentence when every word is) and the (line, tag) of UPOS tags that are none of UD's 17."""
    values, unknown = [], []
    for (n, cols), word in zip(sentence.rows, sentence.words):
        value = cols[column]
        if value == "" or (value == "_" and name == "upos"):
            raise CorpusError(path, n, f"empty {name} tag" if name != "lemma" else "empty lemma")
        if name == "upos" and value not in UPOS:
            unknown.append((n, value))
        elif name == "feats":
            check_feats(value, path, n)
        unannotated = value == "_" and name in ("xpos", "deprel", "misc", "lemma") and word != "_"
        values.append(None if unannotated else value)
    return (None if all(v is None for v in values) else values), unknown


def check_feats(value: str, path, n: int) -> None:
    if not is_feats(value):
        raise CorpusError(path, n, f"FEATS {value!r} is not Feature=Value pairs joined by '|' (or '_')")


@dataclass
class Sentence:
    """What one CoNLL-U sentence has read so far, and the id checks' state."""

    words: list[str] = field(default_factory=list)
    spaces: list[bool] = field(default_factory=list)
    rows: list[tuple[int, list[str]]] = field(default_factory=list)  # (line, its 10 columns) of every word
    heads: list[tuple[int, str]] = field(default_factory=list)  # (line, HEAD) of every word
    mwt: tuple[int, int, int, bool] = (0, 0, 0, True)  # line, first and last word, space of the open range
    empty: tuple[int, int] = (0, 0)  # word an empty node follows, its last decimal part


def conllu_sentence(block, path, head: int) -> tuple[dict, Sentence]:
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
            word_id, (_, _, mwt_end, mwt_space) = len(sent.words) + 1, sent.mwt
            sent.words.append(cols[1])
            sent.spaces.append(space if word_id > mwt_end else word_id == mwt_end and mwt_space)
            sent.rows.append((n, cols))
            sent.heads.append((n, cols[head]))
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


def conllu_tree(sent: Sentence, deprel: int, path) -> tuple[list[int] | None, list[str] | None, list[int]]:
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
    deps = [cols[deprel] for _, cols in sent.rows]
    for (n, _), dep in zip(sent.heads, deps):
        if dep in ("", "_"):
            raise CorpusError(path, n, f"empty DEPREL {dep!r} for a word with a HEAD")
    cycle = find_cycle(heads)
    if cycle:
        path_text = " -> ".join(map(str, cycle))
        raise CorpusError(path, sent.heads[cycle[0] - 1][0], f"HEAD makes a cycle ({path_text}): not a tree")
    roots = [n for (n, _), head in zip(sent.heads, heads) if head == 0]
    return heads, deps, roots


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
    fields: tuple[str, ...] | None = None,
) -> list[Example]:
    """One token per line (CoNLL-2003, WNUT, UNER, any `word POS chunk NER` layout). A task reads one
    field: "<column>" is one tag per word from that column (0-based, -1 the last), "<column>:<scheme>"
    entity spans from its IOB/BILUO tags; "spans" (the default) is tag_column read with `scheme`.

    IOB tags are read as conlleval reads them unless `strict`; each example lists the lines of the
    tags read that way in meta["repaired_tags"]."""
    fields = fields or ("spans",)
    plan = {name: column_field(name, tag_column, scheme, path) for name in fields}
    needed = max(2, *(c + 1 if c >= 0 else -c for c in (word_column, *(c for c, _ in plan.values()))))
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
        lines_of, repairs, gold = [n for n, _ in rows], [], {}  # repairs: tags read as opening an entity
        for name, (column, span_scheme) in plan.items():
            tags = [cols[column].strip() for _, cols in rows]
            if span_scheme is None:
                for n, tag in zip(lines_of, tags):
                    if not tag:
                        raise CorpusError(path, n, f"empty tag in column {column}")
                gold[name] = Gold("tags", tags)
                continue
            spans = tags_to_spans(
                tags, span_scheme, path=str(path), lines=lines_of, strict=strict, repairs=repairs
            )
            gold[name] = Gold("spans", spans)
        meta = {"repaired_tags": sorted({lines_of[i] for i in repairs})} if repairs else {}
        if "" in words:
            words, gold = drop_empty_words(words, gold, lines_of, path)
            meta["dropped_empty_words"] = len(rows) - len(words)
        if words:
            source = f"{path}:{rows[0][0]}"
            examples.append(Example(words, gold=gold, id=sent_id, source=source, meta=meta))
    return examples


def column_field(name: str, tag_column: int, scheme: str, path) -> tuple[int, str | None]:
    """(column, scheme) a column-file task reads: scheme None for one tag per word."""
    if name == "spans":
        return tag_column, scheme
    column, _, span_scheme = str(name).partition(":")
    try:
        return int(column), (span_scheme or None)
    except ValueError:
        why = "a task reads '<column>' (tags), '<column>:<scheme>' (entities, e.g. '3:iob2') or 'spans'"
        raise ValueError(f"{path}: column field {name!r} is not a column number; {why}") from None


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


def drop_empty_words(words: list[str], gold: dict, lines: list[int], path) -> tuple[list[str], dict]:
    """Drop empty words outside entities (BTC has a few "\\tO" lines), shifting entity offsets to match."""
    dropped = list(itertools.accumulate(w == "" for w in words))  # empty words up to and including i
    out = {}
    for name, (kind, value) in gold.items():
        if kind == "tags":
            out[name] = Gold(kind, [tag for tag, word in zip(value, words) if word])
            continue
        for start, end, _ in value:
            if "" in words[start:end]:
                raise CorpusError(
                    path, lines[start + words[start:end].index("")], "empty word inside an entity"
                )
        shifted = [(start - dropped[start], end - dropped[end - 1], label) for start, end, label in value]
        out[name] = Gold(kind, shifted)
    return [w for w in words if w], out
