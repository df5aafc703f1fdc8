"""`python pretrain.py`-equivalent runs on a tiny random BERT: MLM on a small text -> encoder -> train.py."""

import json
import math

import pytest
import torch
from conftest import compose_config, compose_train, only_run
from omegaconf import open_dict
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, BertModel

import polyhead.config  # noqa: F401
from polyhead.data.schema import CorpusError
from polyhead.pretrain.mlm import load_mlm
from polyhead.pretrain.run import run as pretrain
from polyhead.training.run import run as train

TEXT = [
    "the team won the final",
    "researchers tested the robot on rough ground",
    "scientists say the vaccine could be ready in two years",
    "maria rossi signed for the bank in lima",
]


def compose_pretrain(tmp_path, encoder, text, *overrides):
    """Compose conf/pretrain.yaml like `python pretrain.py` does, on `text` and a private MLflow store."""
    tiny = [
        f"encoder.name={encoder}",
        f"text.train=[{{path: {text}, format: txt}}]",
        "text.dev=[]",
        "text.val_fraction=0.25",
        "mlm.max_length=16",
        "mlm.batch_size=8",
        "trainer.max_epochs=2",
        "trainer.precision=32-true",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
    ]
    return compose_config("pretrain", tmp_path, [*tiny, *overrides], tmp_path / "pre")


def write_text(tmp_path, repeat=10):
    path = tmp_path / "text.txt"
    path.write_text("\n".join(TEXT * repeat))  # no final newline
    return path


def test_pretrain_saves_encoder_that_automodel_loads_and_train_py_fine_tunes(tmp_path, tiny_bert):
    cfg = compose_pretrain(tmp_path, tiny_bert, write_text(tmp_path), "vocab.words=[zorbix]")
    pretrain(cfg)
    client, runs = only_run(tmp_path)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    pre = runs[0]
    metrics = pre.data.metrics
    assert {
        "train/mlm_loss",
        "train/perplexity",
        "val/mlm_loss",
        "val/perplexity",
        "train/pieces_per_sec",
    } <= set(metrics)
    assert metrics["val/perplexity"] == pytest.approx(math.exp(metrics["val/mlm_loss"]), rel=1e-4)
    assert pre.data.tags["vocab/added_words"] == "1" and pre.data.tags["text/skipped_lines"] == "0"
    assert pre.data.tags["text/documents"] == "30 train, 10 val"
    artifacts = {a.path for a in client.list_artifacts(pre.info.run_id, "encoder")}
    for name in ("config.json", "model.safetensors", "tokenizer.json", "mlm_head.safetensors"):
        assert f"encoder/{name}" in artifacts

    encoder_dir = tmp_path / "pre" / "encoder"
    lineage = json.loads((encoder_dir / "polyhead_pretraining.json").read_text())
    assert lineage["run_id"] == pre.info.run_id and lineage["source_encoder"] == str(tiny_bert)
    model = AutoModel.from_pretrained(encoder_dir)
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    assert isinstance(model, BertModel) and model.config.vocab_size == len(tokenizer) == 212
    assert tokenizer.tokenize("Zorbix won") == ["zorbix", "won"]
    source = BertModel.from_pretrained(tiny_bert)
    assert not torch.equal(
        model.encoder.layer[0].attention.self.query.weight,
        source.encoder.layer[0].attention.self.query.weight,
    )
    assert torch.equal(model.pooler.dense.weight, source.pooler.dense.weight)  # kept: the MLM model has none
    mlm = load_mlm(str(encoder_dir))  # continuing pretraining starts from the saved head, not a random one
    saved = load_file(encoder_dir / "mlm_head.safetensors")["cls.predictions.transform.dense.weight"]
    assert torch.equal(mlm.cls.predictions.transform.dense.weight, saved)

    cfg = compose_train(tmp_path, encoder_dir, "trainer.max_epochs=1", "export.enabled=false")
    train(cfg)
    client, runs = only_run(tmp_path)
    fine = next(r for r in runs if r.info.run_id != pre.info.run_id)
    assert fine.info.status == "FINISHED" and "test/ner_f1" in fine.data.metrics
    assert fine.data.tags["pretraining_run_id"] == pre.info.run_id
    assert fine.data.tags["pretraining_source_encoder"] == str(tiny_bert)


def test_pretrain_loss_goes_down_on_repeated_text(tmp_path, tiny_bert):
    text = write_text(tmp_path, repeat=20)
    cfg = compose_pretrain(
        tmp_path,
        tiny_bert,
        text,
        f"text.dev=[{{path: {text}, format: txt}}]",
        "trainer.max_epochs=5",
        "optim.lr=3e-3",
        "optim.head_lr=3e-3",
        "optim.warmup=0.0",
        "optim.schedule=constant",
    )
    pretrain(cfg)
    client, runs = only_run(tmp_path)
    history = sorted(client.get_metric_history(runs[0].info.run_id, "val/mlm_loss"), key=lambda m: m.step)
    losses = [m.value for m in history]
    assert len(losses) == 5
    assert losses[0] > 4.0  # about ln(211) for the random model
    assert losses[-1] < 0.75 * losses[0], losses


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", r"text\.txt: empty file"),
        (b"ok\n\x00\x01\x02", r"text\.txt:2: binary file"),
        (b"\xe9\xe9\n\xff", r"text\.txt: no text found \(2 line\(s\) skipped"),
    ],
)
def test_pretrain_bad_text_stops_before_any_mlflow_run(tmp_path, tiny_bert, data, error):
    path = tmp_path / "text.txt"
    path.write_bytes(data)
    cfg = compose_pretrain(tmp_path, tiny_bert, path)
    with pytest.raises(CorpusError, match=error):
        pretrain(cfg)
    _, runs = only_run(tmp_path)
    assert runs == []


def test_pretrain_skips_undecodable_lines_with_a_count_and_resumes_same_run(tmp_path, tiny_bert):
    path = tmp_path / "text.txt"
    path.write_bytes("\n".join(TEXT * 10).encode() + b"\nbad \xff line\n")
    pretrain(compose_pretrain(tmp_path, tiny_bert, path, "trainer.max_epochs=1"))
    client, runs = only_run(tmp_path)
    run_id = runs[0].info.run_id
    assert runs[0].data.tags["text/skipped_lines"] == "1"
    cfg = compose_pretrain(tmp_path, tiny_bert, path, "trainer.max_epochs=2", f"resume={run_id}")
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "pre2")
    pretrain(cfg)
    client, runs = only_run(tmp_path)
    assert [r.info.run_id for r in runs] == [run_id]
    steps = sorted(m.step for m in client.get_metric_history(run_id, "val/mlm_loss"))
    assert len(steps) == 2 and steps[0] < steps[1]
