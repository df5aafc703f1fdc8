"""The CUDA paths, where a CUDA GPU is: `auto` precision picks the GPU's, nine tasks train on it, its
checkpoint predicts on the CPU as on the GPU, the run's own export (written after GPU training) predicts as
the model, a 16-mixed run (what `auto` picks on a GPU without bf16) trains with finite losses, and a student
distils on it. Skipped without a CUDA GPU (CI has none): `pytest tests/integration/test_cuda.py` where one is.
The logger is Lightning's CSV logger: what MLflow records does not depend on the device (the CPU tests)."""

import csv
import math

import pytest
import spacy
import torch
from conftest import TINY_TRAINER, compose_config, compose_nine_tasks

from polyhead.export.checkpoint import load_checkpoint, pick_checkpoint
from polyhead.hardware import detect, train_precision
from polyhead.training.run import run
from polyhead.training.trainer import build_trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU = ["trainer.accelerator=gpu", "logger=csv"]
WORDS = [["The", "cats", "sat", "in", "Paris", "."], ["The", "dog", "running", "."], ["Maria", "flew", "to"]]


def nine_tasks(tmp, tiny_bert, *overrides):
    """The nine tasks of tests/integration/test_tasks.py (conftest.compose_nine_tasks), on the GPU."""
    return compose_nine_tasks(tmp, tiny_bert, *GPU, *overrides)


def losses(out) -> list[float]:
    with open(out / "csv" / "metrics.csv") as f:
        return [float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss")]


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory, tiny_bert):
    tmp = tmp_path_factory.mktemp("cuda")
    cfg = nine_tasks(tmp, tiny_bert, "trainer.precision=auto")
    run(cfg)
    return tmp, cfg


def test_cuda_auto_is_the_gpus_precision_and_the_trainer_runs_on_it(tmp_path, tiny_bert):
    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    assert train_precision("auto", detect(), "auto") == expected
    assert train_precision("auto", detect(), "cpu") in ("bf16-mixed", "32-true")  # the CPU's own choice
    cfg = nine_tasks(tmp_path, tiny_bert, "trainer.precision=auto")
    trainer, precision = build_trainer(cfg, [], [])
    assert precision == expected and trainer.strategy.root_device.type == "cuda"


def test_cuda_nine_tasks_train_on_the_gpu_with_finite_losses(gpu_run):
    tmp, _ = gpu_run
    seen = losses(tmp / "out")
    assert seen and all(math.isfinite(x) for x in seen)
    assert list((tmp / "out" / "checkpoints").glob("best*.ckpt"))


def test_cuda_checkpoint_predicts_on_the_cpu_as_on_the_gpu(gpu_run):
    tmp, _ = gpu_run
    model, collate, _ = load_checkpoint(pick_checkpoint(tmp / "out" / "checkpoints"))  # mapped to the CPU
    assert next(model.parameters()).device.type == "cpu"
    alignment = collate.align(WORDS)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 on both sides: the same arithmetic, to rounding
    with torch.inference_mode():
        on_cpu = model.eval().predict(alignment, WORDS)
        on_gpu = model.cuda().predict(alignment.to(torch.device("cuda")), WORDS)
    for task, predicted in on_cpu.items():
        if task in ("genre", "bank", "home"):
            for gpu_cats, cpu_cats in zip(on_gpu[task], predicted):
                assert gpu_cats == pytest.approx(cpu_cats, abs=1e-4), task
        else:
            assert on_gpu[task] == predicted, task


def test_cuda_the_runs_export_predicts_as_its_model(gpu_run):
    """Exported after GPU training, the pipeline (on the CPU) sets what its best checkpoint predicts."""
    tmp, _ = gpu_run
    model, collate, _ = load_checkpoint(pick_checkpoint(tmp / "out" / "checkpoints"))
    nlp = spacy.load(tmp / "out" / "spacy_pipeline")
    docs = [nlp(spacy.tokens.Doc(nlp.vocab, words=ws)) for ws in WORDS]
    with torch.inference_mode():
        predicted = model.eval().predict(collate.align(WORDS), WORDS)
    for i, (doc, ws) in enumerate(zip(docs, WORDS)):
        gold = {task: model.heads[task].as_gold(p[i], ws) for task, p in predicted.items()}
        assert [t.pos_ for t in doc] == gold["upos"]
        assert [t.lemma_ for t in doc] == gold["lemma"]
        assert [0 if t.head.i == t.i else t.head.i + 1 for t in doc] == gold["parser"][0]
        assert [(e.start, e.end, e.label_) for e in doc.ents] == gold["ner"]


def test_cuda_16_mixed_trains_with_finite_losses(tmp_path, tiny_bert):
    """What `auto` picks on a GPU without bf16: fp16 autocast, a gradient scaler, clipping, fused AdamW."""
    cfg = nine_tasks(tmp_path, tiny_bert, "trainer.precision=16-mixed", "export.enabled=false")
    run(cfg)
    seen = losses(tmp_path / "out")
    assert seen and all(math.isfinite(x) for x in seen)


def test_cuda_a_student_distils_from_a_gpu_trained_teacher(gpu_run, tmp_path):
    tmp, _ = gpu_run
    teacher = pick_checkpoint(tmp / "out" / "checkpoints")
    overrides = [*TINY_TRAINER, *GPU, "trainer.precision=auto", "trainer.log_every_n_steps=1"]
    overrides += [f"teacher={teacher}", "student.keep=[1]", f"transfer.cache_dir={tmp_path}/cache"]
    overrides += ["trainer.max_epochs=1", "trainer.limit_train_batches=3"]
    from polyhead.distill.run import run_job

    run_job(compose_config("distill", tmp_path, overrides, tmp_path / "student"))
    student, _, _ = load_checkpoint(pick_checkpoint(tmp_path / "student" / "checkpoints"))
    assert student.encoder.num_layers == 1
    assert (tmp_path / "student" / "spacy_pipeline" / "meta.json").is_file()
    assert all(math.isfinite(x) for x in losses(tmp_path / "student"))
