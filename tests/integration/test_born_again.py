"""Born-again training on a tiny random BERT: single-task teachers -> one multitask student (train.py)."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import compose_config, tiny_run
from mlflow.tracking import MlflowClient

import polyhead.config  # noqa: F401
from polyhead.data.datamodule import as_tasks
from polyhead.data.readers import read_corpus
from polyhead.data.schema import LEGACY_FIELDS
from polyhead.distill.born_again import run_job
from polyhead.distill.layers import DistillationModule
from polyhead.errors import UserError
from polyhead.export.checkpoint import load_checkpoint, pick_checkpoint
from polyhead.models.heads.soft import kl_divergence
from polyhead.training.run import run

SINGLE = {  # what a single-task run of the study drops
    "tagger": ["~model.heads.ner", "~model.heads.textcat", "+data.tasks=[tagger]"],
    "textcat": ["~model.heads.tagger", "~model.heads.ner", "+data.tasks=[textcat]"],
}


def compose(root, tiny_bert, out, *overrides):
    tiny = tiny_run(tiny_bert, f"teaching.cache_dir={root}/c", "trainer.log_every_n_steps=1", short=False)
    return compose_config("train", root, [*tiny, *overrides], root / out)


def runs_of(root):
    client = MlflowClient(f"sqlite:///{root}/mlruns/mlflow.db")
    return client, client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, tiny_bert):
    """Single-task teachers trained on the demo corpus: a tagger, a textcat and a tagger of another seed
    (tagger_2, for an ensemble): (root, {name: run id})."""
    root = tmp_path_factory.mktemp("born_again")
    ids = {}
    for name, task, seed in (("tagger", "tagger", 42), ("textcat", "textcat", 42), ("tagger_2", "tagger", 7)):
        hparams = ["trainer.max_epochs=4", "optim.head_lr=5e-3", f"seed={seed}"]
        run(compose(root, tiny_bert, f"teacher_{name}", *SINGLE[task], *hparams))
        _, runs = runs_of(root)
        ids[name] = next(r.info.run_id for r in runs if r.info.run_id not in ids.values())
    return root, ids


def held_out_kl(teacher, student, collate, examples, task) -> float:
    align = collate.align([ex.words for ex in examples])
    with torch.inference_mode():
        _, t = teacher.eval()(align)
        _, s = student.eval()(align)
    mask = align.word_mask if t[task].ndim == 3 else torch.ones(len(examples), dtype=torch.bool)
    exclusive = getattr(teacher.heads[task], "exclusive", True)
    return float(kl_divergence(s[task][mask], t[task][mask], 1.0, exclusive))


def test_born_again_student_learns_each_teacher_and_tags_them(teachers, tiny_bert):
    root, ids = teachers
    spec = f"teachers={{tagger: {ids['tagger']}, textcat: {ids['textcat']}}}"
    students = {}
    for anneal in ("true", "1.0"):  # annealed from the teachers to gold, and gold alone (λ = 1 throughout)
        out = f"student_{anneal}"
        common = ["trainer.max_epochs=3", "optim.head_lr=5e-3", "optim.lr=1e-3"]
        run_job(compose(root, tiny_bert, out, spec, f"teaching.anneal={anneal}", *common))
        students[anneal] = load_checkpoint(pick_checkpoint(root / out / "checkpoints"))
    client, runs = runs_of(root)
    student = next(r for r in runs if r.data.tags.get("distill/anneal") == "linear")
    assert student.info.status == "FINISHED"
    assert student.data.tags["distill/teacher/tagger"] == ids["tagger"]
    assert student.data.tags["distill/teacher/textcat"] == ids["textcat"]
    assert "distill/teacher/ner" not in student.data.tags  # ner learns from gold only
    assert {"train/tagger_kl", "train/textcat_kl", "test/ner_f1"} <= set(student.data.metrics)

    for task in ("tagger", "textcat"):
        teacher, collate, cfg = load_checkpoint(pick_checkpoint(root / f"teacher_{task}" / "checkpoints"))
        held_out = read_corpus(cfg.data.dev[0].path, "jsonl")
        taught = held_out_kl(teacher, students["true"][0], collate, held_out, task)
        gold_only = held_out_kl(teacher, students["1.0"][0], collate, held_out, task)
        assert taught < gold_only, (task, taught, gold_only)


def test_born_again_at_gold_share_one_is_gold_only_training(teachers, tiny_bert):
    root, ids = teachers
    model, collate, cfg = load_checkpoint(pick_checkpoint(root / "teacher_tagger" / "checkpoints"))
    examples = [as_tasks(ex, LEGACY_FIELDS) for ex in read_corpus(cfg.data.dev[0].path, "jsonl")[:8]]
    n_tags = len(model.heads["tagger"].labels)
    taught = [
        replace(ex, meta={"teacher": {"tagger": torch.randn(len(ex.words), n_tags)}}) for ex in examples
    ]
    batch = collate(taught)
    enc, logits = model.train()(batch["alignment"])
    targets = model.targets(taught, enc.word_mask.shape[1], "cpu")
    gold = model.losses(logits, targets)
    at_one = DistillationModule(model, None, {}, 2.0, alpha=0.0)  # λ = 1 - alpha = 1
    at_one_loss = model.total_loss(at_one.taught_losses(taught, logits, gold, enc.word_mask))
    assert float(at_one_loss) == float(model.total_loss(gold))
    annealed = DistillationModule(model, None, {}, 2.0, alpha=0.0, anneal=True)  # step 0: λ = 0
    soft = annealed.taught_losses(taught, logits, gold, enc.word_mask)["tagger"]
    assert float(soft) != float(gold["tagger"]) and float(soft) > 0


@pytest.mark.parametrize(
    ("teachers_spec", "extra", "error"),
    [
        ("{parser: TAGGER}", [], r"teachers.parser: 'parser' is not a task of the student"),
        ("{ner: TAGGER}", [], r"teachers.ner=\w+: the teacher has no 'ner' head \(it has tagger\)"),
        ("{tagger: TAGGER, tagger: TEXTCAT}", [], r"the task 'tagger' is named twice; give an ensemble"),
        ("{tagger: [TAGGER, TAGGER]}", [], r"teachers.tagger: \w+ is listed twice; an ensemble's"),
        ("{tagger: []}", [], r"teachers.tagger: an empty list; name a teacher"),
        ("{tagger: [TAGGER, TEXTCAT]}", [], r"teachers.tagger=\w+: the teacher has no 'tagger' head"),
        ("{tagger: TAGGER}", ["teaching.anneal=1.5"], r"teaching.anneal=1.5: must be true .* in \[0, 1\]"),
    ],
)
def test_born_again_bad_teachers_fail_before_any_run(teachers, tiny_bert, teachers_spec, extra, error):
    root, ids = teachers
    spec = teachers_spec.replace("TAGGER", ids["tagger"]).replace("TEXTCAT", ids["textcat"])
    before = len(runs_of(root)[1])
    with pytest.raises(UserError, match=error):
        run_job(compose(root, tiny_bert, "bad", f"teachers={spec}", *extra))
    assert len(runs_of(root)[1]) == before


def test_born_again_teacher_must_be_finished_and_share_the_labels(teachers, tiny_bert, tmp_path):
    root, ids = teachers
    client, _ = runs_of(root)
    client.set_terminated(ids["tagger"], "KILLED")
    try:
        with pytest.raises(UserError, match=rf"teacher={ids['tagger']}: the run is KILLED, not FINISHED"):
            run_job(compose(root, tiny_bert, "bad", f"teachers={{tagger: {ids['tagger']}}}"))
    finally:
        client.set_terminated(ids["tagger"], "FINISHED")
    _, _, cfg = load_checkpoint(pick_checkpoint(root / "teacher_tagger" / "checkpoints"))
    files = {}
    for split in ("train", "dev", "test"):  # the same texts with a tag the teacher never saw
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text(Path(cfg.data[split][0].path).read_text().replace('"NOUN"', '"NN"'))
    paths = [f"data.{split}.0.path={path}" for split, path in files.items()]
    with pytest.raises(UserError, match=r"teachers.tagger=\w+: its tagger labels differ .*'NN', 'NOUN'"):
        run_job(compose(root, tiny_bert, "bad", f"teachers={{tagger: {ids['tagger']}}}", *paths))


def test_born_again_ensemble_teaches_the_mean_of_its_teachers_logits(teachers, tiny_bert):
    """A task given a list of teachers learns from the mean of their logits, and the run names them all."""
    from polyhead.distill.born_again import born_again_module
    from polyhead.distill.teacher import load_teacher, teacher_targets
    from polyhead.models.build import build_model
    from polyhead.training.run import load_data

    root, ids = teachers
    cfg = compose(root, tiny_bert, "ensemble", f"teachers={{tagger: [{ids['tagger']}, {ids['tagger_2']}]}}")
    datamodule = load_data(cfg)
    train = list(datamodule.examples["train"])
    _, tags = born_again_module(cfg, datamodule, build_model(cfg, datamodule.labels))
    assert tags["distill/teacher/tagger"] == f"{ids['tagger']},{ids['tagger_2']}"
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    each = [teacher_targets(load_teacher(ids[n], uri), train, root / "c") for n in ("tagger", "tagger_2")]
    assert not torch.allclose(each[0].logits["tagger"], each[1].logits["tagger"])  # two different teachers
    for i, ex in enumerate(datamodule.examples["train"]):
        mean = (each[0].of("tagger", i) + each[1].of("tagger", i)) / 2
        torch.testing.assert_close(ex.meta["teacher"]["tagger"], mean)
