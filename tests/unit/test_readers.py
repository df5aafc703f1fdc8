import json

import pytest
import spacy
from conftest import CONLLU, write
from spacy.tokens import DocBin

from polyhead.data.readers import fingerprint, read_corpus
from polyhead.data.schema import CorpusError, Example, field_gold


def test_readers_conllu_exact_examples_skip_multiword_tokens_and_empty_nodes(tmp_path):
    path = write(tmp_path, "a.conllu", CONLLU)
    first, second = read_corpus(path, "conllu", cat_from="sent_id_prefix")
    assert first == Example(
        words=["Do", "n't", "go", "to", "Rome", "."],
        spaces=[False, True, True, True, False, True],  # no space inside the multiword token "Don't"
        gold=field_gold(tags=["AUX", "PART", "VERB", "ADP", "PROPN", "PUNCT"], cats=("weblog",)),
        id="weblog-abc-0001",
        source=f"{path}:1",
    )
    assert first.text == "Don't go to Rome."
    assert second.words == ["I", "'m", "!"] and second.text == "I'm!"  # SpaceAfter=No on the range line
    assert (second.get("cats"), second.source) == (("email",), f"{path}:13")


@pytest.mark.parametrize(
    ("options", "first_tags", "cats"),
    [
        ({"tag_column": "xpos"}, ["VBP", "RB"], None),
        ({"tag_column": "deprel"}, ["aux", "advmod"], None),
        ({"cat_from": "sent_id_prefix", "cat_prefix_separator": "_"}, ["AUX", "PART"], ("weblog-abc-0001",)),
    ],
)
def test_readers_conllu_options(tmp_path, options, first_tags, cats):
    (first, _) = read_corpus(write(tmp_path, "a.conllu", CONLLU), "conllu", **options)
    assert first.get("tags")[:2] == first_tags and first.get("cats") == cats


def test_readers_conllu_comment_category(tmp_path):
    text = CONLLU.replace("# sent_id = weblog-abc-0001", "# sent_id = w1\n# genre = blog")
    first, second = read_corpus(write(tmp_path, "a.conllu", text), "conllu", cat_from="comment")
    assert (first.get("cats"), second.get("cats")) == (("blog",), ("letters",))


def test_readers_conllu_comment_category_missing_is_an_error(tmp_path):
    path = write(tmp_path, "a.conllu", CONLLU)
    with pytest.raises(CorpusError, match=r"a\.conllu:1: .*'# genre = \.\.\.'"):
        read_corpus(path, "conllu", cat_from="comment")


TOKEN = "1\tA\ta\tNOUN\tNN\t_\t0\troot\t_\t_\n"


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("# sent_id = s\n1\tA\ta\tNOUN\n", 2, "expected 10 tab-separated columns, found 4"),
        (TOKEN + "2 B b NOUN NN _ 1 dep _ _\n", 2, "found 1"),
        (TOKEN + TOKEN.replace("1", "x", 1), 2, "token id 'x' is not an integer"),
        (TOKEN + TOKEN.replace("1", "1-x", 1), 2, "token id '1-x'"),
        (TOKEN + "\n" + TOKEN.replace("NOUN", "_"), 3, "empty upos tag"),
    ],
)
def test_readers_conllu_bad_input_names_file_and_line(tmp_path, text, line, what):
    path = write(tmp_path, "bad.conllu", text)
    with pytest.raises(CorpusError, match=what) as err:
        read_corpus(path, "conllu")
    assert str(err.value).startswith(f"{path}:{line}:")


