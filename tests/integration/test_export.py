"""Train a tiny model, export it as a spaCy pipeline, load it back, and compare with the Lightning model."""

import json
import shutil
import subprocess
import sys

import pytest
import spacy
import torch
from conftest import compose_train
from mlflow.tracking import MlflowClient

from polyhead.data.collate import Collator
from polyhead.export.pipeline import export_pipeline
from polyhead.models.build import build_model
from polyhead.tokens.alignment import Windowing
from polyhead.tokens.wordpieces import load_tokenizer
from polyhead.training.run import run

TEXTS = [
    "Maria Lopez flew to New York on Monday.",
    "The Northwind Trading Company  reported record profits!",
    "",
    "   ",
    "Emoji 🎉 and control \u0007 chars \u200b here",
]


def assert_same_predictions(docs, expected) -> None:
    """The pipeline's tags and entities on each Doc's non-whitespace tokens equal the model's."""
    for i, doc in enumerate(docs):
        kept = [t for t in doc if not t.is_space]
        assert [t.pos_ for t in kept] == expected["tagger"][i]
        got = [(kept.index(e[0]), kept.index(e[-1]) + 1, e.label_) for e in doc.ents]
        assert got == [tuple(s) for s in expected["ner"][i]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    tmp = tmp_path_factory.mktemp("export")
    cfg = compose_train(tmp, tiny_bert, "trainer.max_epochs=1")
    run(cfg)
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    (r,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return tmp, cfg, client, r


def test_export_run_logs_pipeline_artifact_and_loads(trained):
    tmp, cfg, client, r = trained
    assert "spacy_pipeline" in {a.path for a in client.list_artifacts(r.info.run_id)}
    nlp = spacy.load(tmp / "out" / "spacy_pipeline")
    assert nlp.pipe_names == ["encoder", "tagger", "ner", "textcat"]
    doc = nlp("Maria Lopez flew to New York.")
    assert all(t.pos_ for t in doc)
    assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)


def test_export_predictions_equal_the_lightning_model(trained, tiny_bert):
    tmp, cfg, _, _ = trained
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    dm.load()
    model = build_model(cfg, dm.labels)
    ckpt = next((tmp / "out" / "checkpoints").glob("best*.ckpt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    model.eval()
    collate = Collator(load_tokenizer(str(tiny_bert)), model.encoder.windowing)
    path = export_pipeline(model, collate, tmp / "reexport", precision="fp32")  # the exact path
    nlp = spacy.load(path)
    docs = list(nlp.pipe(TEXTS, batch_size=2))
    words = [[t.text for t in d if not t.is_space] for d in nlp.tokenizer.pipe(TEXTS)]
    with torch.inference_mode():
        expected = model.predict(collate.align(words))
    assert_same_predictions(docs, expected)
    for i, doc in enumerate(docs):
        assert doc.cats == pytest.approx(expected["textcat"][i], abs=1e-5)
        assert all(not t.is_space for e in doc.ents for t in (e[0], e[-1]))


def test_export_long_text_fully_annotated_and_disable_head(trained):
    tmp, *_ = trained
    nlp = spacy.load(tmp / "out" / "spacy_pipeline", disable=["ner"])
    assert "ner" not in nlp.pipe_names and "encoder" in nlp.pipe_names
    doc = nlp(" ".join(["the team won the match in rome ."] * 6250))  # 50,000 tokens
    assert len(doc) == 50_000 and all(t.pos_ for t in doc)


def test_export_round_trip_and_missing_weights(trained, tmp_path):
    tmp, *_ = trained
    nlp = spacy.load(tmp / "out" / "spacy_pipeline")
    nlp.to_disk(tmp_path / "copy")
    again = spacy.load(tmp_path / "copy")
    text = "Maria Lopez flew to New York."
    assert [t.pos_ for t in again(text)] == [t.pos_ for t in nlp(text)]
    (tmp_path / "copy" / "encoder" / "model" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        spacy.load(tmp_path / "copy")
    shutil.copytree(tmp / "out" / "spacy_pipeline", tmp_path / "bad")
    (tmp_path / "bad" / "tagger" / "head.safetensors").write_bytes(b"garbage")
    with pytest.raises(OSError, match="head.safetensors"):
        spacy.load(tmp_path / "bad")


def test_export_spacy_evaluate_agrees_with_training_test_metrics(trained):
    tmp, cfg, client, r = trained
    from polyhead.export.convert import main as convert

    docbin = tmp / "test.spacy"
    convert([cfg.data.test[0].path, str(docbin), "--format", "jsonl"])
    out = tmp / "scores.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy",
            "evaluate",
            str(tmp / "out" / "spacy_pipeline"),
            str(docbin),
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    scores = json.loads(out.read_text())
    metrics = r.data.metrics
    assert scores["pos_acc"] == pytest.approx(metrics["test/tagger_acc"], abs=0.005)
    assert scores["ents_f"] == pytest.approx(metrics["test/ner_f1"], abs=0.005)
    assert scores["ents_p"] == pytest.approx(metrics["test/ner_precision"], abs=0.005)
    assert scores["cats_macro_f"] == pytest.approx(metrics["test/textcat_macro_f1"], abs=0.005)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_export_reduced_precision_at_load_time(trained, precision):
    tmp, *_ = trained
    path = tmp / "out" / "spacy_pipeline"
    fp32 = spacy.load(path)
    low = spacy.load(path, config={"components": {"encoder": {"precision": precision}}})
    assert low.get_pipe("encoder").precision == precision
    texts = ["Maria Lopez flew to New York on Monday.", "The team won the match."]
    for a, b in zip(fp32.pipe(texts), low.pipe(texts)):
        assert len(a) == len(b) and all(t.pos_ for t in b)
        assert sum(b.cats.values()) == pytest.approx(1.0, abs=1e-3)
        same = sum(x.pos_ == y.pos_ for x, y in zip(a, b)) / len(a)
        assert same >= 0.5  # reduced precision changes scores a little, not the whole output
    assert low.get_pipe("encoder").encoder.model.encoder.layer[0].output.dense.weight.dtype == torch.float32


@pytest.mark.parametrize("scalar_mix", [True, "per_task"])
def test_export_layer_mixes_reach_the_pipeline(tmp_path, tiny_bert, scalar_mix):
    from polyhead.models.encoder import Encoder
    from polyhead.models.heads.ner import EntityRecognitionHead
    from polyhead.models.heads.tagger import TokenTaggingHead
    from polyhead.models.multitask import MultitaskModel

    torch.manual_seed(0)
    tasks = ["tagger", "ner"]
    encoder = Encoder(str(tiny_bert), window=30, stride=20, scalar_mix=scalar_mix, tasks=tasks)
    heads = {
        "tagger": TokenTaggingHead(32, ["NOUN", "VERB", "DET"]),
        "ner": EntityRecognitionHead(32, ["PER"]),
    }
    model = MultitaskModel(encoder, heads).eval()
    with torch.no_grad():  # mixes far from uniform: a pipeline that dropped them would predict otherwise
        for mix in [encoder.mix, *encoder.task_mixes.values()]:
            if mix is not None:
                mix.weights.copy_(torch.randn(3) * 3)
                mix.gamma.fill_(2.0)
    collate = Collator(load_tokenizer(str(tiny_bert)), Windowing(30, 20, "first"))
    nlp = spacy.load(export_pipeline(model, collate, tmp_path / "mixed", precision="fp32"))
    docs = list(nlp.pipe(TEXTS, batch_size=2))
    words = [[t.text for t in d if not t.is_space] for d in nlp.tokenizer.pipe(TEXTS)]
    with torch.inference_mode():
        expected = model.predict(collate.align(words))
    assert_same_predictions(docs, expected)
    encoder_pipe = nlp.get_pipe("encoder").encoder
    assert encoder_pipe.scalar_mix == scalar_mix
    for key, value in encoder.state_dict().items():
        if "mix" in key.split(".")[0]:
            assert torch.equal(encoder_pipe.state_dict()[key], value), key
