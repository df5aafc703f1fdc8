"""Input built to slip past the readers: odd line endings, deep JSON, words that are no words, an endless
sentence, tags UD does not have, a DocBin that inflates a thousandfold. Each is refused (or warned about)
naming the file and the line."""

import json
import logging
import zlib

import pytest
from conftest import write

from polyhead.data.datamodule import MultitaskDataModule
from polyhead.data.readers import read_corpus
from polyhead.data.schema import CorpusError


def token(i: int, form: str, upos: str = "NOUN") -> str:
    return f"{i}\t{form}\t_\t{upos}\t_\t_\t_\t_\t_\t_"


def raises_at(path, fmt, line, what, **options):
    with pytest.raises(CorpusError, match=what) as err:
        read_corpus(path, fmt, **options)
    assert str(err.value).startswith(f"{path}:{line}: "), str(err.value)


@pytest.mark.parametrize("ending", ["\r", "\r\n"], ids=["cr", "crlf"])
def test_readers_hostile_conllu_cr_and_crlf_blocks_between_lf_blocks_are_read(tmp_path, ending):
    lf = "\n".join(["# sent_id = a", token(1, "One"), ""]) + "\n"
    other = ending.join(["# sent_id = b", token(1, "Two"), token(2, "words"), ""]) + ending
    path = write(tmp_path, "mixed.conllu", lf + other + lf.replace("= a", "= c").replace("One", "Three"))
    examples = read_corpus(path, "conllu")
    assert [ex.id for ex in examples] == ["a", "b", "c"]
    assert examples[1].words == ["Two", "words"] and examples[2].words == ["Three"]
    assert [ex.source for ex in examples] == [f"{path}:1", f"{path}:4", f"{path}:8"]
    bad = write(tmp_path, "bad.conllu", lf + other.replace(token(2, "words"), "2\twords"))
    raises_at(bad, "conllu", 6, "expected 10 tab-separated columns")  # CR lines are counted as lines


def test_readers_hostile_jsonl_nested_100000_deep_is_one_line_error(tmp_path):
    deep = '{"tokens": ["a"], "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = write(tmp_path, "deep.jsonl", '{"tokens": ["ok"]}\n' + deep + "\n")
    raises_at(path, "jsonl", 2, "JSON nested too deeply")