@pytest.mark.parametrize(
    ("scheme", "tags"),
    [
        ("iob2", ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]),
        ("bio", ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]),
        ("iob1", ["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]),
        ("biluo", ["B-PER", "L-PER", "O", "U-LOC", "U-LOC"]),
        ("bioes", ["B-PER", "E-PER", "O", "S-LOC", "S-LOC"]),
    ],
)
def test_readers_columns_schemes_give_same_spans(tmp_path, scheme, tags):
    words = ["Ann", "Lee", "in", "Rome", "Paris"]
    text = (
        "-DOCSTART- -X- O O\n\n"
        + "\n".join(f"{w} NNP B-NP {t}" for w, t in zip(words, tags))
        + "\n\nok NN B-NP O\n"
    )
    path = write(tmp_path, "c.txt", text)
    first, second = read_corpus(path, "columns", scheme=scheme)
    assert first == Example(
        words=words, gold=field_gold(ents=[(0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC")]), source=f"{path}:3"
    )
    assert second.get("spans") == [] and second.source == f"{path}:9"


def test_readers_columns_uner_layout_with_sent_id(tmp_path):
    text = "# newdoc id = d\n# sent_id = s1\n# text = What #Miramar\n1\tWhat\tO\t-\t-\n2\t#\tO\t-\t-\n"
    text += "3\tMiramar\tB-LOC\t-\tx\n"
    path = write(tmp_path, "u.iob2", text)
    (ex,) = read_corpus(path, "columns", word_column=1, tag_column=2, separator="\t")
    assert ex == Example(
        words=["What", "#", "Miramar"], gold=field_gold(ents=[(2, 3, "LOC")]), id="s1", source=f"{path}:4"
    )


@pytest.mark.parametrize(
    ("text", "separator", "words", "ents"),
    [
        ("#\tO\n#Wax\tB-loc\nClub\tI-loc\n", "\t", ["#", "#Wax", "Club"], [(1, 3, "loc")]),
        ("# O\nRome I-LOC\n", None, ["#", "Rome"], [(1, 2, "LOC")]),
        (
            "Ann \tB-PER\n\tO\nsaw\tO\n\tO\nBo\tB-PER\n",
            "\t",
            ["Ann", "saw", "Bo"],
            [(0, 1, "PER"), (2, 3, "PER")],
        ),
        ("a\u2028b\tO\r\nc\xa0d\tB-X\r\n", "\t", ["a\u2028b", "c\xa0d"], [(1, 2, "X")]),
    ],
    ids=["hashtag-tokens", "hash-token-spaces", "empty-words-dropped", "odd-whitespace-crlf"],
)
def test_readers_columns_tweets(tmp_path, text, separator, words, ents):
    (ex,) = read_corpus(
        write(tmp_path, "t.conll", text),
        "columns",
        scheme="iob1" if separator is None else "iob2",
        separator=separator,
    )
    assert (ex.words, ex.get("spans")) == (words, ents)
    assert ex.meta == ({"dropped_empty_words": 2} if "\n\tO" in text else {})


@pytest.mark.parametrize(
    ("text", "options", "line", "what"),
    [
        ("a O\nb I-PER\n", {"strict": True}, 2, "does not continue"),
        ("a O\n\nb B-PER\nc L-PER\nd B-LOC\n", {"scheme": "biluo"}, 5, "not closed"),
        ("a O\n\nb B-PER\nc I-PER\n", {"scheme": "iob1", "strict": True}, 3, "must follow I-PER"),
        ("a O\nb B-PER x\n", {}, 2, "expected 2 columns like line 1, found 3"),
        ("a\n", {}, 1, "expected at least 2 columns, found 1"),
        ("1\ta\tO\n", {"word_column": 1, "tag_column": 3, "separator": "\t"}, 1, "at least 4 columns"),
        ("a\tB-X\n\tI-X\n", {"separator": "\t"}, 2, "empty word inside an entity"),
        ("ok O\n\xe9t\xe9 O\n", {}, 2, "not valid UTF-8"),
    ],
)
def test_readers_columns_bad_input_names_file_and_line(tmp_path, text, options, line, what):
    data = text.encode("latin-1") if "\xe9" in text else text
    path = write(tmp_path, "bad.iob", data)
    with pytest.raises(CorpusError, match=what) as err:
        read_corpus(path, "columns", **options)
    assert str(err.value).startswith(f"{path}:{line}:")


@pytest.mark.parametrize("fmt", ["conllu", "columns", "csv", "jsonl"])
@pytest.mark.parametrize(("text", "what"), [("\n \n", "empty file"), ("\ufeff", "empty file")])
def test_readers_empty_file_is_an_error(tmp_path, fmt, text, what):
    path = write(tmp_path, "empty.txt", text)
    with pytest.raises(CorpusError, match=what) as err:
        read_corpus(path, fmt)
    assert str(err.value).startswith(str(path))


@pytest.mark.parametrize(
    ("fmt", "text"),
    [("conllu", "# sent_id = a\n\n# x\n"), ("columns", "-DOCSTART- -X- O O\n\n"), ("csv", "text,label\n")],
)
def test_readers_file_without_examples_is_an_error(tmp_path, fmt, text):
    with pytest.raises(CorpusError, match="no examples"):
        read_corpus(write(tmp_path, "none.txt", text), fmt)


@pytest.mark.parametrize("fmt", ["conllu", "columns", "csv", "jsonl", "docbin"])
def test_readers_missing_file_is_an_error(tmp_path, fmt):
    with pytest.raises(CorpusError, match="missing.txt: file not found"):
        read_corpus(tmp_path / "missing.txt", fmt)


@pytest.mark.parametrize(
    ("fmt", "text", "line"),
    [
        ("conllu", TOKEN + TOKEN.replace("A\ta", "\xff\xfe\ta"), 2),
        ("columns", "a O\n\nb O\nc\xff O\n", 4),
        ("csv", "text,label\nhi,x\nh\xffo,y\n", 3),
        ("jsonl", '{"tokens": ["a"]}\n{"tokens": ["\xff"]}\n', 2),
    ],
)
def test_readers_non_utf8_names_the_line_of_the_bad_byte(tmp_path, fmt, text, line):
    path = write(tmp_path, f"bad.{fmt}", text.encode("latin-1"))
    with pytest.raises(CorpusError, match=r"not valid UTF-8 \(byte 0x") as err:
        read_corpus(path, fmt)
    assert str(err.value).startswith(f"{path}:{line}:")


def test_readers_utf8_bom_is_stripped(tmp_path):
    (ex,) = read_corpus(write(tmp_path, "b.txt", "\ufeffAnn B-PER\n"), "columns")
    assert ex.words == ["Ann"] and ex.get("spans") == [(0, 1, "PER")]


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_readers_csv_and_tsv_tokenise_with_spacy(tmp_path, delimiter):
    text = f'id{delimiter}text{delimiter}category\n1{delimiter}"Where\'s my card?"{delimiter}card_arrival\n'
    path = write(tmp_path, "b.csv", text)
    (ex,) = read_corpus(path, "csv", label_column="category", delimiter=delimiter)
    assert ex == Example(
        words=["Where", "'s", "my", "card", "?"],
        spaces=[False, True, True, False, False],
        gold=field_gold(cats=("card_arrival",)),
        source=f"{path}:2",
    )


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("text,category\nhello,greet\n", 1, r"header lacks column\(s\) \['label'\]"),
        ("text,label\nhello,greet\nhi,\n", 3, "empty 'label'"),
        ("text,label\nhello,greet\n ,greet\n", 3, "empty 'text'"),
    ],
)
def test_readers_csv_bad_input_names_file_and_line(tmp_path, text, line, what):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(CorpusError, match=what) as err:
        read_corpus(path, "csv")
    assert str(err.value).startswith(f"{path}:{line}:")


def test_readers_jsonl_text_with_char_offsets_tokens_and_missing_tasks(tmp_path):
    rows = [
        {
            "text": "Ann Lee flew to Rome.",
            "ents": [[0, 7, "PER"], [16, 20, "LOC"]],
            "cats": {"travel": 1.0, "x": 0.0},
        },
        {"tokens": ["hi", "Bo"], "spaces": [True, False], "tags": ["INTJ", "PROPN"], "ents": [[1, 2, "PER"]]},
        {"tokens": ["ok"], "cats": ["a", "b"], "id": "r3"},
    ]
    path = write(tmp_path, "j.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    a, b, c = read_corpus(path, "jsonl")
    assert a == Example(
        words=["Ann", "Lee", "flew", "to", "Rome", "."],
        spaces=[True, True, True, True, False, False],
        gold=field_gold(ents=[(0, 2, "PER"), (4, 5, "LOC")], cats=("travel",)),
        source=f"{path}:1",
    )
    gold = field_gold(tags=["INTJ", "PROPN"], ents=[(1, 2, "PER")])
    assert b == Example(["hi", "Bo"], [True, False], gold, source=f"{path}:2")
    assert c == Example(["ok"], gold=field_gold(cats=("a", "b")), id="r3", source=f"{path}:3")


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ('{"tokens": ["a"]}\n{"tokens": ["a", "b"], "tags": ["X"]}\n', 2, "1 tags for 2 words"),
        ('{"tokens": ["a", "b"], "spaces": [true]}\n', 1, "1 spaces for 2 words"),
        ('{"tokens": ["a"]}\n{"tokens": ["a"], "ents": [[0, 3, "PER"]]}\n', 2, "outside the 1 tokens"),
        ('{"tokens": ["a", "b"], "ents": [[0, 2, "A"], [1, 2, "B"]]}\n', 1, "overlaps"),
        ('{"text": "Ann went", "ents": [[4, 20, "PER"]]}\n', 1, r"outside the text \(8 characters\)"),
        ('{"text": "Ann went", "ents": [[1, 3, "PER"]]}\n', 1, "'nn' does not align with token boundaries"),
        ('{"text": "Ann went", "ents": [[0, 3]]}\n', 1, "not enough values"),
        ('{"tokens": ["a"]}\n{"tokens": \n', 2, "invalid JSON"),
        ('{"tokens": ["a"]}\n["a"]\n', 2, "expected an object with a 'text' or a 'tokens' field"),
        ('{"words": ["a"]}\n', 1, "'tokens' field"),
    ],
)
def test_readers_jsonl_bad_input_names_file_and_line(tmp_path, text, line, what):
    path = write(tmp_path, "bad.jsonl", text)
    with pytest.raises(CorpusError, match=what) as err:
        read_corpus(path, "jsonl")
    assert str(err.value).startswith(f"{path}:{line}:")


