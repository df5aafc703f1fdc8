import pytest

from polyhead.data.schema import CorpusError
from polyhead.data.spans import allowed_transitions, scheme_labels, spans_to_tags, tags_to_spans

SPANS = [(0, 2, "PER"), (2, 3, "PER"), (4, 7, "ORG")]


@pytest.mark.parametrize("scheme", ["iob1", "iob2", "bio", "biluo", "bioes"])
def test_spans_round_trip(scheme):
    tags = spans_to_tags(SPANS, 8, scheme)
    assert tags_to_spans(tags, scheme) == SPANS


def test_spans_iob1_marks_only_adjacent_same_type_with_b():
    assert spans_to_tags(SPANS, 8, "iob1") == ["I-PER", "I-PER", "B-PER", "O", "I-ORG", "I-ORG", "I-ORG", "O"]


@pytest.mark.parametrize(
    ("tags", "scheme", "token"),
    [
        (["O", "I-PER"], "iob2", 2),
        (["B-LOC", "I-PER"], "iob2", 2),
        (["B-PER", "O"], "biluo", 2),
        (["U-PER", "L-PER"], "biluo", 2),
        (["X-PER"], "iob2", 1),
        (["O", "B-PER"], "iob1", 2),
    ],
)
def test_spans_invalid_sequence_names_line(tags, scheme, token):
    with pytest.raises(CorpusError, match=rf"f\.txt:{10 + token - 1}: .*token {token}"):
        tags_to_spans(tags, scheme, path="f.txt", lines=list(range(10, 10 + len(tags))))


def test_spans_overlap_is_rejected():
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags([(0, 2, "A"), (1, 3, "B")], 4, "bio")


def test_spans_transitions_forbid_o_to_inside():
    labels = scheme_labels(["PER"], "bio")
    allowed = allowed_transitions(labels, "bio")
    assert labels == ["O", "B-PER", "I-PER"]
    assert not allowed[0, 2] and allowed[1, 2] and allowed[2, 2] and allowed[2, 0]
