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


def test_readers_jsonl_named_tasks_of_every_kind_round_trip_through_prepare(tmp_path):
    """prepare writes each task under its name (`tasks: {task: {kind: value}}`); the reader reads them."""
    from polyhead.data.datamodule import CorpusSpec
    from polyhead.data.schema import Example, Gold
    from polyhead.prepare import to_json

    gold = {
        "upos": Gold("tags", ["DET", "NOUN", "VERB"]),
        "xpos": Gold("tags", ["DT", None, "VBD"]),
        "feats": Gold("feats", ["_", "Number=Plur", "Mood=Ind|Tense=Past"]),
        "lemma": Gold("lemmas", ["the", "cat", "sit"]),
        "parser": Gold("tree", ([2, 3, 0], ["det", "nsubj", "root"])),
        "ner": Gold("spans", [(1, 2, "ANIMAL")]),
        "genre": Gold("cats", ("blog",)),
    }
    ex = Example(["The", "cats", "sat"], [True, True, False], gold, "s1")
    path = jsonl(tmp_path, [to_json(ex)])
    spec = CorpusSpec(str(path), "jsonl")  # no tasks: every task the file holds
    (back,) = spec.read()
    assert spec.tasks == {task: task for task in gold}
    assert back.gold == gold and back.words == ex.words and back.spaces == ex.spaces
    (upos_only,) = CorpusSpec(str(path), "jsonl", {"pos": "upos"}).read()
    assert upos_only.gold == {"pos": gold["upos"]}


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ({"upos": ["DET"]}, "task 'upos' must be {kind: value} with one kind of tags, feats"),
        ({"upos": {"words": ["DET"]}}, "task 'upos' must be {kind: value}"),
        ({"upos": {"tags": "DET"}}, "task 'upos': tags must be a list of strings"),
        ({"genre": {"cats": None}}, "task 'genre': cats is null; leave the task out"),
        ({"feats": {"feats": ["Plur"]}}, "task 'feats': 'Plur' is not Feature=Value pairs"),
        ({"ner": {"spans": [[0, 5, "X"]]}}, r"entity \[0, 5, 'X'\] outside the 1 tokens"),
        ({"parser": {"tree": [[0]]}}, r"task 'parser': a tree is \[heads, deps\]"),
        ({"upos": {"tags": ["DET", "NOUN"]}}, "2 upos for 1 words"),
        ({"tags": {"tags": ["DET"]}}, "task 'tags' in 'tasks' is also a field of the line"),
    ],
)
def test_readers_jsonl_named_task_errors_name_the_line(tmp_path, tasks, message):
    from polyhead.data.schema import CorpusError

    row = {"tokens": ["Cats"], "tags": ["NOUN"]} if "tags" in tasks else {"tokens": ["Cats"]}
    path = jsonl(tmp_path, [{"tokens": ["Dogs"]}, {**row, "tasks": tasks}])
    with pytest.raises(CorpusError, match=f"a.jsonl:2: .*{message}"):
        read_corpus(path, "jsonl")
