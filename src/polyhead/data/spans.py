"""Entity tag schemes (IOB1, IOB2/BIO, BILUO/BIOES): tags <-> spans, and which tag may follow which."""

from __future__ import annotations

import torch

from polyhead.data.schema import CorpusError

ALIASES = {
    "bio": "iob2",
    "iob2": "iob2",
    "iob1": "iob1",
    "biluo": "biluo",
    "bilou": "biluo",
    "bioes": "bioes",
}
PREFIXES = {"iob2": "BI", "iob1": "BI", "biluo": "BILU", "bioes": "BIES"}


def canonical(scheme: str) -> str:
    """The scheme's canonical name ("bio" -> "iob2", "bilou" -> "biluo")."""
    if scheme.lower() not in ALIASES:
        raise ValueError(f"unknown tag scheme {scheme!r}; use one of {sorted(ALIASES)}")
    return ALIASES[scheme.lower()]


def split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER", ("O", "") for "O", ("?", tag) for a tag without a prefix."""
    if tag == "O":
        return "O", ""
    prefix, sep, label = tag.partition("-")
    return (prefix, label) if sep and label else ("?", tag)


def tags_to_spans(
    tags: list[str],
    scheme: str,
    *,
    path: str | None = None,
    first_line: int | None = None,
    lines: list[int] | None = None,
    strict: bool = True,
    repairs: list[int] | None = None,
) -> list[tuple[int, int, str]]:
    """Decode a tag sequence into [start, end) spans; an invalid sequence raises CorpusError.

    strict=False reads IOB1 and IOB2 the way conlleval and seqeval do: a tag that cannot continue the
    entity before it begins a new one (IOB1 B-X after O, IOB2 I-X after O); the index of every such
    tag is appended to `repairs`. BILUO/BIOES stay strict: an unclosed entity has no standard reading."""
    scheme = canonical(scheme)
    single, last = ("U", "L") if scheme == "biluo" else ("S", "E")
    spans, start, label = [], None, None

    def fail(i: int, why: str):
        line = lines[i] if lines else (first_line + i if first_line is not None else None)
        after = f"after {tags[i - 1]!r}" if i else "at the start"
        raise CorpusError(
            path or "<tags>", line, f"tag {tags[i]!r} (token {i + 1}, {after}): {why} in {scheme}"
        )

    def repair(i: int) -> None:
        if repairs is not None:
            repairs.append(i)

    lenient = not strict and scheme in ("iob1", "iob2")
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix not in ("O", *PREFIXES[scheme]):
            fail(i, "unknown prefix")
        inside = prefix in ("I", last)
        continues = start is not None and kind == label
        if scheme == "iob1":
            if prefix == "B" and not continues:
                if not lenient:
                    fail(i, f"B-{kind} must follow I-{kind}")
                repair(i)
            if prefix == "I" and continues:
                continue
        elif inside and not continues:
            if not lenient:
                fail(i, f"{prefix}-{kind} does not continue an entity")
            repair(i)
            inside = False  # read as B-{kind}
        elif start is not None and scheme in ("biluo", "bioes") and not inside:
            fail(i, f"entity {label} opened at token {start + 1} is not closed with {last}-{label}")
        if inside and scheme != "iob1":
            if prefix == last:
                spans.append((start, i + 1, label))
                start = label = None
            continue
        if start is not None:
            spans.append((start, i, label))
            start = label = None
        if prefix == single:
            spans.append((i, i + 1, kind))
        elif prefix != "O":
            start, label = i, kind
    if start is not None:
        if scheme in ("biluo", "bioes"):
            fail(len(tags) - 1, f"entity {label} is not closed with {last}-{label}")
        spans.append((start, len(tags), label))
    return spans


def spans_to_tags(spans: list[tuple[int, int, str]], n_words: int, scheme: str) -> list[str]:
    """Encode [start, end) spans as one tag per word; overlapping spans raise ValueError."""
    scheme = canonical(scheme)
    tags = ["O"] * n_words
    for start, end, label in sorted(spans):
        if any(t != "O" for t in tags[start:end]) or not 0 <= start < end <= n_words:
            raise ValueError(f"span {(start, end, label)} overlaps another or lies outside {n_words} words")
        if scheme in ("iob2", "iob1"):
            tags[start:end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 1)
        else:
            single, last = ("U", "L") if scheme == "biluo" else ("S", "E")
            if end - start == 1:
                tags[start] = f"{single}-{label}"
            else:
                tags[start:end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 2) + [f"{last}-{label}"]
    if scheme == "iob1":  # IOB1 uses B- only between adjacent entities of the same type
        tags = [
            t if not (t.startswith("B-") and (i == 0 or tags[i - 1][2:] != t[2:])) else "I-" + t[2:]
            for i, t in enumerate(tags)
        ]
    return tags


def scheme_labels(entity_types: list[str], scheme: str) -> list[str]:
    """["O", "B-LOC", "I-LOC", ...]: O first, then types sorted, prefixes in scheme order."""
    prefixes = PREFIXES[canonical(scheme)]
    return ["O"] + [f"{p}-{t}" for t in sorted(entity_types) for p in prefixes]


def _parts(labels: list[str]) -> list[tuple[str, str]]:
    return [split_tag(t) for t in labels]


def allowed_transitions(labels: list[str], scheme: str) -> torch.Tensor:
    """(L, L) bool: may tag j directly follow tag i in a valid sequence."""
    scheme = canonical(scheme)
    parts = _parts(labels)
    out = torch.zeros(len(labels), len(labels), dtype=torch.bool)
    for i, (p, a) in enumerate(parts):
        for j, (q, b) in enumerate(parts):
            if scheme == "iob1":  # I- may open an entity; B- only splits two adjacent same-type entities
                out[i, j] = q != "B" or (p in ("B", "I") and a == b)
            elif scheme == "iob2":
                out[i, j] = q != "I" or (p in ("B", "I") and a == b)
            else:
                open_ = p in ("B", "I")
                cont = q in ("I", "L", "E")
                out[i, j] = (open_ and cont and a == b) or (not open_ and not cont)
    return out


def allowed_starts(labels: list[str], scheme: str) -> torch.Tensor:
    """(L,) bool: may a sequence start with this tag."""
    forbidden = ("B",) if canonical(scheme) == "iob1" else ("I", "L", "E")
    return torch.tensor([p not in forbidden for p, _ in _parts(labels)])


def allowed_ends(labels: list[str], scheme: str) -> torch.Tensor:
    """(L,) bool: may a sequence end with this tag (BILUO/BIOES entities must be closed)."""
    biluo = canonical(scheme) in ("biluo", "bioes")
    return torch.tensor([not (biluo and p in ("B", "I")) for p, _ in _parts(labels)])
