"""JSON-lines corpora, parsed from decoded lines (readers.py opens the files): fields, aliases, checks."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from polyhead.data.schema import KINDS, CorpusError, Example, Gold, field_gold, is_feats

log = logging.getLogger(__name__)
TOO_DEEP = "JSON nested too deeply: a corpus line is an object of plain lists and values"

FIELDS = ("text", "tokens", "spaces", "tags", "ents", "cats", "id", "heads", "deps", "tasks")
ALIASES = {  # other tools' names for the same thing: spaCy / doccano "entities", Prodigy "spans", ...
    "entities": "ents",
    "spans": "ents",
    "label": "cats",
    "labels": "cats",
}


def json_lines(numbered_lines, path) -> Iterator[tuple[int, object]]:
    """(line number, parsed JSON) of every non-blank line; bad JSON is a CorpusError naming the line."""
    for n, line in numbered_lines:
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as err:
            raise CorpusError(path, n, f"invalid JSON: {err.msg} at column {err.colno}") from None
        except RecursionError:
            raise CorpusError(path, n, TOO_DEEP) from None


def parse_jsonl(lines: list[str], path, lang: str = "en") -> list[Example]:
    """One JSON object a line: `text` (char-offset ents) or `tokens` (token-offset ents), tags, cats, and
    `tasks`: {task: {kind: value}}, any number of named tasks of any kind (what `polyhead.prepare` writes:
    `{"upos": {"tags": ["DET", ...]}, "lemma": {"lemmas": [...]}, "parser": {"tree": [[2, 0], ["det",
    "root"]]}}`), each a field of its own name."""
    nlp, examples, unread = None, [], {}
    for n, obj in json_lines(enumerate(lines, 1), path):
        if not isinstance(obj, dict) or not ("tokens" in obj or "text" in obj):
            raise CorpusError(path, n, "expected an object with a 'text' or a 'tokens' field")
        for key in obj.keys() - {*FIELDS, *ALIASES}:
            unread.setdefault(key, n)
        if "tokens" not in obj and nlp is None:
            import spacy

            nlp = spacy.blank(lang)
        try:
            examples.append(json_example(canonical_fields(obj), nlp, f"{path}:{n}"))
        except (TypeError, ValueError) as err:  # Example's length checks, malformed fields
            raise CorpusError(path, n, str(err).split(f"{path}:{n}: ", 1)[-1]) from None
        except RecursionError:  # nested almost as deep as json.loads allows: quoting a field recursed
            raise CorpusError(path, n, TOO_DEEP) from None
    if unread:
        where = ", ".join(f"{key!r} (first on line {n})" for key, n in sorted(unread.items()))
        log.warning("%s: ignoring field(s) polyhead does not read: %s", path, where)
    return examples


def canonical_fields(obj: dict) -> dict:
    """The object with aliases renamed (`entities` -> `ents`, `label` -> `cats`); two names for one: error."""
    out, given = {}, {}
    for key, value in obj.items():
        name = ALIASES.get(key, key)
        if name not in FIELDS:
            continue
        if name in out:
            raise ValueError(f"fields {given[name]!r} and {key!r} both give {name!r}: keep one")
        if name == "cats" and isinstance(value, list) and any(isinstance(v, list) for v in value):
            raise ValueError(f"{key!r} holds spans {json.dumps(value)[:40]}: name entity offsets 'entities'")
        out[name], given[name] = ([value] if key == "label" and isinstance(value, str) else value), key
    return out


def json_example(obj: dict, nlp, source: str) -> Example:
    """An Example from one JSONL object; `nlp` tokenises `text` when there are no `tokens`."""
    ents = entity_triples(obj.get("ents"))
    if "tokens" in obj:
        words = string_list(obj, "tokens")
        spaces = obj.get("spaces")
        if isinstance(obj.get("text"), str):  # both: the tokens must spell the text
            spaces = spaces_from_text(obj["text"], words) if spaces is None else spaces
        elif "text" in obj:
            raise ValueError(f"'text' must be a string, not {type(obj['text']).__name__}")
    else:
        if not isinstance(obj["text"], str):
            raise ValueError(f"'text' must be a string, not {type(obj['text']).__name__}")
        doc = nlp.make_doc(obj["text"])
        words, spaces = [t.text for t in doc], [bool(t.whitespace_) for t in doc]
        if ents is not None:
            ents = [char_span(doc, start, end, label) for start, end, label in ents]
    if spaces is not None and not (isinstance(spaces, list) and all(isinstance(s, bool) for s in spaces)):
        raise ValueError("'spaces' must be a list of true/false")
    if ents is not None:
        check_spans(sorted(ents), len(words))
    tags = string_list(obj, "tags") if obj.get("tags") is not None else None
    id_ = None if obj.get("id") is None else str(obj["id"])
    heads, deps = tree(obj)
    cats = cats_from_json(obj.get("cats"))
    gold = field_gold(tags, ents, cats, heads, deps)
    for task, found in named_tasks(obj.get("tasks"), len(words)).items():
        if task in gold:
            raise ValueError(f"task {task!r} in 'tasks' is also a field of the line: rename the task")
        gold[task] = found
    return Example(words, spaces, gold, id_, source)


def named_tasks(tasks, n_words: int) -> dict[str, Gold]:
    """`tasks`: {task: {kind: value}} -> {task: Gold(kind, value)}, each value checked as its kind's."""
    if tasks is None:
        return {}
    if not isinstance(tasks, dict):
        raise ValueError(f"'tasks' must be an object {{task: {{kind: value}}}}, not {json.dumps(tasks)[:60]}")
    out = {}
    for task, given in tasks.items():
        if not (isinstance(given, dict) and len(given) == 1 and next(iter(given)) in KINDS):
            raise ValueError(
                f"task {task!r} must be {{kind: value}} with one kind of {', '.join(KINDS)}, "
                f"not {json.dumps(given)[:60]}"
            )
        kind, value = next(iter(given.items()))
        out[task] = Gold(kind, kind_value(kind, value, f"task {task!r}", n_words))
    return out


