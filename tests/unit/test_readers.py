import json

import pytest
import spacy
from spacy.tokens import DocBin

from polyhead.data.readers import fingerprint, read_corpus
from polyhead.data.schema import CorpusError

CONLLU = """# sent_id = weblog-abc-0001
# text = Don't go to Rome.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
4\tto\tto\tADP\tIN\t_\t5\tcase\t_\t_
5\tRome\tRome\tPROPN\tNNP\t_\t3\tobl\t_\tSpaceAfter=No
6\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = email-xyz-0002
# genre = letters
1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_readers_conllu_skips_multiword_tokens_and_reads_genre(tmp_path):
    path = write(tmp_path, "a.conllu", CONLLU)
    first, second = read_corpus(path, "conllu", cat_from="sent_id_prefix")
    assert first.words == ["Do", "n't", "go", "to", "Rome", "."]
    assert first.tags == ["AUX", "PART", "VERB", "ADP", "PROPN", "PUNCT"]
    assert first.spaces == [True, True, True, True, False, True]
    assert first.cats == ("weblog",) and second.cats == ("email",)
    assert first.id == "weblog-abc-0001" and first.ents is None
    assert first.source == f"{path}:1"
    xpos = read_corpus(path, "conllu", tag_column="xpos")
    assert xpos[0].tags[0] == "VBP"


def test_readers_conllu_comment_category_missing_is_an_error(tmp_path):
    path = write(tmp_path, "a.conllu", CONLLU)
    with pytest.raises(CorpusError, match=r"a\.conllu:1: .*genre"):
        read_corpus(path, "conllu", cat_from="comment")


@pytest.mark.parametrize(
    ("scheme", "tags"),
    [
        ("iob2", ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]),
        ("iob1", ["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]),
        ("biluo", ["B-PER", "L-PER", "O", "U-LOC", "U-LOC"]),
    ],
)
def test_readers_columns_schemes_give_same_spans(tmp_path, scheme, tags):
    words = ["Ann", "Lee", "in", "Rome", "Paris"]
    text = (
        "-DOCSTART- -X- O O\n\n"
        + "\n".join(f"{w} NNP B-NP {t}" for w, t in zip(words, tags))
        + "\n\nok NN B-NP O\n"
    )
    ex, second = read_corpus(write(tmp_path, "c.txt", text), "columns", scheme=scheme)
    assert ex.words == words
    assert ex.ents == [(0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC")]
    assert second.ents == []


def test_readers_columns_uner_layout_with_sent_id(tmp_path):
    text = "# sent_id = s1\n1\tWhat\tO\t-\t-\n2\tMiramar\tB-LOC\t-\tx\n"
    (ex,) = read_corpus(
        write(tmp_path, "u.iob2", text), "columns", word_column=1, tag_column=2, separator="\t"
    )
    assert (ex.id, ex.words, ex.ents) == ("s1", ["What", "Miramar"], [(1, 2, "LOC")])


@pytest.mark.parametrize(
    ("fmt", "text", "options", "line", "what"),
    [
        ("columns", "a O\nb I-PER\n", {}, 2, "does not continue"),
        ("columns", "a O\nb B-PER x\n", {}, 2, "columns"),
        ("columns", "a O\n\nb B-PER\nc L-PER\nd B-LOC\n", {"scheme": "biluo"}, 5, "not closed"),
        ("conllu", "1\tA\ta\tNOUN\n", {}, 1, "10 tab-separated columns"),
        ("jsonl", '{"tokens": ["a"]}\n{"tokens": ["a", "b"], "tags": ["X"]}\n', {}, 2, "1 tags for 2 words"),
        ("jsonl", '{"tokens": ["a"]}\n{"tokens": ["a"], "ents": [[0, 3, "PER"]]}\n', {}, 2, "outside"),
        ("jsonl", '{"text": "Ann went", "ents": [[4, 20, "PER"]]}\n', {}, 1, "outside the text"),
        ("jsonl", '{"text": "Ann went", "ents": [[1, 3, "PER"]]}\n', {}, 1, "token boundaries"),
        ("jsonl", '{"tokens": ["a"]}\n{"tokens": \n', {}, 2, "invalid JSON"),
        ("csv", "text,category\nhello,greet\n", {}, 1, "label"),
        ("jsonl", b'{"tokens": ["a"]}\n{"tokens": ["\xff"]}\n', {}, 2, "not valid UTF-8"),
    ],
)
def test_readers_bad_input_names_file_and_line(tmp_path, fmt, text, options, line, what):
    path = write(tmp_path, f"bad.{fmt}", text)
    with pytest.raises(CorpusError, match=what) as err:
        read_corpus(path, fmt, **options)
    assert str(err.value).startswith(f"{path}:{line}:")


@pytest.mark.parametrize("fmt", ["conllu", "columns", "csv", "jsonl"])
def test_readers_empty_file_is_an_error(tmp_path, fmt):
    with pytest.raises(CorpusError, match="empty file"):
        read_corpus(write(tmp_path, "empty.txt", "\n \n"), fmt)


def test_readers_csv_and_tsv_tokenise_with_spacy(tmp_path):
    path = write(tmp_path, "b.tsv", "text\tcategory\nWhere's my card?\tcard_arrival\n")
    (ex,) = read_corpus(path, "csv", label_column="category", delimiter="\t")
    assert ex.words == ["Where", "'s", "my", "card", "?"] and ex.cats == ("card_arrival",)
    assert ex.text == "Where's my card?"


def test_readers_jsonl_text_with_char_offsets_and_missing_tasks(tmp_path):
    rows = [
        {
            "text": "Ann Lee flew to Rome.",
            "ents": [[0, 7, "PER"], [16, 20, "LOC"]],
            "cats": {"travel": 1.0, "x": 0.0},
        },
        {"tokens": ["hi"], "tags": ["INTJ"]},
    ]
    a, b = read_corpus(write(tmp_path, "j.jsonl", "\n".join(json.dumps(r) for r in rows)), "jsonl")
    assert a.ents == [(0, 2, "PER"), (4, 5, "LOC")] and a.cats == ("travel",) and a.tags is None
    assert b.ents is None and b.cats is None and b.tags == ["INTJ"]


def test_readers_docbin_round_trip(tmp_path):
    nlp = spacy.blank("en")
    doc = nlp("Ann flew to Rome")
    doc.ents = [doc.char_span(0, 3, "PER")]
    for t, pos in zip(doc, ["PROPN", "VERB", "ADP", "PROPN"]):
        t.pos_ = pos
    doc.cats = {"travel": 1.0, "sports": 0.0}
    path = tmp_path / "d.spacy"
    DocBin(docs=[doc], store_user_data=True).to_disk(path)
    (ex,) = read_corpus(path, "docbin")
    assert ex.words == ["Ann", "flew", "to", "Rome"] and ex.tags[0] == "PROPN"
    assert ex.ents == [(0, 1, "PER")] and ex.cats == ("travel",)


def test_readers_fingerprint_changes_with_content(tmp_path):
    a, b = write(tmp_path, "a", "x"), write(tmp_path, "b", "y")
    assert fingerprint(a) != fingerprint(b) and len(fingerprint(a)) == 16
