"""distill.py on a tiny random BERT: a trained 2-layer teacher -> a 1-layer student, tracked and exported."""

import os

import pytest
import spacy
import torch
from conftest import TINY_TRAINER, compose_config, tiny_run
from mlflow.tracking import MlflowClient

import polyhead.config  # noqa: F401
from polyhead.data.readers import read_corpus
from polyhead.data.schema import CorpusError
from polyhead.distill.layers import gather_teacher, student_from_teacher
from polyhead.distill.run import run_job
from polyhead.distill.teacher import load_teacher, teacher_targets, teacher_targets_in_parts
from polyhead.errors import UserError
from polyhead.export.checkpoint import load_checkpoint, pick_checkpoint
from polyhead.models.build import build_model
from polyhead.models.heads.soft import kl_divergence
from polyhead.training.run import run


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_bert):
    """A tiny teacher trained on the demo corpus: (project root with its MLflow store, run id)."""
    root = tmp_path_factory.mktemp("teacher")
    overrides = tiny_run(
        tiny_bert, "trainer.log_every_n_steps=1", "trainer.max_epochs=4", "optim.head_lr=5e-3", short=False
    )
    run(compose_config("train", root, overrides, root / "teacher_out"))
    client = MlflowClient(f"sqlite:///{root}/mlruns/mlflow.db")
    (found,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return root, found.info.run_id


def compose_distill(root, out, *overrides):
    cache = f"transfer.cache_dir={root}/cache"
    return compose_config(
        "distill", root, [*TINY_TRAINER, "trainer.log_every_n_steps=1", cache, *overrides], root / out
    )


def runs_of(root):
    client = MlflowClient(f"sqlite:///{root}/mlruns/mlflow.db")
    return client, client.search_runs([e.experiment_id for e in client.search_experiments()])


def held_out_kl(teacher_model, student_model, collate, examples) -> float:
    """Mean per-task KL(teacher || student) at T=1 over held-out texts."""
    align = collate.align([ex.words for ex in examples])
    with torch.inference_mode():
        _, t_logits = teacher_model.eval()(align)
        _, s_logits = student_model.eval()(align)
    total = 0.0
    for task, head in teacher_model.heads.items():
        mask = align.word_mask if t_logits[task].ndim == 3 else torch.ones(len(examples), dtype=torch.bool)
        exclusive = getattr(head, "exclusive", True)
        total += float(kl_divergence(s_logits[task][mask], t_logits[task][mask], 1.0, exclusive))
    return total / len(teacher_model.heads)


def test_distill_layers_student_learns_teacher_and_exports(teacher, tmp_path):
    root, run_id = teacher
    t = load_teacher(run_id, f"sqlite:///{root}/mlruns/mlflow.db")
    students = {}
    for alpha in (1.0, 0.0):  # distilled vs the same student trained on gold labels only
        out = f"student_alpha{alpha}"
        overrides = [f"teacher={run_id}", "student.keep=[1]", f"student.alpha={alpha}", "optim.lr=1e-3"]
        run_job(compose_distill(root, out, *overrides, "trainer.max_epochs=3", "optim.head_lr=5e-3"))
        students[alpha] = load_checkpoint(pick_checkpoint(root / out / "checkpoints"))
    client, runs = runs_of(root)
    student_run = next(r for r in runs if r.data.tags.get("distill/student") == "layers")
    assert student_run.info.status == "FINISHED"
    assert student_run.data.tags["distill/teacher_run_id"] == run_id
    assert student_run.data.tags["distill/transfer_gold_texts"] == "320"
    assert "test/tagger_acc" in student_run.data.metrics and "train/tagger_kl" in student_run.data.metrics
    assert student_run.info.experiment_id == client.get_run(run_id).info.experiment_id

    # on held-out texts the distilled student is closer to the teacher than the gold-trained one
    student, collate, scfg = students[1.0]
    assert student.encoder.num_layers == 1 and list(scfg.encoder.keep_layers) == [1]
    dev = read_corpus(t.cfg.data.dev[0].path, "jsonl")
    distilled, gold_only = (held_out_kl(t.model, students[a][0], collate, dev) for a in (1.0, 0.0))
    assert distilled < 0.5 * gold_only, (distilled, gold_only)

    # its pipeline loads and predicts like the Lightning model, with the 1-layer encoder
    nlp = spacy.load(root / "student_alpha1.0" / "spacy_pipeline")
    assert nlp.get_pipe("encoder").encoder.num_layers == 1
    doc = nlp("Anna flew to Paris on Monday .")
    assert all(tok.pos_ for tok in doc) and doc.cats
    words = [[tok.text for tok in doc]]
    expected = student.predict(collate.align(words), words)
    assert [tok.pos_ for tok in doc] == expected["tagger"][0]


def test_distill_student_starts_as_the_cut_teacher(teacher):
    """Layer i of the student is teacher layer keep[i]; embeddings and heads are the teacher's."""
    root, run_id = teacher
    t = load_teacher(run_id, f"sqlite:///{root}/mlruns/mlflow.db")
    cfg = t.cfg.copy()
    cfg.encoder.keep_layers = [1]
    student = build_model(cfg, t.labels)
    student_from_teacher(t.model, student, [1])
    teacher_state, student_state = t.model.state_dict(), student.state_dict()
    renamed = {k.replace(".layer.0.", ".layer.X."): v for k, v in student_state.items()}
    for key, value in renamed.items():
        source = key.replace(".layer.X.", ".layer.1.")
        assert torch.equal(value, teacher_state[source]), key
    assert len(student_state) < len(teacher_state)


def test_distill_teacher_targets_are_cached(teacher, tmp_path):
    root, run_id = teacher
    t = load_teacher(run_id, f"sqlite:///{root}/mlruns/mlflow.db")
    examples = read_corpus(t.cfg.data.dev[0].path, "jsonl")
    calls = []
    hook = t.model.encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        first = teacher_targets(t, examples, tmp_path / "cache")
        n_first = len(calls)
        second = teacher_targets(t, examples, tmp_path / "cache")
    finally:
        hook.remove()
    assert n_first > 0 and len(calls) == n_first  # the second call ran no teacher forward pass
    assert first.cached == [False] and second.cached == [True] and first.paths == second.paths
    for task in first.logits:
        assert torch.equal(first.logits[task], second.logits[task])
    assert first.kinds == {"tagger": "word", "ner": "word", "textcat": "text"}
    # other texts are other targets
    third = teacher_targets(t, examples[:5], tmp_path / "cache")
    assert third.cached == [False] and third.paths != first.paths
    # a new part next to cached ones: only the new part is labelled, the whole lines up with the examples
    calls.clear()
    hook = t.model.encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        both = teacher_targets_in_parts(t, [examples, examples[5:9]], tmp_path / "cache")
    finally:
        hook.remove()
    assert both.cached == [True, False] and both.cache_status == "partial" and len(calls) == 1
    for task in both.kinds:
        assert torch.equal(both.of(task, len(examples) + 1), first.of(task, 6))
        assert torch.equal(both.of(task, 3), first.of(task, 3))
    # the padded soft targets line up with the words of each example
    word_mask = torch.ones(2, 40, dtype=torch.bool)
    examples[0].meta["teacher"] = {"tagger": first.of("tagger", 0)}
    padded, mask = gather_teacher(examples[:2], "tagger", "word", word_mask)
    assert padded.shape == (2, 40, first.logits["tagger"].shape[-1])
    assert mask[0].sum() == len(examples[0].words) and not mask[1].any()


def test_distill_teacher_key_is_the_checkpoint_content(tmp_path):
    """A checkpoint replaced in place with the same size and mtime is another teacher; the same bytes found
    through another path or run are the same teacher."""
    from polyhead.distill.teacher import Teacher

    path = tmp_path / "best.ckpt"
    path.write_bytes(b"a" * 3_000_000)
    stamp = path.stat()
    before = Teacher(None, None, None, {}, path, "run-1").key
    path.write_bytes(b"a" * 2_999_999 + b"b")  # retrained and copied over: same name and size ...
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # ... and mtime (cp -p, rsync -t, a tar)
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stamp.st_size, stamp.st_mtime_ns)
    after = Teacher(None, None, None, {}, path, "run-1").key
    assert after != before
    copy = tmp_path / "copy.ckpt"
    copy.write_bytes(path.read_bytes())
    assert Teacher(None, None, None, {}, copy, None).key == after


