"""Line-per-text classification files, the `encoding` option, and a seeded part of train as dev."""

import json

import pytest
from conftest import write

from polyhead.data.datamodule import MultitaskDataModule
from polyhead.data.readers import read_corpus
from polyhead.data.schema import CorpusError, Example, field_gold


@pytest.mark.parametrize(
    ("text", "options", "cats"),
    [
        ("0 the movie was fine\n\n1 awful , truly\n", {}, [("0",), ("1",)]),
        ("0\tthe movie was fine\n1\tawful , truly\n", {"separator": "\t"}, [("0",), ("1",)]),
        (
            "__label__pos the movie was fine\n__label__neg __label__rant awful , truly\n",
            {"label_prefix": "__label__"},
            [("pos",), ("neg", "rant")],
        ),
        (
            "DESC:manner the movie was fine\nHUM:ind awful , truly\n",
            {"label_split": ":"},
            [("DESC",), ("HUM",)],
        ),
        (
            "DESC:manner the movie was fine\nHUM:ind awful , truly\n",
            {"pattern": r"(?P<label>[A-Z]+):\S+ (?P<text>.+)"},
            [("DESC",), ("HUM",)],
        ),
        (
            "the movie was fine,0\nawful , truly,1\n",
            {"pattern": r"(?P<text>.+),(?P<label>\d)"},
            [("0",), ("1",)],
        ),
    ],
    ids=["whitespace", "tab", "fasttext", "label-split", "pattern", "label-last"],
)
def test_readers_lines_label_and_text(tmp_path, text, options, cats):
    path = write(tmp_path, "t.txt", text)
    first, second = read_corpus(path, "lines", **options)
    assert first == Example(
        ["the", "movie", "was", "fine"],
        [True, True, True, False],
        field_gold(cats=cats[0]),
        source=f"{path}:1",
    )
    assert second.words == ["awful", ",", "truly"] and second.get("cats") == cats[1]
    assert second.source == f"{path}:{3 if text.startswith('0 ') else 2}"


def test_readers_lines_latin1_trec_style(tmp_path):
    path = write(tmp_path, "trec.label", "ENTY:other What is a caf\xe9 ?\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"not valid UTF-8 \(byte 0xe9\); give the file's encoding") as err:
        read_corpus(path, "lines")
    assert str(err.value).startswith(f"{path}:1:")
    (ex,) = read_corpus(path, "lines", encoding="latin-1", label_split=":")
    assert ex.words == ["What", "is", "a", "caf\xe9", "?"] and ex.get("cats") == ("ENTY",)


@pytest.mark.parametrize(
    ("text", "options", "line", "what"),
    [
        ("0 fine\nlonely\n", {}, 2, "no whitespace between a label and a text in 'lonely'"),
        ("0|fine\n1 bad\n", {"separator": "|"}, 2, r"no '\|' between a label and a text"),
        (
            "__label__a fine\n\nbad text\n",
            {"label_prefix": "__label__"},
            3,
            "does not start with a '__label__' label",
        ),
        (
            "a:b fine\nc-d bad\n",
            {"pattern": r"(?P<label>\w+):\S+ (?P<text>.+)"},
            2,
            "does not match the pattern",
        ),
        ("0\tfine\n\tbad\n", {"separator": "\t"}, 2, "empty label"),
        ("0 fine\n1   \n", {"separator": " "}, 2, "no text after the label '1'"),
    ],
)
def test_readers_lines_bad_input_names_file_and_line(tmp_path, text, options, line, what):
    path = write(tmp_path, "bad.txt", text)
    with pytest.raises(CorpusError, match=what) as err:
        read_corpus(path, "lines", **options)
    assert str(err.value).startswith(f"{path}:{line}:")


def test_readers_lines_pattern_without_named_groups_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"needs named groups \(\?P<label>\.\.\.\) and \(\?P<text>\.\.\.\)"):
        read_corpus(write(tmp_path, "a.txt", "0 x\n"), "lines", pattern=r"(\d) (.+)")