@pytest.mark.parametrize(("tag_attr", "tags"), [("pos", ["PROPN", "VERB", "ADP", "PROPN"]), ("tag", None)])
def test_readers_docbin_round_trip(tmp_path, tag_attr, tags):
    nlp = spacy.blank("en")
    doc = nlp("Ann flew to Rome")
    doc.ents = [doc.char_span(0, 3, "PER")]
    for t, pos in zip(doc, ["PROPN", "VERB", "ADP", "PROPN"]):
        t.pos_ = pos
    doc.cats = {"travel": 1.0, "sports": 0.0}
    plain = nlp("no annotation")
    path = tmp_path / "d.spacy"
    DocBin(docs=[doc, plain], store_user_data=True).to_disk(path)
    ex, bare = read_corpus(path, "docbin", tag_attr=tag_attr)
    assert ex.words == ["Ann", "flew", "to", "Rome"] and ex.spaces == [True, True, True, False]
    assert (ex.get("tags"), ex.get("spans"), ex.get("cats")) == (tags, [(0, 1, "PER")], ("travel",))
    assert (bare.get("tags"), bare.get("spans"), bare.get("cats")) == (None, None, None)


def test_readers_docbin_garbage_is_an_error(tmp_path):
    with pytest.raises(CorpusError, match="not a spaCy DocBin"):
        read_corpus(write(tmp_path, "x.spacy", b"not msgpack"), "docbin")


def test_readers_unknown_format_or_column_is_rejected(tmp_path):
    path = write(tmp_path, "a.conllu", CONLLU)
    with pytest.raises(ValueError, match="unknown corpus format 'conll'"):
        read_corpus(path, "conll")
    with pytest.raises(ValueError, match="unknown CoNLL-U column 'pos'"):
        read_corpus(path, "conllu", tag_column="pos")


def test_readers_fingerprint_changes_with_content(tmp_path):
    a, b, a2 = write(tmp_path, "a", "x"), write(tmp_path, "b", "y"), write(tmp_path, "a2", "x")
    assert fingerprint(a) != fingerprint(b) and fingerprint(a) == fingerprint(a2)
    assert len(fingerprint(a)) == 16 and int(fingerprint(a), 16) >= 0
