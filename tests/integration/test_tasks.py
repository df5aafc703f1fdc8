"""Tasks, not head kinds: seven tasks of five head kinds (two tag tasks, features, lemmas, a tree, entities)
plus two classification tasks on two corpora train on one tiny encoder, export as one spaCy pipeline
that sets every attribute, and predict what the Lightning model predicts on the same words."""

import copy

import pytest
import spacy
import torch
from conftest import compose_nine_tasks
from omegaconf import open_dict

from polyhead.data.collate import Collator
from polyhead.errors import UserError
from polyhead.export.checkpoint import load_checkpoint
from polyhead.export.pipeline import build_pipeline, export_pipeline
from polyhead.models.build import build_model
from polyhead.tokens.alignment import Windowing
from polyhead.tokens.wordpieces import load_tokenizer
from polyhead.training.run import load_data, run


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    tmp = tmp_path_factory.mktemp("tasks")
    cfg = compose_nine_tasks(tmp, tiny_bert, "trainer.max_epochs=1", "trainer.limit_train_batches=4")
    run(cfg)
    return tmp, cfg


def test_tasks_nine_tasks_export_as_one_pipeline_that_predicts_as_the_model(trained, tiny_bert):
    tmp, cfg = trained
    model, collate, _ = load_checkpoint(next((tmp / "out" / "checkpoints").glob("best*.ckpt")))  # the run's
    nlp = spacy.load(export_pipeline(model, collate, tmp / "again", precision="fp32"))
    assert nlp.pipe_names == [
        "encoder",
        "upos",
        "xpos",
        "feats",
        "lemma",
        "parser",
        "ner",
        "genre",
        "bank",
        "home",
    ]
    assert spacy.load(tmp / "out" / "spacy_pipeline").pipe_names == nlp.pipe_names  # what the run exported
    texts = ["The cats sat in Paris .", "The dog running .", "Maria flew to New York"]
    docs = list(nlp.pipe(texts))
    words = [[t.text for t in doc] for doc in docs]
    with torch.inference_mode():
        predicted = model.predict(collate.align(words), words)
    heads = model.heads
    for i, (doc, ws) in enumerate(zip(docs, words)):
        gold = {task: heads[task].as_gold(p[i], ws) for task, p in predicted.items()}
        assert [t.pos_ for t in doc] == gold["upos"]
        assert [t.tag_ for t in doc] == gold["xpos"]
        assert [str(t.morph) or "_" for t in doc] == gold["feats"]
        assert [t.lemma_ for t in doc] == gold["lemma"]
        assert ([0 if t.head.i == t.i else t.head.i + 1 for t in doc], [t.dep_ for t in doc]) == gold[
            "parser"
        ]
        assert [(e.start, e.end, e.label_) for e in doc.ents] == gold["ner"]
        for task in ("genre", "bank", "home"):  # one doc.cats, each task's labels its own
            assert {k: doc.cats[k] for k in heads[task].labels} == pytest.approx(predicted[task][i], abs=1e-5)
    assert set(docs[0].cats) == {"blog", "news", "balance", "card", "weather", "timer"}


def test_tasks_spacy_evaluate_scores_every_task_under_its_name(trained):
    from polyhead.evaluate import evaluate
    from polyhead.export.convert import gold_writers, to_docbin

    tmp, cfg = trained
    dm = load_data(cfg)
    test = dm.examples["test"]
    to_docbin(test, "en", gold_writers(test, cfg.model.heads)).to_disk(tmp / "test.spacy")
    metrics = evaluate(tmp / "out" / "spacy_pipeline", tmp / "test.spacy", tmp / "eval", gold_preproc=True)
    for name in (
        "upos_acc",
        "xpos_acc",
        "feats_acc",
        "lemma_acc",
        "parser_las",
        "ner_f1",
        "genre_macro_f1",
        "bank_macro_f1",
        "home_macro_f1",
    ):
        assert 0.0 <= metrics[name] <= 1.0, name


def test_tasks_two_tasks_writing_one_place_is_an_export_error(trained, tiny_bert):
    tmp, cfg = trained
    cfg = copy.deepcopy(cfg)  # the module's run config stays as it was
    dm = load_data(cfg)
    with open_dict(cfg):
        cfg.model.heads.xpos.attr = "pos"
    model = build_model(cfg, dm.labels, kinds=dm.kinds)
    collate = Collator(load_tokenizer(str(tiny_bert)), Windowing(30, 20, "first"))
    with pytest.raises(UserError, match="tasks 'upos' and 'xpos' both write token.pos"):
        build_pipeline(model, collate)
    with open_dict(cfg):
        cfg.model.heads.xpos.attr = "tag"
        cfg.model.heads.bank2 = dict(cfg.model.heads.bank)
    dm.labels["bank2"] = dm.labels["bank"]
    with pytest.raises(UserError, match="tasks 'bank' and 'bank2' have the label 'balance'"):
        build_pipeline(build_model(cfg, dm.labels), collate)


def test_tasks_a_head_of_another_kind_than_its_corpus_is_an_error(trained):
    _, cfg = trained
    cfg = copy.deepcopy(cfg)
    dm = load_data(cfg)
    with open_dict(cfg):
        cfg.model.heads.lemma = {
            "_target_": "polyhead.models.heads.tagger.TokenTaggingHead",
            "_partial_": True,
        }
    with pytest.raises(
        UserError, match="model.heads.lemma learns tags but the corpora give task 'lemma' lemmas"
    ):
        build_model(cfg, dm.labels, kinds=dm.kinds)


def test_tasks_prepare_writes_every_task_and_a_corpus_without_tasks_reads_them_back(trained, tmp_path):
    """The DVC pipeline's prepare stage: nine named tasks of six kinds in JSONL, read back as they were."""
    from polyhead.data.datamodule import CorpusSpec
    from polyhead.prepare import prepare

    _, cfg = trained
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.paths.prepared_dir = str(tmp_path / "prepared")
    out = prepare(cfg)
    examples = load_data(cfg).examples
    for split in ("train", "dev", "test"):
        spec = CorpusSpec(str(out / f"{split}.jsonl"), "jsonl")
        back = spec.read()
        assert [(ex.words, ex.gold) for ex in back] == [(ex.words, ex.gold) for ex in examples[split]]
    assert set(spec.tasks) == set(cfg.model.heads)
    assert (out / "test.spacy").is_file()
