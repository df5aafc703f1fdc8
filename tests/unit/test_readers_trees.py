"""Dependency trees from CoNLL-U (options head_column / deprel_column) and JSONL: word-numbered heads across
multiword tokens and empty nodes, masking, and bad trees as file:line errors before any run."""

import json
import logging

import pytest
from conftest import CONLLU, write

from polyhead.data.datamodule import MultitaskDataModule
from polyhead.data.readers import read_corpus
from polyhead.data.schema import CorpusError

TREES = {"head_column": "head", "deprel_column": "deprel"}

UNANNOTATED = """# sent_id = email-3
1\tHi\thi\tINTJ\tUH\t_\t_\t_\t_\t_
2\t!\t!\tPUNCT\t.\t_\t_\t_\t_\t_
"""


def line(i: int, form: str = "w", head: str = "0", deprel: str = "root") -> str:
    return f"{i}\t{form}\t{form}\tNOUN\tNN\t_\t{head}\t{deprel}\t_\t_\n"


def test_readers_trees_heads_number_words_across_ranges_and_empty_nodes(tmp_path):
    """CONLLU has a range (1-2) and an empty node (4.1): not words, so HEAD numbers Example.words."""
    text = CONLLU + "\n" + UNANNOTATED
    first, second, third = read_corpus(write(tmp_path, "a.conllu", text), "conllu", **TREES)
    assert first.words == ["Do", "n't", "go", "to", "Rome", "."]
    assert first.get("tree")[0] == [3, 3, 0, 5, 3, 3]
    assert first.get("tree")[1] == ["aux", "advmod", "root", "case", "obl", "punct"]
    assert (second.words, second.get("tree")[0]) == (["I", "'m", "!"], [2, 0, 2])
    assert third.get("tree") is None  # every HEAD "_": no tree, masked like any task
    (plain, *_) = read_corpus(write(tmp_path, "b.conllu", text), "conllu")
    assert plain.get("tree") is None  # trees are read only when asked for


@pytest.mark.parametrize(
    ("bad", "at", "what"),
    [
        (
            line(2, head="9", deprel="obj"),
            3,
            r"HEAD '9' of word 2 is not 0 or a word id of this sentence \(1-3\)",
        ),
        (line(2, head="-1", deprel="obj"), 3, "HEAD '-1' of word 2 is not 0 or a word id"),
        (line(2, head="3", deprel="obj"), 3, r"HEAD makes a cycle \(2 -> 3 -> 2\): not a tree"),
        (line(2, head="_", deprel="_"), 3, "HEAD '_' in a sentence whose other words have heads"),
        (line(2, head="1", deprel="_"), 3, "empty DEPREL '_' for a word with a HEAD"),
    ],
)
def test_readers_trees_bad_tree_names_file_and_line(tmp_path, bad, at, what):
    text = "# sent_id = s\n" + line(1) + bad + line(3, head="2", deprel="obj")
    path = write(tmp_path, "bad.conllu", text)
    with pytest.raises(CorpusError, match=what) as err:
        read_corpus(path, "conllu", **TREES)
    assert str(err.value).startswith(f"{path}:{at}:")


def test_readers_trees_cycle_away_from_the_root_names_its_first_word(tmp_path):
    text = line(1) + line(2, head="4", deprel="obj") + line(3, head="2", deprel="obj") + line(4, head="3")
    path = write(tmp_path, "cycle.conllu", text)
    with pytest.raises(CorpusError, match=r"cycle \(2 -> 4 -> 3 -> 2\)") as err:
        read_corpus(path, "conllu", **TREES)
    assert str(err.value).startswith(f"{path}:2:")