def test_distill_teacher_targets_cut_short_are_labelled_again(teacher, tmp_path):
    root, run_id = teacher
    t = load_teacher(run_id, f"sqlite:///{root}/mlruns/mlflow.db")
    examples = read_corpus(t.cfg.data.dev[0].path, "jsonl")[:20]
    first = teacher_targets(t, examples, tmp_path / "cache")
    (folder,) = first.paths
    meta = folder / "meta.json"
    meta.write_text(meta.read_text()[:40])  # what a kill during a plain write_text left behind
    again = teacher_targets(t, examples, tmp_path / "cache")
    assert again.cached == [False] and again.paths == first.paths
    assert all(torch.equal(again.logits[task], first.logits[task]) for task in first.logits)
    assert teacher_targets(t, examples, tmp_path / "cache").cached == [True]
    logits = folder / "targets.safetensors"
    logits.write_bytes(logits.read_bytes()[:100])
    assert teacher_targets(t, examples, tmp_path / "cache").cached == [False]
    assert teacher_targets(t, examples, tmp_path / "cache").cached == [True]
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "targets.safetensors"]  # no temp left


def test_distill_teacher_targets_refuse_a_cache_others_could_write(teacher, tmp_path):
    root, run_id = teacher
    t = load_teacher(run_id, f"sqlite:///{root}/mlruns/mlflow.db")
    examples = read_corpus(t.cfg.data.dev[0].path, "jsonl")[:20]
    cache = tmp_path / "cache"
    (folder,) = teacher_targets(t, examples, cache).paths
    meta = folder / "meta.json"
    if os.getuid() == 0:  # root can hand the file to another user, as a shared cache would hold it
        os.chown(meta, 4242, 4242)
        with pytest.raises(UserError, match=f"^{meta}: cache file is owned by uid 4242, not by you"):
            teacher_targets(t, examples, cache)
        os.chown(meta, os.getuid(), os.getgid())
    for planted in (meta, folder, cache):
        planted.chmod(0o666 if planted == meta else 0o777)
        with pytest.raises(UserError, match=f"^{planted}: cache (file|folder) is writable by other users"):
            teacher_targets(t, examples, cache)
        planted.chmod(0o600 if planted == meta else 0o700)
    assert teacher_targets(t, examples, cache).cached == [True]


