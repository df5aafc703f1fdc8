"""JSONL field aliases other tools write, and a warning naming the fields polyhead does not read."""

import json
import logging

import pytest

from polyhead.data.readers import read_corpus
from polyhead.pretrain.text import read_documents


def jsonl(tmp_path, rows, name="a.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("row", "ents", "cats"),
    [
        (
            {"text": "Ann flew to Rome", "entities": [[0, 3, "PER"], [12, 16, "LOC"]]},
            [(0, 1, "PER"), (3, 4, "LOC")],
            None,
        ),
        (
            {"text": "Ann flew to Rome", "spans": [{"start": 12, "end": 16, "label": "LOC"}]},
            [(3, 4, "LOC")],
            None,
        ),
        (
            {"text": "Ann flew to Rome", "entities": [{"start_offset": 0, "end_offset": 3, "label": "PER"}]},
            [(0, 1, "PER")],
            None,
        ),
        ({"tokens": ["Ann", "flew", "to", "Rome"], "entities": [[3, 4, "LOC"]]}, [(3, 4, "LOC")], None),
        ({"text": "Ann flew to Rome", "label": "travel"}, None, ("travel",)),
        ({"text": "Ann flew to Rome", "labels": ["travel", "people"]}, None, ("travel", "people")),
    ],
    ids=["spacy-entities", "prodigy-spans", "doccano-offsets", "token-entities", "label", "labels"],
)
def test_readers_jsonl_aliases(tmp_path, row, ents, cats, caplog):
    with caplog.at_level(logging.WARNING):
        (ex,) = read_corpus(jsonl(tmp_path, [row]), "jsonl")
    assert ex.words == ["Ann", "flew", "to", "Rome"] and (ex.get("spans"), ex.get("cats")) == (ents, cats)
    assert not caplog.records  # an alias is read, not reported as ignored


def test_readers_jsonl_unread_fields_warned_once_per_file_with_first_line(tmp_path, caplog):
    rows = [
        {"tokens": ["a"], "meta": {"src": "x"}},
        {"tokens": ["b"], "_input_hash": 1, "meta": {}},
        {"tokens": ["c"], "answer": "accept"},
    ]
    path = jsonl(tmp_path, rows)
    with caplog.at_level(logging.WARNING, logger="polyhead.data.jsonl"):
        assert len(read_corpus(path, "jsonl")) == 3
    (record,) = caplog.records
    assert record.message == (
        f"{path}: ignoring field(s) polyhead does not read: '_input_hash' (first on line 2), "
        "'answer' (first on line 3), 'meta' (first on line 1)"
    )


def test_readers_jsonl_numeric_ids_become_strings(tmp_path):
    (ex,) = read_corpus(jsonl(tmp_path, [{"id": 7, "tokens": ["a"]}]), "jsonl")
    assert ex.id == "7"


def test_readers_jsonl_text_plain_and_jsonl_text_take_an_encoding(tmp_path):
    plain = tmp_path / "a.txt"
    plain.write_bytes("caf\xe9 au lait\n\nd\xe9j\xe0 vu\n".encode("latin-1"))
    assert read_documents(plain, "txt", encoding="latin-1") == (["caf\xe9 au lait", "d\xe9j\xe0 vu"], 0)
    assert read_documents(plain, "txt") == ([], 2)  # UTF-8 by default: both lines skipped as invalid
    rows = tmp_path / "a.jsonl"
    rows.write_bytes('{"text": "caf\xe9"}\n'.encode("cp1252"))
    assert read_documents(rows, "jsonl", encoding="cp1252") == (["caf\xe9"], 0)
