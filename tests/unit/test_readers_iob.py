"""IOB files read as conlleval and seqeval read them: counted repairs, `strict`, one reading everywhere."""

import logging

import pytest
import spacy
import torch

from polyhead.data.datamodule import MultitaskDataModule
from polyhead.data.readers import read_corpus
from polyhead.data.schema import CorpusError
from polyhead.data.spans import tags_to_spans
from polyhead.export.convert import to_doc
from polyhead.models.heads.ner import EntityRecognitionHead


def columns(tmp_path, name, sentences):
    """A token<SPACE>tag file, one blank line between sentences."""
    path = tmp_path / name
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in s) for s in sentences) + "\n")
    return path


# IOB1 as CoNLL-2003 ships it, with B-X directly after O (line 5) and at a sentence start (line 8)
IOB1 = [
    [("EU", "I-ORG"), ("rejects", "O"), ("German", "I-MISC")],
    [("to", "O"), ("Peter", "B-PER"), ("Blackburn", "I-PER")],
    [("Rome", "B-LOC"), ("Paris", "B-LOC")],
]


def test_readers_iob_iob1_b_after_o_begins_an_entity_and_is_counted(tmp_path, caplog):
    path = columns(tmp_path, "train.iob1", IOB1)
    with caplog.at_level(logging.WARNING, logger="polyhead.data.readers"):
        first, second, third = read_corpus(path, "columns", scheme="iob1")
    assert first.get("spans") == [(0, 1, "ORG"), (2, 3, "MISC")] and first.meta == {}
    assert second.get("spans") == [(1, 3, "PER")] and second.meta == {"repaired_tags": [6]}
    assert third.get("spans") == [(0, 1, "LOC"), (1, 2, "LOC")] and third.meta == {"repaired_tags": [9]}
    (record,) = caplog.records
    assert f"{path}: 2 tag(s)" in record.message and f"first at {path}:6, {path}:9" in record.message


def test_readers_iob_iob1_strict_keeps_the_refusal(tmp_path):
    path = columns(tmp_path, "train.iob1", IOB1)
    with pytest.raises(CorpusError, match="B-PER must follow I-PER") as err:
        read_corpus(path, "columns", scheme="iob1", strict=True)
    assert str(err.value).startswith(f"{path}:6:")


@pytest.mark.parametrize(
    ("tags", "spans", "repaired"),
    [
        (["O", "I-PER", "I-PER", "O"], [(1, 3, "PER")], [1]),
        (["I-PER", "O"], [(0, 1, "PER")], [0]),
        (["B-LOC", "I-PER", "I-PER"], [(0, 1, "LOC"), (1, 3, "PER")], [1]),
        (["B-PER", "I-PER", "O"], [(0, 2, "PER")], []),
    ],
)
def test_readers_iob_iob2_i_opening_an_entity_reads_as_b(tmp_path, tags, spans, repaired):
    path = columns(tmp_path, "a.iob2", [[(f"w{i}", t) for i, t in enumerate(tags)]])
    (ex,) = read_corpus(path, "columns", scheme="iob2")
    assert ex.get("spans") == spans and ex.meta.get("repaired_tags", []) == [i + 1 for i in repaired]
    assert ex.get("spans") == tags_to_spans(
        [t.replace("I-", "B-", 1) if i in repaired else t for i, t in enumerate(tags)], "iob2"
    )


def test_readers_iob_iob2_same_spans_in_reader_training_targets_decode_and_export(tmp_path):
    tags = ["O", "I-PER", "I-PER", "O", "I-LOC"]
    (ex,) = read_corpus(columns(tmp_path, "a.iob2", [[(f"w{i}", t) for i, t in enumerate(tags)]]), "columns")
    assert ex.get("spans") == [(1, 3, "PER"), (4, 5, "LOC")]  # seqeval.get_entities gives the same chunks
    head = EntityRecognitionHead(hidden_size=4, labels=["LOC", "PER"], scheme="bio")
    head.task = "spans"  # the reader keys the entities by their field
    targets = head.word_labels(ex)
    assert targets == ["O", "B-PER", "I-PER", "O", "B-LOC"]
    logits = torch.nn.functional.one_hot(
        torch.tensor([[head.labels.index(t) for t in targets]]), len(head.labels)
    )
    assert head.decode(logits.float() * 10, torch.ones(1, len(tags), dtype=torch.bool)) == [ex.get("spans")]
    doc = to_doc(spacy.blank("en").vocab, ex, {"spans": (EntityRecognitionHead, head.spacy_options)})
    assert [(e.start, e.end, e.label_) for e in doc.ents] == ex.get("spans")


@pytest.mark.parametrize("scheme", ["biluo", "bioes"])
def test_readers_iob_biluo_stays_strict_without_the_option(tmp_path, scheme):
    path = columns(tmp_path, "a.txt", [[("a", "O"), ("b", "I-PER")]])
    with pytest.raises(CorpusError, match="does not continue") as err:
        read_corpus(path, "columns", scheme=scheme)
    assert str(err.value).startswith(f"{path}:2:")


def test_readers_iob_datamodule_corpus_repairs_become_run_tags(tmp_path):
    train = columns(tmp_path, "train.iob1", IOB1)
    dev = columns(tmp_path, "dev.iob1", [[("Rome", "I-LOC")]])
    spec = {"format": "columns", "tasks": ["ner"], "options": {"scheme": "iob1"}}
    dm = MultitaskDataModule(train=[{"path": str(train), **spec}], dev=[{"path": str(dev), **spec}], test=[])
    dm.load()
    assert dm.corpus_repairs() == {"corpus_repairs": "2", "corpus_repairs/train.iob1": "2"}
    clean = MultitaskDataModule(train=[{"path": str(dev), **spec}], dev=[], test=[])
    clean.load()
    assert clean.corpus_repairs() == {"corpus_repairs": "0"}