def test_distill_second_student_reads_the_cache(teacher):
    root, run_id = teacher
    for out in ("a", "b"):
        cfg = compose_distill(root, out, f"teacher={run_id}", "student.keep=[0]", "debug=limit")
        run_job(cfg)
    _, runs = runs_of(root)
    cache_tags = sorted(
        r.data.tags["distill/teacher_cache"] for r in runs if r.data.tags.get("distill/student") == "layers"
    )
    assert "hit" in cache_tags and cache_tags.count("miss") <= 1


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("teacher=0123456789abcdef0123456789abcdef", "not a checkpoint file, nor a run"),
        ("teacher=/no/such/best.ckpt", "no such checkpoint"),
        ("student.keep=[0,5]", r"student.keep=\[0, 5\]: layers must be integers in 0..1"),
        ("student.keep=[1,1]", "listed twice"),
        ("text.train.0.path={bad_text}", r"bad\.txt:2: binary file"),
    ],
)
def test_distill_bad_input_fails_before_any_run(teacher, tmp_path, override, error):
    root, run_id = teacher
    bad_text = tmp_path / "bad.txt"
    bad_text.write_bytes(b"fine line\n\x00binary\n")
    overrides = [f"teacher={run_id}", "text=demo", "student.keep=[0]", override.format(bad_text=bad_text)]
    _, before = runs_of(root)
    with pytest.raises((UserError, CorpusError), match=error):
        run_job(compose_distill(root, "bad", *overrides))
    _, after = runs_of(root)
    assert len(after) == len(before)


def test_distill_refuses_unfinished_run_and_foreign_checkpoint(teacher, tmp_path):
    root, run_id = teacher
    client, _ = runs_of(root)
    failed = client.create_run(client.get_run(run_id).info.experiment_id)
    client.set_tag(failed.info.run_id, "checkpoint_dir", str(root / "teacher_out" / "checkpoints"))
    client.set_terminated(failed.info.run_id, "FAILED")
    with pytest.raises(UserError, match="FAILED, not FINISHED"):
        load_teacher(failed.info.run_id, f"sqlite:///{root}/mlruns/mlflow.db")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(UserError, match="not a polyhead checkpoint"):
        load_teacher(str(foreign), None)


def test_distill_prefer_gold_keeps_gold_and_fills_the_rest():
    from polyhead.data.schema import Example, legacy_gold
    from polyhead.distill.teacher import prefer_gold

    words = ["Ann", "ran"]
    gold = Example(words, gold=legacy_gold(tags=["PROPN", "VERB"]))  # tags only: no gold entities or genre
    taught = Example(words, gold=legacy_gold(tags=["NOUN", "VERB"], ents=[(0, 1, "PER")], cats=("news",)))
    merged = prefer_gold(gold, taught)
    assert merged.get("tagger") == ["PROPN", "VERB"] and merged.get("ner") == [(0, 1, "PER")]
    assert merged.get("textcat") == ("news",)
    no_ents = prefer_gold(Example(words, gold=legacy_gold(ents=[])), taught)
    assert no_ents.get("ner") == []  # gold "no entities" is gold too
    assert no_ents.get("tagger") == ["NOUN", "VERB"]
