"""`python -m polyhead.export.convert`: named tasks (--task, --set) each written on the Doc where its head
kind writes, a prepared JSONL file's tasks, and the one-line errors for what cannot be written."""

import json

import pytest
import spacy
from conftest import write
from spacy.tokens import DocBin

from polyhead.export.convert import main as convert

CONLLU = """# sent_id = news-1
# text = The cats sat.
1\tThe\tthe\tDET\tDT\tDefinite=Def|PronType=Art\t2\tdet\t_\t_
2\tcats\tcat\tNOUN\tNNS\tNumber=Plur\t3\tnsubj\t_\t_
3\tsat\tsit\tVERB\tVBD\tMood=Ind|Tense=Past|VerbForm=Fin\t0\troot\t_\tSpaceAfter=No
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_
"""

COLUMNS = "Ada\tNNP\tB-PER\nLovelace\tNNP\tI-PER\nwrote\tVBD\tO\n\nParis\tNNP\tB-LOC\n"


def docs(path):
    return list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


def test_convert_writes_each_named_task_where_its_head_kind_writes(tmp_path):
    path = write(tmp_path, "t.conllu", CONLLU)
    out = tmp_path / "t.spacy"
    tasks = ["upos=upos", "xpos=xpos", "feats=feats", "lemma=lemma", "parser=tree", "genre=cats"]
    args = [str(path), str(out), "--format", "conllu", "--set", "xpos.attr=tag"]
    convert(args + [f"--task={t}" for t in tasks] + ["--option", "cat_from=sent_id_prefix"])
    (doc,) = docs(out)
    assert [t.pos_ for t in doc] == ["DET", "NOUN", "VERB", "PUNCT"]
    assert [t.tag_ for t in doc] == ["DT", "NNS", "VBD", "."]
    assert str(doc[1].morph) == "Number=Plur" and str(doc[3].morph) == ""
    assert [t.lemma_ for t in doc] == ["the", "cat", "sit", "."]
    assert [t.head.i for t in doc] == [1, 2, 2, 2] and doc[2].dep_ == "root"
    assert doc.cats == {"news": 1.0}


def test_convert_reads_two_columns_of_one_file_as_two_tasks(tmp_path, capsys):
    path = write(tmp_path, "t.tsv", COLUMNS)
    out = tmp_path / "t.spacy"
    args = [str(path), str(out), "--format", "columns", "--option", "word_column=0"]
    args += ["--option", "separator=\t"]
    with pytest.raises(SystemExit):  # PTB tags are not UPOS: token.pos cannot hold them
        convert(args + ["--task", "pos=1"])
    assert "t.tsv:1: task 'pos': [E1021] `pos` value \"NNP\"" in capsys.readouterr().err
    convert(args + ["--task", "pos=1", "--task", "ner=2:iob2", "--set", "pos.attr=tag"])
    first, second = docs(out)
    assert [t.tag_ for t in first] == ["NNP", "NNP", "VBD"]
    assert [(e.text, e.label_) for e in first.ents] == [("Ada Lovelace", "PER")]
    assert [(e.text, e.label_) for e in second.ents] == [("Paris", "LOC")]


def test_convert_writes_every_task_of_a_prepared_jsonl_file(tmp_path):
    line = {
        "id": "a",
        "tokens": ["Ada", "wrote"],
        "tasks": {"upos": {"tags": ["PROPN", "VERB"]}, "xpos": {"tags": ["NNP", "VBD"]},
                  "lemma": {"lemmas": ["Ada", "write"]}, "intent": {"cats": ["statement"]}},
    }  # fmt: skip
    path = write(tmp_path, "t.jsonl", json.dumps(line) + "\n")
    out = tmp_path / "t.spacy"
    convert([str(path), str(out), "--format", "jsonl", "--set", "xpos.attr=tag"])
    (doc,) = docs(out)
    assert [(t.pos_, t.tag_, t.lemma_) for t in doc] == [("PROPN", "NNP", "Ada"), ("VERB", "VBD", "write")]
    assert doc.cats == {"statement": 1.0}


def test_convert_writes_with_the_built_in_head_when_a_user_registers_another_of_its_kind(
    tmp_path, monkeypatch
):
    """A head a user registers later for tag tasks (its own spaCy options) does not change where the
    built-in tagger writes a tag task's gold."""
    from polyhead.models.heads.registry import HEADS
    from polyhead.models.heads.tagger import TokenTaggingHead

    class TagWriter(TokenTaggingHead):
        spacy_options = {"attr": "tag"}

    monkeypatch.setitem(HEADS, "tag_writer", TagWriter)
    path = write(tmp_path, "t.conllu", CONLLU)
    convert([str(path), str(tmp_path / "t.spacy"), "--format", "conllu", "--task", "upos=upos"])
    (doc,) = docs(tmp_path / "t.spacy")
    assert [t.pos_ for t in doc] == ["DET", "NOUN", "VERB", "PUNCT"] and doc[0].tag_ == ""


def test_convert_two_classification_tasks_with_one_label_need_a_prefix(tmp_path, capsys):
    """Two classification tasks share doc.cats: a label both have would be one score for two tasks."""
    line = {"tokens": ["lost", "card"], "tasks": {"intent": {"cats": ["card"]}, "topic": {"cats": ["card"]}}}
    path = write(tmp_path, "t.jsonl", json.dumps(line) + "\n")
    out = tmp_path / "t.spacy"
    with pytest.raises(SystemExit) as exit:
        convert([str(path), str(out), "--format", "jsonl"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and len(err.strip().splitlines()) == 1 and not out.exists()
    assert "tasks 'intent' and 'topic' both have the label 'card' in doc.cats" in err
    convert([str(path), str(out), "--format", "jsonl", "--set", "topic.cats_prefix=topic/"])
    assert docs(out)[0].cats == {"card": 1.0, "topic/card": 1.0}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--task", "upos=upos", "--task", "xpos=xpos"], "tasks 'upos' and 'xpos' both write token.pos"),
        (["--task", "upos=upos", "--set", "xpos.attr=tag"], "--set xpos.<option>: no task 'xpos'"),
        (["--task", "upos=upos", "--set", "upos.spans_key=x"], "has no option 'spans_key'"),
        (["--task", "upos=upos", "--set", "upos=tag"], "--set upos=tag: expected TASK.OPTION=VALUE"),
        (["--task", "upos"], "--task upos: expected TASK=FIELD"),
        (["--task", "upos=nowhere"], "CoNLL-U has no field 'nowhere'"),
        (["--set", "upos.attr=tag"], "--set needs named tasks"),
    ],
)
def test_convert_bad_arguments_fail_in_one_line_and_write_nothing(tmp_path, capsys, extra, message):
    path = write(tmp_path, "t.conllu", CONLLU)
    out = tmp_path / "t.spacy"
    with pytest.raises(SystemExit) as exit:
        convert([str(path), str(out), "--format", "conllu"] + extra)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
