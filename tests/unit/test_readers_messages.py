"""Every reader error names the file, the line of the defect, and the defect in the user's terms."""

import json
import logging

import pytest
from conftest import FIXTURES, write
from transformers import BertTokenizerFast

from polyhead.data.datamodule import MultitaskDataModule
from polyhead.data.readers import read_corpus
from polyhead.data.schema import CorpusError
from polyhead.tokens.wordpieces import wordpieces


def raises_at(path, fmt, line, what, **options):
    with pytest.raises(CorpusError, match=what) as err:
        read_corpus(path, fmt, **options)
    assert str(err.value).startswith(f"{path}:{line}: "), str(err.value)


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        (
            'text,label\n"hello,greet\nhi,x\nbye,y\n',
            2,
            r"quote opened on this line is never closed \(row runs to line 4\)",
        ),
        (
            'text,label\nok,x\n"hello,greet\nhi,x\n"quoted",y\n',
            3,
            "quote opened on this line is never closed",
        ),
        ('text,label\nok,x\n"a"b,x\n', 3, "malformed CSV"),
        ("text,label\nok,x\nhello,greet,extra\n", 3, "3 fields where the header has 2"),
        ("text,label\nok,x\nhello\n", 3, "1 fields where the header has 2"),
    ],
    ids=["unclosed-to-eof", "unclosed-then-quote", "after-closing-quote", "extra-field", "missing-field"],
)
def test_readers_messages_csv_defect_is_reported_where_it_is(tmp_path, text, line, what):
    raises_at(write(tmp_path, "bad.csv", text), "csv", line, what)


def test_readers_messages_csv_quoted_multiline_and_comma_fields_still_read(tmp_path):
    path = write(tmp_path, "ok.csv", 'text,label\n"a, ""quoted"" b",x\n"two\nlines",y\nlast,z\n')
    a, b, c = read_corpus(path, "csv")
    assert a.words == ["a", ",", '"', "quoted", '"', "b"] and b.words == ["two", "\n", "lines"]
    assert [ex.source for ex in (a, b, c)] == [f"{path}:2", f"{path}:3", f"{path}:5"]


@pytest.mark.parametrize(
    ("row", "what"),
    [
        ({"tokens": ["a"], "cats": "pos"}, r'cats is "pos": give a list of labels \(\["pos"\]\) or scores'),
        ({"tokens": ["a"], "cats": {"pos": "yes"}}, r"cats score of 'pos' is \"yes\", not a number"),
        ({"tokens": ["a"], "cats": [1]}, "cats is"),
        ({"tokens": "a b"}, r"'tokens' must be a list of strings, not \"a b\""),
        ({"tokens": ["a"], "tags": [1]}, "'tags' must be a list of strings"),
        ({"tokens": ["a"], "spaces": ["yes"]}, "'spaces' must be a list of true/false"),
        ({"tokens": ["a"], "ents": [[0, 1, "X", 9]]}, r'entity \[0, 1, "X", 9\] has too many values'),
        ({"tokens": ["a"], "ents": [["0", 1, "X"]]}, "integers and a label"),
        ({"tokens": ["a"], "ents": {"0": "X"}}, "entities must be a list of"),
        ({"text": 5}, "'text' must be a string, not int"),
        (
            {"text": "Ann went", "tokens": ["Ann", "gone"]},
            "token 2 'gone' does not match the text at character 4",
        ),
        (
            {"text": "Ann went home", "tokens": ["Ann", "went"]},
            "the text goes on after the last token: 'home'",
        ),
        ({"text": "Ann went", "spans": [{"start": 1, "end": 3, "label": "PER"}]}, "'nn' does not align"),
        ({"text": "Ann", "entities": [[0, 9, "PER"]]}, r"outside the text \(3 characters\)"),
        ({"tokens": ["a"], "ents": [], "entities": []}, "fields 'ents' and 'entities' both give 'ents'"),
        (
            {"text": "Ann", "label": [[0, 3, "PER"]]},
            r"'label' holds spans \[\[0, 3, \"PER\"\]\]: name entity offsets",
        ),
    ],
)
def test_readers_messages_jsonl_defect_in_user_terms(tmp_path, row, what):
    path = write(tmp_path, "bad.jsonl", json.dumps({"tokens": ["ok"]}) + "\n\n" + json.dumps(row) + "\n")
    raises_at(path, "jsonl", 3, what)


def test_readers_messages_jsonl_text_and_tokens_give_spaces_and_token_offsets(tmp_path):
    row = {"text": "Ann  went.", "tokens": ["Ann", "went", "."], "ents": [[0, 1, "PER"]]}
    (ex,) = read_corpus(write(tmp_path, "a.jsonl", json.dumps(row) + "\n"), "jsonl")
    assert (ex.spaces, ex.get("spans"), ex.text) == ([True, False, False], [(0, 1, "PER")], "Ann went.")


S1 = "1\tA\ta\tNOUN\tNN\t_\t2\tnsubj\t_\t_\n2\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_\n"


