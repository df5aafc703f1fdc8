"""A pipeline directory names its heads by registered key: loading never imports code named in its files."""

import json
import shutil
import sys

import pytest
import spacy
import torch

from polyhead.data.collate import Collator
from polyhead.errors import UserError
from polyhead.export.components import PipelineError, batch_vectors, sub_batches
from polyhead.export.pipeline import export_pipeline
from polyhead.models.encoder import Encoder
from polyhead.models.heads.ner import EntityRecognitionHead
from polyhead.models.heads.parser import DependencyParsingHead
from polyhead.models.heads.registry import HEADS, head_key, qualified_name
from polyhead.models.heads.tagger import TokenTaggingHead
from polyhead.models.heads.textcat import TextClassificationHead
from polyhead.models.multitask import MultitaskModel
from polyhead.tokens.alignment import Windowing
from polyhead.tokens.wordpieces import load_tokenizer

EVIL = "polyhead_evil_payload_3f9c"  # a made-up module name: importing it would show in sys.modules
TEXT = "Maria flew to Rome ."
TASKS = ("tagger", "ner", "textcat", "parser")  # the test pipeline's tasks, each named after its head's key


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_bert):
    torch.manual_seed(0)
    encoder = Encoder(str(tiny_bert), window=30, stride=20)
    hidden = encoder.hidden_size
    heads = {
        "tagger": TokenTaggingHead(hidden, ["NOUN", "VERB", "PROPN"]),
        "ner": EntityRecognitionHead(hidden, ["PER", "LOC"]),
        "textcat": TextClassificationHead(hidden, ["a", "b"]),
        "parser": DependencyParsingHead(hidden, ["nsubj", "obl", "punct", "root"]),
    }
    collate = Collator(load_tokenizer(str(tiny_bert)), encoder.windowing)
    model = MultitaskModel(encoder, heads).eval()
    return export_pipeline(model, collate, tmp_path_factory.mktemp("p") / "nlp")


@pytest.fixture
def copy(pipeline, tmp_path):
    return shutil.copytree(pipeline, tmp_path / "nlp")


def annotations(nlp):
    doc = nlp(TEXT)
    trees = [(t.head.i, t.dep_) for t in doc]
    return [t.pos_ for t in doc], [(e.start, e.end, e.label_) for e in doc.ents], doc.cats, trees


def test_components_encoder_json_keeps_its_keys_and_the_loaded_collator_windows_as_the_encoder(pipeline):
    settings = json.loads((pipeline / "encoder" / "encoder.json").read_text())
    assert list(settings)[:4] == ["pooling", "window", "stride", "scalar_mix"]
    assert (settings["pooling"], settings["window"], settings["stride"]) == ("first", 30, 20)
    component = spacy.load(pipeline).get_pipe("encoder")
    assert component.collate.windowing is component.encoder.windowing
    assert component.encoder.windowing == Windowing(window=30, stride=20, pooling="first")


def test_components_head_json_names_a_registered_key_not_a_class(pipeline):
    specs = {task: json.loads((pipeline / task / "head.json").read_text()) for task in TASKS}
    assert {task: spec["head"] for task, spec in specs.items()} == {t: t for t in TASKS}
    assert all("class" not in spec for spec in specs.values())
    assert head_key(TokenTaggingHead(4, ["X"])) == "tagger"
    assert head_key(EntityRecognitionHead(4, ["X"])) == "ner"  # a subclass is its own kind


def test_components_old_class_path_of_a_registered_head_still_loads(pipeline, copy):
    for task in TASKS:  # the format written before keys: {"class": "<module>.<qualname>"}
        cls = HEADS[task]
        spec = json.loads((copy / task / "head.json").read_text())
        old = {"class": qualified_name(cls), "config": spec["config"]}
        (copy / task / "head.json").write_text(json.dumps(old))
    assert annotations(spacy.load(copy)) == annotations(spacy.load(pipeline))