def test_readers_trees_several_roots_are_kept_with_a_warning(tmp_path, caplog):
    text = "# sent_id = s\n" + line(1) + line(2) + line(3, head="2", deprel="obj")
    path = write(tmp_path, "roots.conllu", text)
    with caplog.at_level(logging.WARNING, logger="polyhead.data.readers"):
        (ex,) = read_corpus(path, "conllu", **TREES)
    assert ex.get("tree")[0] == [0, 0, 2]
    assert "1 sentence(s) with more than one root word, kept as given" in caplog.text
    assert f"first at {path}:3" in caplog.text


def test_readers_trees_options_go_together(tmp_path):
    path = write(tmp_path, "a.conllu", CONLLU)
    with pytest.raises(ValueError, match="head_column and deprel_column go together"):
        read_corpus(path, "conllu", head_column="head")
    with pytest.raises(ValueError, match=r"unknown CoNLL-U column 'label' \(deprel_column\)"):
        read_corpus(path, "conllu", head_column="head", deprel_column="label")


def test_readers_trees_jsonl_heads_and_deps(tmp_path):
    rows = [
        {"tokens": ["Ann", "saw", "Rome"], "heads": [2, 0, 2], "deps": ["nsubj", "root", "obj"]},
        {"tokens": ["a", "b"], "heads": [2, 1], "deps": ["x", "y"]},
    ]
    path = write(tmp_path, "t.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(CorpusError, match=r"heads make a cycle \(1 -> 2 -> 1\)") as err:
        read_corpus(path, "jsonl")
    assert str(err.value).startswith(f"{path}:2:")
    write(tmp_path, "t.jsonl", json.dumps(rows[0]) + "\n")
    (ex,) = read_corpus(path, "jsonl")
    assert ex.get("tree") == ([2, 0, 2], ["nsubj", "root", "obj"])


def corpus(tmp_path, name: str, sentences: list[list[tuple[str, int, str]]]) -> str:
    text = "\n".join(
        f"# sent_id = {name}-{n}\n" + "".join(line(i, w, str(h), d) for i, (w, h, d) in enumerate(s, 1))
        for n, s in enumerate(sentences)
    )
    return str(write(tmp_path, f"{name}.conllu", text))


def spec(path: str, tasks: list[str]) -> dict:
    return {"path": path, "format": "conllu", "tasks": tasks, "options": TREES}


def test_readers_trees_datamodule_trees_deprel_unseen_in_training_names_file_and_line(tmp_path):
    train = corpus(tmp_path, "train", [[("Ann", 2, "nsubj"), ("ran", 0, "root")]])
    test = corpus(
        tmp_path, "test", [[("Ann", 2, "nsubj"), ("ran", 0, "root")], [("Go", 0, "root"), ("!", 1, "punct")]]
    )
    dm = MultitaskDataModule(train=[spec(train, ["parser"])], dev=[], test=[spec(test, ["parser"])])
    with pytest.raises(CorpusError, match="test parser label 'punct' never occurs in training data") as err:
        dm.load()
    assert str(err.value).startswith(f"{test}:5:")  # the first line of the sentence


def test_readers_trees_datamodule_trees_masked_unless_the_corpus_feeds_the_parser(tmp_path):
    train = corpus(tmp_path, "train", [[("Ann", 2, "nsubj"), ("ran", 0, "root")]])
    dm = MultitaskDataModule(train=[spec(train, ["tagger"])], dev=[], test=[])
    dm.load()
    assert dm.labels == {"tagger": ["NOUN"]} and dm.examples["train"][0].get("parser") is None
    dm = MultitaskDataModule(train=[spec(train, ["tagger", "parser"])], dev=[], test=[])
    dm.load()
    assert dm.labels == {"tagger": ["NOUN"], "parser": ["nsubj", "root"]}
    no_trees = write(tmp_path, "flat.conllu", UNANNOTATED)
    dm = MultitaskDataModule(train=[spec(str(no_trees), ["parser"])], dev=[], test=[])
    with pytest.raises(
        CorpusError, match=rf"^{no_trees}: task 'parser' reads 'tree', but no example has dependency heads"
    ):
        dm.load()