@pytest.mark.parametrize(
    ("word", "what"),
    [
        ("", "is empty"),
        ("a\u0000b", "control character U\\+0000"),
        ("\u200b", r"no visible character \(U\+200B\)"),
        ("\ufeff", r"no visible character \(U\+FEFF\)"),
        ("\u202e", r"no visible character \(U\+202E\)"),
        ("\u0301\u0308", r"no visible character \(U\+0301 U\+0308\)"),
        ("\u200b \u200d", "no visible character"),
        ("\ud800", "lone surrogate U\\+D800"),
    ],
    ids=["empty", "nul", "zwsp", "bom", "rlo", "marks", "zwsp-space-zwj", "surrogate"],
)
def test_readers_hostile_word_that_is_no_word_names_file_and_line(tmp_path, word, what):
    rows = [{"tokens": ["fine"]}, {"tokens": ["a", word, "c"], "tags": ["X", "X", "X"]}]
    path = write(tmp_path, "w.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    raises_at(path, "jsonl", 2, f"word 2 .*{what}")
    if "visible" in what:  # CoNLL-U and column files name the word's own line
        conllu = "\n".join(["# sent_id = s", token(1, "fine"), token(2, word)]) + "\n"
        raises_at(write(tmp_path, "w.conllu", conllu), "conllu", 3, what)
        columns = write(tmp_path, "w.iob", f"fine\tO\n{word}\tB-X\n")
        raises_at(columns, "columns", 2, what, separator="\t")


def test_readers_hostile_nul_byte_in_a_text_file_names_its_line(tmp_path):
    raises_at(write(tmp_path, "n.conllu", token(1, "a") + "\n" + token(2, "b\0") + "\n"), "conllu", 2, "NUL")
    raises_at(
        write(tmp_path, "n.txt", "pos fine\r\nneg bad\0\n"), "lines", 2, r"binary file \(NUL character\)"
    )


KEPT = {  # marks and joiners inside a word are part of it
    "combining-acute": "e\u0301",
    "devanagari-virama": "\u0915\u094d\u0937",
    "persian-zwnj": "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
    "emoji-modifier": "👍🏽",
    "emoji-zwj": "👩\u200d💻",
    "soft-hyphen": "x\u00ad",
}


@pytest.mark.parametrize("word", KEPT.values(), ids=KEPT)
def test_readers_hostile_words_with_marks_and_joiners_are_kept(tmp_path, word):
    path = write(tmp_path, "ok.jsonl", json.dumps({"tokens": ["a", word]}) + "\n")
    assert read_corpus(path, "jsonl")[0].words == ["a", word]


def test_readers_hostile_spacy_whitespace_tokens_are_kept(tmp_path):
    (ex,) = read_corpus(write(tmp_path, "ws.csv", "text,label\nhello   world,x\n"), "csv")
    assert ex.words == ["hello", "  ", "world"]


def datamodule(path, **options):
    spec = {"path": str(path), "format": "jsonl", "tasks": ["tagger"]}
    return MultitaskDataModule(train=[spec], dev=[], test=[], **options)


def test_readers_hostile_datamodule_100000_word_example_stops_the_run_naming_file_and_line(tmp_path):
    rows = [{"tokens": ["a", "b"], "tags": ["X", "X"]}, {"tokens": ["w"] * 100_000, "tags": ["X"] * 100_000}]
    path = write(tmp_path, "long.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    what = r"100,000 words in one example, more than data.max_words=1000: "
    with pytest.raises(CorpusError, match=what) as err:
        datamodule(path).load()
    assert str(err.value).startswith(f"{path}:2: ")
    unlimited = datamodule(path, max_words=None)
    unlimited.load()
    assert len(unlimited.examples["train"][1].words) == 100_000


@pytest.mark.parametrize(("words", "refused"), [(1000, False), (1001, True)])
def test_readers_hostile_datamodule_max_words_is_the_largest_example_read(tmp_path, words, refused):
    path = write(tmp_path, "n.jsonl", json.dumps({"tokens": ["w"] * words, "tags": ["X"] * words}) + "\n")
    if refused:
        with pytest.raises(CorpusError, match=f"{path}:1: 1,001 words"):
            datamodule(path).load()
    else:
        datamodule(path).load()


def test_readers_hostile_conllu_unknown_upos_is_warned_with_first_lines(tmp_path, caplog):
    lines = [token(1, "a", "NOUN"), token(2, "b", "NOUNN"), "", token(1, "c", "VERB"), token(2, "d", "ADJ.")]
    path = write(tmp_path, "u.conllu", "\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="polyhead.data.readers"):
        (first, second) = read_corpus(path, "conllu")
    assert first.get("tags") == ["NOUN", "NOUNN"]  # read as given
    (message,) = [r.getMessage() for r in caplog.records if "UPOS" in r.getMessage()]
    assert "2 word(s) with a UPOS tag UD does not have (ADJ., NOUNN;" in message
    assert f"first at {path}:2, {path}:5" in message
    caplog.clear()
    read_corpus(path, "conllu", tag_column="xpos")  # other columns have no fixed tag set
    assert not [r for r in caplog.records if "UPOS" in r.getMessage()]


def test_readers_hostile_docbin_that_inflates_a_thousandfold_is_refused(tmp_path):
    bomb = zlib.compress(b"\0" * (100 << 20), 9)  # 100 MiB of zeros in about 100 KB
    assert len(bomb) < 200_000
    with pytest.raises(CorpusError, match="inflates to more than 64 MiB") as err:
        read_corpus(write(tmp_path, "bomb.spacy", bomb), "docbin")
    assert str(err.value).startswith(f"{tmp_path / 'bomb.spacy'}: not a spaCy DocBin polyhead reads")