@pytest.mark.parametrize(
    "named",
    [
        {"head": "os.system"},
        {"class": "os.system"},
        {"head": f"{EVIL}.Payload"},
        {"class": f"{EVIL}.Payload"},
        {"class": "polyhead.models.heads.tagger.TokenTaggingHeadX"},  # near a registered path, not equal
        {"head": ["tagger"]},
    ],
)
def test_components_foreign_head_is_refused_without_importing_it(copy, tmp_path, monkeypatch, named):
    (tmp_path / f"{EVIL}.py").write_text("class Payload:\n    def __init__(self, **config): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the named module exists and could be imported
    monkeypatch.delitem(sys.modules, EVIL, raising=False)
    (copy / "tagger" / "head.json").write_text(json.dumps({**named, "config": {"command": "echo pwned"}}))
    refused = r"tagger/head\.json: names the head .* not a registered polyhead head"
    with pytest.raises(PipelineError, match=refused):
        spacy.load(copy)
    assert EVIL not in sys.modules


def test_components_truncated_head_weights_is_a_user_error(copy):
    weights = copy / "ner" / "head.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(UserError, match=r"ner/head\.safetensors: could not load the head weights"):
        spacy.load(copy)


def test_components_registered_heads_are_the_annotations_examples_hold():
    """Every registered head learns a kind of annotation the data layer has (schema.KINDS); a head class
    whose `annotation` is none of them is refused."""
    from polyhead.data.schema import KINDS
    from polyhead.models.heads.registry import register_head

    assert all(cls.annotation in KINDS for cls in HEADS.values()), {k: c.annotation for k, c in HEADS.items()}

    class FrameHead(TokenTaggingHead):
        annotation = "frames"

    with pytest.raises(ValueError, match=r"FrameHead\.annotation must name a kind of annotation"):
        register_head("srl", FrameHead)
    assert "srl" not in HEADS


def test_components_pipeline_uses_the_generic_factory_and_old_names_still_load(pipeline, copy):
    from spacy.util import load_config

    config = load_config(pipeline / "config.cfg")
    assert {config["components"][task]["factory"] for task in TASKS} == {"polyhead_head"}
    # the tagger writes token.pos: its head's own attr (head.json), which the component's options may override
    assert spacy.load(pipeline).get_pipe("tagger").settings == {"attr": "pos"}
    assert config["components"]["tagger"]["options"].get("attr", "pos") == "pos"
    # a pipeline exported before polyhead_head names its heads' factories polyhead_<task>
    config["components"]["tagger"] = {"factory": "polyhead_tagger", "attr": "pos"}
    config["components"]["ner"] = {"factory": "polyhead_ner"}
    config["components"]["textcat"] = {"factory": "polyhead_textcat"}
    config.to_disk(copy / "config.cfg")
    old = spacy.load(copy)
    assert [old.get_pipe(t).options for t in ("tagger", "ner", "textcat")] == [{"attr": "pos"}, {}, {}]
    assert annotations(old) == annotations(spacy.load(pipeline))


def test_components_sub_batches_bound_count_and_spread():
    lengths = [5, 40, 7, 12, 300, 6, 9, 10, 11, 60, 8, 13, 14, 3]
    batches = sub_batches(lengths, size=4, spread=1.5)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [i for b in batches for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths)
    for b in batches:
        assert len(b) <= 4
        assert max(lengths[i] for i in b) <= 1.5 * min(lengths[i] for i in b)
    assert sub_batches([], 4) == []
    assert sub_batches([7] * 9, size=4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]


def test_components_encoder_batches_do_not_change_vectors(pipeline):
    """Docs annotated together (sorted, cut into sub-batches, one of them windowed) get the vectors each
    gets alone."""
    nlp = spacy.load(pipeline, config={"components": {"encoder": {"precision": "fp32", "batch_size": 2}}})
    texts = [TEXT, "", "Rome .", " ".join(["Maria flew to Rome again and again ."] * 8), "flew", TEXT * 2]
    encoder = nlp.get_pipe("encoder")
    together = [nlp.make_doc(t) for t in texts]
    encoder.annotate(together)
    for text, doc in zip(texts, together):
        alone = nlp.make_doc(text)
        encoder.annotate([alone])
        assert alone._.polyhead["index"] == doc._.polyhead["index"]
        torch.testing.assert_close(doc._.polyhead["words"], alone._.polyhead["words"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(doc._.polyhead["cls"], alone._.polyhead["cls"], atol=1e-5, rtol=1e-5)


def test_components_heads_read_the_stored_vectors_padded(pipeline):
    """A head's batch holds each Doc's stored word vectors at its first rows and zeros after, its mask the
    words, and texts without words one padding position; streamed or one at a time, the same annotations."""
    nlp = spacy.load(pipeline, config={"components": {"encoder": {"precision": "fp32"}}})
    texts = [TEXT, "", "Rome .", "  ", "Maria  flew .", TEXT * 3]
    docs = [nlp.make_doc(t) for t in texts]
    nlp.get_pipe("encoder").annotate(docs)
    states = [doc._.polyhead for doc in docs]
    enc = batch_vectors(docs, states, "tagger", forms=True)
    lengths = [len(s["index"]) for s in states]
    assert enc.words.shape[:2] == (len(texts), max(lengths)) and enc.word_mask.sum(1).tolist() == lengths
    for row, s in enumerate(states):
        n = lengths[row]
        assert torch.equal(enc.words[row, :n], s["words"]) and not enc.words[row, n:].any()
        assert enc.texts[row] == [docs[row][j].text for j in s["index"]]
    empty = batch_vectors(docs[1:2], states[1:2], "tagger")
    assert empty.words.shape == (1, 1, enc.words.shape[-1]) and not empty.word_mask.any()

    def tokens(doc):
        return [(t.pos_, t.head.i, t.dep_, t.ent_iob_, t.ent_type_) for t in doc]

    streamed, alone = list(nlp.pipe(texts, batch_size=4)), [nlp(t) for t in texts]
    assert [tokens(d) for d in streamed] == [tokens(d) for d in alone]
    for one, other in zip(streamed, alone):  # a head's matmul over another batch may round differently
        assert one.cats == pytest.approx(other.cats, rel=1e-6, abs=1e-7)  # (1 ulp on an AVX2-only EPYC)