def conllu_line(token_id, form="w", head="0"):
    return f"{token_id}\t{form}\t_\tX\tX\t_\t{head}\tdep\t_\t_\n"


@pytest.mark.parametrize(
    ("sentence", "line", "what"),
    [
        ("1 5 3 4", 5, "token id 5 out of order: expected 2"),
        ("1 3", 5, "token id 3 out of order: expected 2"),
        ("2", 4, "token id 2 out of order: expected 1"),
        ("1 2-3 2 4", 7, "token id 4 out of order: expected 3"),
        ("1 3-2 2", 5, "multiword token range 3-2 ends before it starts"),
        ("1 3-4 2 3 4", 5, "multiword token range 3-4 should start at the next word, 2"),
        ("1 2-3 2", 5, r"multiword token range 2-3 covers words the sentence lacks \(it has 2\)"),
        ("1 2.1", 5, r"empty node 2\.1 out of order: expected 1\.1"),
        ("1 1.2", 5, r"empty node 1\.2 out of order: expected 1\.1"),
        ("1 1.1 1.3", 6, r"empty node 1\.3 out of order: expected 1\.2"),
    ],
)
def test_readers_messages_conllu_id_checks(tmp_path, sentence, line, what):
    text = S1 + "\n" + "".join(conllu_line(i) for i in sentence.split())
    raises_at(write(tmp_path, "bad.conllu", text), "conllu", line, what)


def test_readers_messages_conllu_valid_ranges_and_empty_nodes_read(tmp_path):
    text = "".join(conllu_line(i, head="_") for i in "0.1 1-2 1 2 2.1 2.2 3".split())
    (ex,) = read_corpus(write(tmp_path, "ok.conllu", text), "conllu")
    assert ex.words == ["w", "w", "w"] and ex.spaces == [False, True, True]


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        (conllu_line(2, form=""), "token 2 has an empty FORM"),
        (conllu_line(2, head="7"), r"HEAD '7' of word 2 is not 0 or a word id of this sentence \(1-3\)"),
        (conllu_line(2, head="x"), "HEAD 'x' of word 2 is not 0 or a word id"),
        (conllu_line(2, head="2"), "word 2 is its own HEAD"),
    ],
)
def test_readers_messages_conllu_form_and_head_checks(tmp_path, bad, what):
    text = S1 + "\n" + conllu_line(1) + bad + conllu_line(3)
    raises_at(write(tmp_path, "bad.conllu", text), "conllu", 5, what)


def test_readers_messages_datamodule_training_file_error_comes_before_dev_label_checks(tmp_path):
    good = [{"tokens": ["a"], "cats": ["pos"]}, {"tokens": ["b"], "cats": ["neg"]}]
    bad = good + [{"tokens": ["c"], "cats": "pos"}]
    train = write(tmp_path, "train.jsonl", "\n".join(json.dumps(r) for r in bad) + "\n")
    dev = write(tmp_path, "dev.jsonl", "\n".join(json.dumps(r) for r in good) + "\n")
    spec = {"format": "jsonl", "tasks": ["textcat"]}
    dm = MultitaskDataModule(train=[{"path": str(train), **spec}], dev=[{"path": str(dev), **spec}], test=[])
    with pytest.raises(CorpusError, match=rf"^{train}:3: cats is \"pos\""):
        dm.load()


def test_readers_messages_datamodule_task_with_no_annotation_in_its_file_is_named(tmp_path):
    train = write(tmp_path, "train.jsonl", json.dumps({"tokens": ["a"], "cats": ["x"]}) + "\n")
    dev = write(tmp_path, "dev.jsonl", json.dumps({"tokens": ["a"], "ents": [[0, 1, "PER"]]}) + "\n")
    spec = {"format": "jsonl", "tasks": ["ner"]}
    dm = MultitaskDataModule(train=[{"path": str(train), **spec}], dev=[{"path": str(dev), **spec}], test=[])
    with pytest.raises(
        CorpusError, match=rf"^{train}: task 'ner' reads 'spans', but no example has entities"
    ):
        dm.load()


class Collect(logging.Handler):
    """Keeps the messages transformers logs (its library logger does not propagate to pytest's caplog)."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_readers_messages_encoder_wordpieces_of_a_long_document_log_no_length_warning():
    words = [["alpha", "beta"] * 20]
    collect, library_logger = Collect(), logging.getLogger("transformers")
    library_logger.addHandler(collect)

    def tokenizer():
        return BertTokenizerFast(vocab=str(FIXTURES / "vocab.txt"), model_max_length=16)

    try:
        tokenizer()(words, is_split_into_words=True, add_special_tokens=False)  # control: transformers warns
        assert any("Token indices sequence length is longer" in m for m in collect.messages)
        collect.messages.clear()
        pieces = wordpieces(tokenizer(), words)
    finally:
        library_logger.removeHandler(collect)
    assert len(pieces[0]) == 40 and sum(map(len, pieces[0])) > 16
    assert not any("Token indices sequence length" in m for m in collect.messages)
