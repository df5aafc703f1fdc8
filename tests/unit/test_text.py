"""Raw text for pretraining: plain text, JSONL, corpus formats, bad bytes, held-out documents."""

import json

import pytest
from conftest import write

from polyhead.data.schema import CorpusError
from polyhead.pretrain.text import read_documents, read_sources, split_documents


@pytest.mark.parametrize(
    ("data", "documents", "expected"),
    [
        ("one doc\n\ntwo doc\n", "line", ["one doc", "two doc"]),
        ("\ufeffno final newline", "line", ["no final newline"]),  # BOM stripped, last line kept
        ("crlf a\r\ncrlf b\r\n", "line", ["crlf a", "crlf b"]),
        ("para one\ncontinues\n\n\n  \npara two", "blank_line", ["para one continues", "para two"]),
        ("single paragraph\nno newline at end", "blank_line", ["single paragraph no newline at end"]),
    ],
)
def test_text_plain_documents_by_line_or_paragraph(tmp_path, data, documents, expected):
    path = write(tmp_path, "a.txt", data)
    assert read_documents(path, "txt", documents=documents) == (expected, 0)


def test_text_jsonl_text_field_or_tokens_with_spaces(tmp_path):
    lines = [
        {"text": " first text "},
        {"body": "other field"},
        {"tokens": ["New", "York", "!"], "spaces": [True, False, False], "tags": ["X", "X", "X"]},
    ]
    path = write(tmp_path, "a.jsonl", "\n".join(json.dumps(o) for o in lines) + "\n\n")
    with pytest.raises(CorpusError, match=r"a\.jsonl:2: expected an object with a string 'text'"):
        read_documents(path, "jsonl")
    path.write_text("\n".join(json.dumps(o) for o in lines[1:]))
    assert read_documents(path, "jsonl", field="body") == (["other field", "New York!"], 0)
    path.write_text('{"text": "ok"}\n{"text": broken\n')
    with pytest.raises(CorpusError, match=r"a\.jsonl:2: invalid JSON"):
        read_documents(path, "jsonl")


def test_text_corpus_format_gives_text_and_ignores_labels(tmp_path):
    path = write(tmp_path, "a.conll", "Maria\tB-PER\nflew\tO\n\nOslo\tB-LOC\n!\tO\n")
    docs, skipped = read_documents(path, "columns", separator="\t", invalid_utf8="skip")
    assert (docs, skipped) == (["Maria flew", "Oslo !"], 0)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", r"a\.txt: empty file"),
        (b"  \n\n \n", r"a\.txt: empty file"),
        (b"text\n\x89PNG\x00\x00\x01", r"a\.txt:2: binary file \(NUL byte\)"),
        (b"\xff\xfe\n", r"a\.txt: no text found \(1 line\(s\) skipped as invalid UTF-8\)"),
    ],
)
def test_text_empty_binary_or_undecodable_file_is_a_clear_error(tmp_path, data, error):
    path = write(tmp_path, "a.txt", data)
    with pytest.raises(CorpusError, match=error):
        read_sources([{"path": path, "format": "txt"}])


def test_text_invalid_utf8_lines_skipped_and_counted_or_an_error(tmp_path):
    path = write(tmp_path, "a.txt", b"good one\nbad \xe9t\xe9\ngood two\n\xc3\x28\n")
    docs, stats = read_sources([{"path": path, "format": "txt"}])
    assert docs == ["good one", "good two"]
    assert stats.skipped_lines == {str(path): 2} and stats.total_skipped == 2
    assert stats.documents == {str(path): 2} and len(stats.fingerprints[str(path)]) == 16
    with pytest.raises(CorpusError, match=r"a\.txt:2: not valid UTF-8 \(byte 0xe9\)"):
        read_sources([{"path": path, "format": "txt"}], invalid_utf8="error")


def test_text_corpus_formats_stay_strict_about_bytes(tmp_path):
    path = write(tmp_path, "a.conll", b"Maria\tB-PER\n\xe9\tO\n")
    with pytest.raises(CorpusError, match=r"a\.conll:2: not valid UTF-8"):
        read_sources([{"path": path, "format": "columns"}])


def test_text_sources_concatenate_in_order_and_unknown_format_fails(tmp_path):
    a = write(tmp_path, "a.txt", "a1\na2\n")
    b = write(tmp_path, "b.jsonl", '{"text": "b1"}\n')
    docs, stats = read_sources([{"path": a}, {"path": b, "format": "jsonl"}])
    assert docs == ["a1", "a2", "b1"] and stats.total_skipped == 0
    with pytest.raises(ValueError, match="unknown text format 'pdf'"):
        read_sources([{"path": a, "format": "pdf"}])
    with pytest.raises(CorpusError, match="file not found"):
        read_sources([{"path": tmp_path / "missing.txt"}])


def test_text_split_documents_is_seeded_and_disjoint():
    docs = [f"doc {i}" for i in range(40)]
    train, val = split_documents(docs, 0.1, seed=3)
    assert len(val) == 4 and len(train) == 36 and not set(train) & set(val)
    assert split_documents(docs, 0.1, seed=3) == (train, val)
    assert split_documents(docs, 0.1, seed=4)[1] != val
    assert split_documents(docs, 0.0, seed=3) == (docs, [])
    assert split_documents(["a", "b"], 0.01, seed=0)[1] in (["a"], ["b"])  # at least one held out
