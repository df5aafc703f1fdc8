import itertools

import pytest

from polyhead.data.schema import CorpusError
from polyhead.data.spans import (
    allowed_ends,
    allowed_starts,
    allowed_transitions,
    scheme_labels,
    spans_to_tags,
    tags_to_spans,
)

SPANS = [(0, 2, "PER"), (2, 3, "PER"), (4, 7, "ORG")]


@pytest.mark.parametrize("scheme", ["iob1", "iob2", "bio", "biluo", "bilou", "bioes"])
def test_spans_round_trip(scheme):
    tags = spans_to_tags(SPANS, 8, scheme)
    assert tags_to_spans(tags, scheme) == SPANS


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        ("iob1", ["I-PER", "I-PER", "B-PER", "O", "I-ORG", "I-ORG", "I-ORG", "O"]),
        ("bio", ["B-PER", "I-PER", "B-PER", "O", "B-ORG", "I-ORG", "I-ORG", "O"]),
        ("biluo", ["B-PER", "L-PER", "U-PER", "O", "B-ORG", "I-ORG", "L-ORG", "O"]),
        ("bioes", ["B-PER", "E-PER", "S-PER", "O", "B-ORG", "I-ORG", "E-ORG", "O"]),
    ],
)
def test_spans_to_tags_exact(scheme, expected):
    assert spans_to_tags(SPANS, 8, scheme) == expected


@pytest.mark.parametrize(
    ("tags", "scheme", "token", "what"),
    [
        (["O", "I-PER"], "iob2", 2, "does not continue"),
        (["B-LOC", "I-PER"], "iob2", 2, "does not continue"),
        (["I-PER"], "bio", 1, "at the start"),
        (["B-PER", "O"], "biluo", 2, "not closed with L-PER"),
        (["O", "B-PER"], "biluo", 2, "not closed with L-PER"),
        (["U-PER", "L-PER"], "biluo", 2, "does not continue"),
        (["B-PER", "E-PER", "E-PER"], "bioes", 3, "does not continue"),
        (["X-PER"], "iob2", 1, "unknown prefix"),
        (["PER"], "iob2", 1, "unknown prefix"),
        (["U-PER"], "iob2", 1, "unknown prefix"),
        (["O", "B-PER"], "iob1", 2, "must follow I-PER"),
        (["I-LOC", "B-PER"], "iob1", 2, "must follow I-PER"),
    ],
)
def test_spans_invalid_sequence_names_file_line_and_token(tags, scheme, token, what):
    with pytest.raises(CorpusError, match=rf"^f\.txt:{10 + token - 1}: .*token {token}.*{what}"):
        tags_to_spans(tags, scheme, path="f.txt", lines=list(range(10, 10 + len(tags))))


def test_spans_first_line_numbers_tokens_consecutively():
    with pytest.raises(CorpusError, match=r"^f\.txt:7: "):
        tags_to_spans(["O", "O", "I-PER"], "iob2", path="f.txt", first_line=5)


def test_spans_unknown_scheme_is_rejected():
    with pytest.raises(ValueError, match="unknown tag scheme 'bilo'"):
        tags_to_spans(["O"], "bilo")


@pytest.mark.parametrize("spans", [[(0, 2, "A"), (1, 3, "B")], [(0, 5, "A")], [(2, 2, "A")], [(-1, 1, "A")]])
def test_spans_to_tags_rejects_overlap_and_out_of_range(spans):
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags(spans, 4, "bio")


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        ("bio", ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]),
        ("biluo", ["O", "B-LOC", "I-LOC", "L-LOC", "U-LOC", "B-PER", "I-PER", "L-PER", "U-PER"]),
        ("bioes", ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER"]),
    ],
)
def test_spans_scheme_labels_order(scheme, expected):
    assert scheme_labels(["PER", "LOC"], scheme) == expected


def test_spans_transitions_forbid_o_to_inside_for_iob2():
    labels = scheme_labels(["PER"], "bio")
    allowed = allowed_transitions(labels, "bio")
    assert labels == ["O", "B-PER", "I-PER"]
    assert not allowed[0, 2] and allowed[1, 2] and allowed[2, 2] and allowed[2, 0]
    assert allowed_starts(labels, "bio").tolist() == [True, True, False]


@pytest.mark.parametrize("scheme", ["iob1", "iob2", "biluo", "bioes"])
def test_spans_constraints_allow_exactly_the_valid_sequences(scheme):
    labels = scheme_labels(["A", "B"], scheme)
    trans, starts, ends = (f(labels, scheme) for f in (allowed_transitions, allowed_starts, allowed_ends))
    for length in (1, 2, 3):
        for seq in itertools.product(range(len(labels)), repeat=length):
            allowed = bool(starts[seq[0]] and ends[seq[-1]])
            allowed = allowed and all(trans[i, j] for i, j in itertools.pairwise(seq))
            try:
                tags_to_spans([labels[i] for i in seq], scheme)
                valid = True
            except CorpusError:
                valid = False
            assert allowed == valid, [labels[i] for i in seq]
