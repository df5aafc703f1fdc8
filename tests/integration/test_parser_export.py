"""Four heads on one encoder pass, the parser's trees read from CoNLL-U: a tiny run trains, the exported spaCy
pipeline sets token.head / token.dep_ exactly as the Lightning model predicts them, and `spacy evaluate`
(and polyhead.evaluate) report the run's test UAS / LAS."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import torch
from conftest import compose_train, write
from mlflow.tracking import MlflowClient
from omegaconf import open_dict

from polyhead.export.checkpoint import load_checkpoint, pick_checkpoint
from polyhead.export.pipeline import export_pipeline
from polyhead.training.run import run

NAMES, CITIES = ["maria", "elena", "tom", "amara", "okafor"], ["oslo", "kyoto", "lima", "hanoi", "sicily"]
VERBS, NOUNS = (
    ["won", "signed", "tested", "showed", "recorded"],
    ["team", "robot", "contract", "study", "prize"],
)
TEXTS = [
    "maria won to oslo .",
    "the team  signed the contract .",
    "",
    "  elena tom tested the robot in lima .",
]


def sentence(rng: random.Random, kind: int) -> tuple[str, list[tuple[str, str, int, str, str]]]:
    """A genre and its words as (form, upos, head, deprel, entity tag)."""
    name, name2, city, verb, noun = (
        rng.choice(NAMES),
        rng.choice(NAMES),
        rng.choice(CITIES),
        *rng.sample(VERBS, 1),
        rng.choice(NOUNS),
    )
    if kind == 0:  # NAME VERB to CITY .
        return "news", [
            (name, "PROPN", 2, "nsubj", "B-PER"),
            (verb, "VERB", 0, "root", "O"),
            ("to", "ADP", 4, "case", "O"),
            (city, "PROPN", 2, "obl", "B-LOC"),
            (".", "PUNCT", 2, "punct", "O"),
        ]
    if kind == 1:  # the NOUN VERB the NOUN .
        return "blog", [
            ("the", "DET", 2, "det", "O"),
            (noun, "NOUN", 3, "nsubj", "O"),
            (verb, "VERB", 0, "root", "O"),
            ("the", "DET", 5, "det", "O"),
            (rng.choice(NOUNS), "NOUN", 3, "obj", "O"),
            (".", "PUNCT", 3, "punct", "O"),
        ]
    return "email", [
        (name, "PROPN", 3, "nsubj", "B-PER"),
        (name2, "PROPN", 1, "flat", "I-PER"),
        (verb, "VERB", 0, "root", "O"),
        ("the", "DET", 5, "det", "O"),
        (noun, "NOUN", 3, "obj", "O"),
        ("in", "ADP", 7, "case", "O"),
        (city, "PROPN", 3, "obl", "B-LOC"),
        (".", "PUNCT", 3, "punct", "O"),
    ]


def write_split(tmp_path, split: str, n: int, seed: int) -> dict:
    """`n` sentences as CoNLL-U (tags, trees, genre in the sent_id) and as UNER-style entity columns."""
    rng, conllu, columns = random.Random(seed), [], []
    for i in range(n):
        genre, words = sentence(rng, i % 3)
        sent_id = f"{genre}-{split}-{i}"
        rows = [
            f"{k}\t{w}\t{w}\t{upos}\t_\t_\t{h}\t{d}\t_\t_" for k, (w, upos, h, d, _) in enumerate(words, 1)
        ]
        conllu.append(f"# sent_id = {sent_id}\n" + "\n".join(rows) + "\n")
        columns.append(
            f"# sent_id = {sent_id}\n"
            + "\n".join(f"{k}\t{w}\t{e}" for k, (w, *_, e) in enumerate(words, 1))
            + "\n"
        )
    trees = write(tmp_path, f"{split}.conllu", "\n".join(conllu))
    ents = write(tmp_path, f"{split}.iob2", "\n".join(columns))
    return {"conllu": str(trees), "iob2": str(ents)}


def corpora(files: dict) -> list[dict]:
    trees = {"head_column": "head", "deprel_column": "deprel", "cat_from": "sent_id_prefix"}
    columns = {"scheme": "iob2", "word_column": 1, "tag_column": 2, "separator": "\t"}
    return [
        {
            "path": files["conllu"],
            "format": "conllu",
            "tasks": ["tagger", "parser", "textcat"],
            "options": trees,
        },
        {"path": files["iob2"], "format": "columns", "tasks": ["ner"], "options": columns, "join": True},
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    tmp = tmp_path_factory.mktemp("parser")
    files = {
        split: write_split(tmp, split, n, seed)
        for split, n, seed in (("train", 60, 1), ("dev", 15, 2), ("test", 15, 3))
    }
    cfg = compose_train(
        tmp, tiny_bert, "model=multitask_parser", "trainer.max_epochs=8", "trainer.limit_train_batches=null"
    )
    with open_dict(cfg):
        for split in ("train", "dev", "test"):
            cfg.data[split] = corpora(files[split])
        cfg.objective.parser_las = 1.0
    run(cfg)
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    (r,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return tmp, cfg, client, r, files


def test_parser_export_trains_with_three_other_heads(trained):
    tmp, cfg, client, r, _ = trained
    metrics = r.data.metrics
    for key in (
        "test/parser_uas",
        "test/parser_las",
        "test/tagger_acc",
        "test/ner_f1",
        "test/textcat_macro_f1",
    ):
        assert key in metrics, key
    assert 0 <= metrics["test/parser_las"] <= metrics["test/parser_uas"] <= 1
    history = [m.value for m in client.get_metric_history(r.info.run_id, "val/parser_uas")]
    assert len(history) == 8 and history[-1] > history[0]  # it learns
    # 13/19 = 0.68 of the test words are right when every word hangs from the verb; this run gets 0.92
    assert metrics["test/parser_uas"] > 0.75


def test_parser_export_pipeline_matches_the_lightning_model(trained):
    tmp, *_ = trained
    model, collate, _ = load_checkpoint(pick_checkpoint(tmp / "out" / "checkpoints"))  # the best one
    nlp = spacy.load(export_pipeline(model, collate, tmp / "reexport", precision="fp32"))
    assert nlp.pipe_names == ["encoder", "tagger", "ner", "textcat", "parser"]
    docs = list(nlp.pipe(TEXTS, batch_size=2))
    words = [[t.text for t in d if not t.is_space] for d in nlp.tokenizer.pipe(TEXTS)]
    with torch.inference_mode():
        expected = model.predict(collate.align(words))["parser"]
    for doc, tree in zip(docs, expected):
        kept = [t for t in doc if not t.is_space]
        got = [(0 if t.head == t else kept.index(t.head) + 1, t.dep_) for t in kept]
        assert got == [(h, d) for h, d in tree]
        for t in (t for t in doc if t.is_space):  # hangs from the word before it, else from the first word
            assert t.head == next((w for w in reversed(kept) if w.i < t.i), kept[0]) and t.dep_ == "dep"
        if kept:
            assert sum(t.head == t for t in doc) == 1 and len(list(doc.sents)) == 1  # one tree per text


def test_parser_export_int8_encoder_runs_the_parsers_int8_copy(trained):
    """Beside an int8 encoder the parser runs its int8 copy (quantize_head), built once, and still gives one
    tree per text, unless its component says `int8 = false`; the tagger, NER and textcat heads run as they
    are; beside fp32 every head does."""
    from polyhead.export.quantize import FullRangeLinear

    tmp, *_ = trained
    for precision in ("int8-keep", "fp32"):
        config = {"components": {"encoder": {"precision": precision}}}
        nlp = spacy.load(tmp / "out" / "spacy_pipeline", config=config)
        docs = list(nlp.pipe(TEXTS, batch_size=2))
        assert {doc._.polyhead["precision"] for doc in docs} == {precision}
        parser = nlp.get_pipe("parser")
        runs = parser.runtime(precision)
        assert (runs is parser.head) == (precision == "fp32") and runs is parser.runtime(precision)
        int8 = {name for name, module in runs.named_modules() if isinstance(module, FullRangeLinear)}
        assert int8 == (set() if precision == "fp32" else {"projections", "head_side"})
        assert not any(isinstance(module, FullRangeLinear) for module in parser.head.modules())
        for name in ("tagger", "ner", "textcat"):
            assert nlp.get_pipe(name).runtime(precision) is nlp.get_pipe(name).head
        for doc in docs:
            kept = [t for t in doc if not t.is_space]
            assert not kept or sum(t.head == t for t in doc) == 1
    config = {"components": {"encoder": {"precision": "int8-keep"}, "parser": {"int8": False}}}
    parser = spacy.load(tmp / "out" / "spacy_pipeline", config=config).get_pipe("parser")
    assert parser.runtime("int8-keep") is parser.head  # the component's opt-out


def write_test_docbin(files: dict, tmp_path) -> Path:
    """The test split as a DocBin with its trees, tags and genres (`python -m polyhead.export.convert`)."""
    from polyhead.export.convert import main as convert

    docbin = tmp_path / "test.spacy"
    options = ["head_column=head", "deprel_column=deprel", "cat_from=sent_id_prefix"]
    convert([files["test"]["conllu"], str(docbin), "--format", "conllu"] + [f"--option={o}" for o in options])
    return docbin


def test_parser_export_spacy_evaluate_reports_the_run_uas_and_las(trained, tmp_path):
    tmp, cfg, client, r, files = trained
    from polyhead.evaluate import evaluate

    docbin = write_test_docbin(files, tmp_path)
    out = tmp_path / "scores.json"
    command = [sys.executable, "-m", "spacy", "evaluate", str(tmp / "out" / "spacy_pipeline"), str(docbin)]
    subprocess.run([*command, "--output", str(out)], check=True, capture_output=True)
    scores, metrics = json.loads(out.read_text()), r.data.metrics
    assert scores["dep_uas"] == pytest.approx(metrics["test/parser_uas"], abs=0.005)
    assert scores["dep_las"] == pytest.approx(metrics["test/parser_las"], abs=0.005)
    assert scores["pos_acc"] == pytest.approx(metrics["test/tagger_acc"], abs=0.005)
    ours = evaluate(tmp / "out" / "spacy_pipeline", docbin, tmp_path / "eval")
    assert ours["parser_las"] == pytest.approx(scores["dep_las"], abs=1e-6)
    assert ours["parser_uas"] == pytest.approx(scores["dep_uas"], abs=1e-6)
    assert set(ours["parser_las_per_type"]) <= {"nsubj", "root", "case", "obl", "punct", "det", "obj", "flat"}


def test_parser_export_gold_preproc_scores_the_gold_tokens_as_the_run_does(trained, tmp_path):
    """`--gold-preproc` (spaCy's and polyhead.evaluate's) feeds the pipeline the gold tokens, as the run's
    test step does; on a treebank whose tokens spaCy's tokenizer splits otherwise (EWT) only this path
    matches."""
    tmp, cfg, client, r, files = trained
    from polyhead.evaluate import main as evaluate_main

    docbin = write_test_docbin(files, tmp_path)
    pipeline, out = tmp / "out" / "spacy_pipeline", tmp_path / "scores.json"
    command = [sys.executable, "-m", "spacy", "evaluate", str(pipeline), str(docbin), "--gold-preproc"]
    subprocess.run([*command, "--output", str(out)], check=True, capture_output=True)
    scores, metrics = json.loads(out.read_text()), r.data.metrics
    evaluate_main([str(pipeline), str(docbin), str(tmp_path / "eval"), "--gold-preproc"])
    ours = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for spacy_key, ours_key in (
        ("dep_uas", "parser_uas"),
        ("dep_las", "parser_las"),
        ("pos_acc", "tagger_acc"),
    ):
        assert scores[spacy_key] == pytest.approx(metrics[f"test/{ours_key}"], abs=0.005)
        assert ours[ours_key] == pytest.approx(scores[spacy_key], abs=1e-6)
    # spaCy's --gold-preproc cuts Docs into sentences with Span.as_doc, which drops doc.cats; ours keeps them
    assert ours["textcat_macro_f1"] == pytest.approx(metrics["test/textcat_macro_f1"], abs=0.005)