def kind_value(kind: str, value, where: str, n_words: int):
    """A JSON value as the value of `kind` (schema.KINDS), with the checks the kind's own field has."""
    if value is None:
        raise ValueError(f"{where}: {kind} is null; leave the task out of a line it does not annotate")
    if kind in ("tags", "feats", "lemmas"):
        if not isinstance(value, list) or not all(v is None or isinstance(v, str) for v in value):
            raise ValueError(f"{where}: {kind} must be a list of strings (null: not annotated)")
        for v in value if kind == "feats" else ():
            if v is not None and not is_feats(v):
                raise ValueError(f"{where}: {v!r} is not Feature=Value pairs joined by '|' (or '_')")
        return list(value)
    if kind == "spans":
        spans = sorted(entity_triples(value))
        check_spans(spans, n_words)
        return spans
    if kind == "cats":
        return cats_from_json(value)
    if not (isinstance(value, list) and len(value) == 2):
        raise ValueError(f"{where}: a tree is [heads, deps], not {json.dumps(value)[:60]}")
    heads, deps = tree({"heads": value[0], "deps": value[1]})
    return list(heads), deps


def tree(obj: dict) -> tuple[list[int] | None, list[str] | None]:
    """`heads` (CoNLL-U numbers: 0 = root, k = the k-th token) and `deps`; Example checks they form a tree."""
    heads = obj.get("heads")
    if heads is not None and not (isinstance(heads, list) and all(type(h) is int for h in heads)):
        raise ValueError(
            f"'heads' must be a list of integers (0 = root, k = token k), not {json.dumps(heads)[:60]}"
        )
    return heads, string_list(obj, "deps") if obj.get("deps") is not None else None


def string_list(obj: dict, key: str) -> list[str]:
    value = obj[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key!r} must be a list of strings, not {json.dumps(value)[:60]}")
    return value


def entity_triples(ents) -> list[tuple[int, int, str]] | None:
    """[start, end, label] lists or {start, end, label} objects (doccano: start_offset/end_offset)."""
    if ents is None:
        return None
    if not isinstance(ents, list):
        raise ValueError(f"entities must be a list of [start, end, label], not {json.dumps(ents)[:60]}")
    out = []
    for ent in ents:
        if isinstance(ent, dict):
            start, end = ent.get("start", ent.get("start_offset")), ent.get("end", ent.get("end_offset"))
            ent = [start, end, ent.get("label")]
        if not isinstance(ent, list) or len(ent) != 3:
            count = "not enough" if isinstance(ent, list) and len(ent) < 3 else "too many"
            why = f"has {count} values" if isinstance(ent, list) else "is not a list"
            raise ValueError(f"entity {json.dumps(ent)} {why}: expected [start, end, label]")
        start, end, label = ent
        if not (type(start) is int and type(end) is int and isinstance(label, str) and label):
            raise ValueError(f"entity {json.dumps(ent)} is not [start, end, label] (integers and a label)")
        out.append((start, end, label))
    return out


def cats_from_json(cats) -> tuple[str, ...] | None:
    """Positive labels from a {label: score} dict (score >= 0.5) or a list of labels."""
    if cats is None:
        return None
    if isinstance(cats, dict):
        for label, score in cats.items():
            if isinstance(score, bool) or not isinstance(score, int | float):
                raise ValueError(f"cats score of {label!r} is {json.dumps(score)}, not a number")
        return tuple(k for k, v in cats.items() if v >= 0.5)
    if not isinstance(cats, list | tuple) or not all(isinstance(c, str) for c in cats):
        raise ValueError(
            f'cats is {json.dumps(cats)[:60]}: give a list of labels (["pos"]) or scores ({{"pos": 1.0}})'
        )
    return tuple(cats)


def spaces_from_text(text: str, words: list[str]) -> list[bool]:
    """Whether whitespace follows each token in `text`; tokens that do not spell the text are an error."""
    spaces, pos = [], 0
    for i, word in enumerate(words):
        start = len(text) - len(text[pos:].lstrip())
        if not text.startswith(word, start):
            raise ValueError(f"token {i + 1} {word!r} does not match the text at character {start}")
        pos = start + len(word)
        spaces.append(text[pos : pos + 1].isspace())
    if text[pos:].strip():
        raise ValueError(f"the text goes on after the last token: {text[pos:].strip()[:30]!r}")
    return spaces


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