@pytest.mark.parametrize(
    ("fmt", "text", "options"),
    [
        ("columns", "Caf\xe9 B-LOC\n", {}),
        ("conllu", "1\tCaf\xe9\tcaf\xe9\tNOUN\tNN\t_\t0\troot\t_\t_\n", {}),
        ("csv", "text,label\nCaf\xe9,x\n", {}),
        ("jsonl", '{"tokens": ["Caf\xe9"]}\n', {}),
        ("lines", "x Caf\xe9\n", {}),
    ],
)
def test_readers_lines_every_text_reader_takes_an_encoding(tmp_path, fmt, text, options):
    path = write(tmp_path, f"a.{fmt}", text.encode("cp1252"))
    with pytest.raises(CorpusError, match=r"^.*a\.\w+:\d+: not valid UTF-8"):
        read_corpus(path, fmt, **options)
    (ex,) = read_corpus(path, fmt, encoding="cp1252", **options)
    assert ex.words == ["Caf\xe9"]


def test_readers_lines_bad_byte_in_the_given_encoding_names_it_and_the_line(tmp_path):
    path = write(tmp_path, "a.txt", b"ok O\n\nb\x81d O\n")  # 0x81 is undefined in cp1252
    with pytest.raises(CorpusError, match=r"not valid cp1252 \(byte 0x81\)") as err:
        read_corpus(path, "columns", encoding="cp1252")
    assert str(err.value).startswith(f"{path}:3:")
    with pytest.raises(CorpusError, match="unknown encoding 'klingon'"):
        read_corpus(path, "columns", encoding="klingon")


def test_readers_lines_utf16_file_reads_with_its_encoding(tmp_path):
    path = write(tmp_path, "a.txt", "0 caf\xe9 ok\n1 bad\n".encode("utf-16"))
    first, second = read_corpus(path, "lines", encoding="utf-16")
    assert first.words == ["caf\xe9", "ok"] and second.get("cats") == ("1",)


def test_readers_lines_datamodule_dev_from_a_seeded_part_of_the_training_file(tmp_path):
    """No dev file: head (80%) trains, tail (the other 20%) validates; the same seed gives the same split."""
    path = write(
        tmp_path, "train.txt", "".join(f"{'pos' if i % 2 else 'neg'} text number {i}\n" for i in range(20))
    )

    def load(seed):
        spec = {"path": str(path), "format": "lines", "tasks": ["textcat"]}
        dm = MultitaskDataModule(
            train=[{**spec, "sample": {"fraction": 0.8, "seed": seed, "part": "head"}}],
            dev=[{**spec, "sample": {"fraction": 0.8, "seed": seed, "part": "tail"}}],
            test=[],
        )
        dm.load()
        return [ex.source for ex in dm.examples["train"]], [ex.source for ex in dm.examples["dev"]]

    train, dev = load(seed=13)
    assert (len(train), len(dev)) == (16, 4) and not set(train) & set(dev)
    assert sorted(train + dev, key=lambda s: int(s.rpartition(":")[2])) == [
        f"{path}:{n}" for n in range(1, 21)
    ]
    assert load(seed=13) == (train, dev) and load(seed=14)[1] != dev


@pytest.mark.parametrize(
    "sample", [{"fraction": 0.8, "seed": 1, "part": "rest"}, {"fraction": 1.5, "seed": 1, "part": "head"}]
)
def test_readers_lines_datamodule_bad_sample_is_rejected(tmp_path, sample):
    path = write(tmp_path, "t.jsonl", json.dumps({"tokens": ["a"], "cats": ["x"]}) + "\n")
    dm = MultitaskDataModule(
        train=[{"path": str(path), "format": "jsonl", "tasks": ["textcat"], "sample": sample}],
        dev=[],
        test=[],
    )
    with pytest.raises(ValueError, match="sample needs 0 < fraction < 1 and part: head or tail"):
        dm.load()
