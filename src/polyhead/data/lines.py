"""One text a line with its label in front ("label, separator, text"), parsed from decoded lines.

Three ways to find the label, all from config: split once on a `separator` (default: whitespace);
fastText's `__label__X text` (`label_prefix`, several leading labels allowed); or a `pattern` whose
named groups `label` and `text` cut the line. `label_split` then keeps the label's part before a
character (TREC's `DESC:manner` -> `DESC`)."""

from __future__ import annotations

import re

from polyhead.data.schema import CorpusError, Example, field_gold


def parse_lines(
    lines: list[str],
    path,
    separator: str | None = None,
    label_prefix: str | None = None,
    pattern: str | None = None,
    label_split: str | None = None,
    lang: str = "en",
) -> list[Example]:
    """Every non-blank line as one text with its label(s), tokenised by spaCy."""
    import spacy

    regex = compile_pattern(pattern, path) if pattern is not None else None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if regex is not None:
            labels, text = pattern_split(regex, line, path, n)
        elif label_prefix is not None:
            labels, text = prefixed_split(line, label_prefix, path, n)
        else:
            labels, text = separator_split(line, separator, path, n)
        if label_split:
            labels = [label.split(label_split, 1)[0] for label in labels]
        if not all(label.strip() for label in labels):
            raise CorpusError(path, n, f"empty label in {line[:40]!r}")
        if not text.strip():
            raise CorpusError(path, n, f"no text after the label {labels[0]!r}")
        rows.append((n, tuple(labels), text.strip()))
    tokenizer = spacy.blank(lang).tokenizer
    return [
        Example(
            [t.text for t in doc],
            [bool(t.whitespace_) for t in doc],
            field_gold(cats=labels),
            source=f"{path}:{n}",
        )
        for (n, labels, _), doc in zip(rows, tokenizer.pipe(text for _, _, text in rows))
    ]


def compile_pattern(pattern: str, path) -> re.Pattern:
    """The `pattern` option as a regex that has the named groups `label` and `text`."""
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"{path}: pattern {pattern!r} is not a regular expression: {err}") from None
    if not {"label", "text"} <= set(regex.groupindex):
        raise ValueError(f"{path}: pattern {pattern!r} needs named groups (?P<label>...) and (?P<text>...)")
    return regex


def pattern_split(regex: re.Pattern, line: str, path, n: int) -> tuple[list[str], str]:
    match = regex.fullmatch(line)
    if match is None:
        raise CorpusError(path, n, f"line does not match the pattern {regex.pattern!r}: {line[:60]!r}")
    return [match["label"] or ""], match["text"] or ""


def prefixed_split(line: str, prefix: str, path, n: int) -> tuple[list[str], str]:
    """fastText: every leading word that starts with `prefix` is a label, the rest of the line the text."""
    words, labels = line.split(), []
    while words and words[0].startswith(prefix):
        labels.append(words.pop(0).removeprefix(prefix))
    if not labels:
        raise CorpusError(path, n, f"line does not start with a {prefix!r} label: {line[:60]!r}")
    return labels, " ".join(words)


def separator_split(line: str, separator: str | None, path, n: int) -> tuple[list[str], str]:
    parts = line.split(separator, 1)
    if len(parts) < 2:
        shown = "whitespace" if separator is None else repr(separator)
        raise CorpusError(path, n, f"no {shown} between a label and a text in {line[:60]!r}")
    return [parts[0].strip()], parts[1]
