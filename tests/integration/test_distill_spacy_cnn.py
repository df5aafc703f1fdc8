"""Student spacy_cnn: the real `spacy train` on tiny teacher-labelled (and partially annotated gold) data,
the pipeline loaded with spacy.load, its MLflow run read back, and missing annotation kept missing."""

import json
import random
import subprocess
import sys
from dataclasses import replace

import numpy
import pytest
import spacy
from conftest import PROJECT_ROOT, compose_config
from mlflow.tracking import MlflowClient
from spacy.scorer import Scorer, get_ner_prf
from spacy.tokens import Doc, DocBin
from spacy.training import Corpus
from spacy.training import Example as GoldPair

from polyhead.data.schema import Example, Gold, legacy_gold
from polyhead.distill.spacy_cnn import merge_same_text, pipeline_components, run_spacy_cnn
from polyhead.errors import UserError
from polyhead.export.convert import legacy_writers

PER, LOC, FOOD = (
    ["Maria", "John", "Aiko", "Pierre", "Sam"],
    ["Paris", "Rome", "Lima", "Oslo"],
    ["pasta", "soup"],
)
TEMPLATES = [  # (words, UPOS, entity slots {index: type}, genre)
    ("{P} visited {L} .", "PROPN VERB PROPN PUNCT", {0: "PER", 2: "LOC"}, "travel"),
    ("{P} flew to {L} today .", "PROPN VERB ADP PROPN NOUN PUNCT", {0: "PER", 3: "LOC"}, "travel"),
    ("{P} ate {F} in {L} .", "PROPN VERB NOUN ADP PROPN PUNCT", {0: "PER", 4: "LOC"}, "food"),
    ("The {F} was very good .", "DET NOUN AUX ADV ADJ PUNCT", {}, "food"),
]


def toy_examples(n: int, seed: int, prefix: str) -> list[Example]:
    """Fully annotated toy sentences (as a teacher labels every text): UPOS, PER/LOC entities, one genre."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        pattern, tags, slots, genre = TEMPLATES[i % len(TEMPLATES)]
        fill = {"P": rng.choice(PER), "L": rng.choice(LOC), "F": rng.choice(FOOD)}
        words = pattern.format(**fill).split()
        examples.append(
            Example(
                words=words,
                spaces=[True] * (len(words) - 2) + [False, False],
                gold=legacy_gold(
                    tags=tags.split(), ents=[(k, k + 1, label) for k, label in slots.items()], cats=(genre,)
                ),
                id=f"{prefix}-{i}",
            )
        )
    return examples


def compose(tmp_path, *overrides):
    return compose_config(
        "train",
        tmp_path,
        ["+student=spacy_cnn", "student.max_steps=60", "student.eval_frequency=20", "seed=3", *overrides],
        tmp_path / "out",
    )


def writers_of(examples: list[Example], tag_attr: str) -> dict:
    """legacy_writers in the default model's task order (tagger, ner, textcat), the components' order."""
    found = legacy_writers(examples, tag_attr)
    return {task: found[task] for task in ("tagger", "ner", "textcat", "parser") if task in found}


def split_annotation(examples: list[Example]) -> list[Example]:
    """Gold as EWT + UNER give it: every sentence with tags + genre only, a few again with entities only."""
    tags_cats = [ex.keep_tasks(["tagger", "textcat"]) for ex in examples]
    return tags_cats + [ex.keep_tasks(["ner"]) for ex in examples[::4]]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cnn_teacher")
    cfg = compose(tmp)
    tags = {"distill/teacher_run_id": "abc123", "distill/transfer_texts": "toy"}
    dev = split_annotation(toy_examples(16, seed=1, prefix="dev"))
    pipeline = run_spacy_cnn(cfg, toy_examples(48, 0, "train"), dev, toy_examples(24, 2, "test"), tags)
    return tmp, pipeline


@pytest.fixture(scope="module")
def gold_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cnn_gold")
    cfg = compose(tmp, "student.labels=gold")
    train = split_annotation(toy_examples(48, 0, "train"))
    dev = split_annotation(toy_examples(16, seed=1, prefix="dev"))
    return tmp, run_spacy_cnn(cfg, train, dev, toy_examples(24, 2, "test"), {})


def test_distill_spacy_cnn_pipeline_loads_and_predicts_pos_ents_cats(teacher_run):
    _, pipeline = teacher_run
    nlp = spacy.load(pipeline)
    assert nlp.pipe_names == ["tok2vec", "morphologizer", "ner", "textcat"]
    doc = nlp("Aiko visited Lima .")
    assert all(t.pos_ in {"PROPN", "VERB", "ADP", "NOUN", "PUNCT", "DET", "AUX", "ADV", "ADJ"} for t in doc)
    assert {e.label_ for e in doc.ents} <= {"PER", "LOC"}
    assert set(doc.cats) == {"travel", "food"}
    assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)
    assert not any(p.name.endswith(".safetensors") for p in pipeline.rglob("*"))  # nothing of polyhead's


def test_distill_spacy_cnn_mlflow_run_has_spacy_scores_on_gold_test_and_tags(teacher_run):
    tmp, pipeline = teacher_run
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    assert tags["distill/student"] == "spacy_cnn" and tags["distill/labels"] == "teacher"
    assert tags["distill/teacher_run_id"] == "abc123" and tags["hw/cpu_model"] and tags["git_commit"]
    assert params["spacy.nlp.pipeline"] == str(["tok2vec", "morphologizer", "ner", "textcat"])
    assert params["spacy.training.max_steps"] == "60" and params["spacy.system.seed"] == "3"
    assert "spacy_pipeline/meta.json" in {
        a.path for a in client.list_artifacts(run.info.run_id, "spacy_pipeline")
    }
    # The logged test metrics are spaCy's scores of this pipeline on the gold test Docs (gold tokens).
    nlp = spacy.load(pipeline)
    gold = list(DocBin().from_disk(tmp / "out" / "spacy_cnn" / "corpus" / "test.spacy").get_docs(nlp.vocab))
    pairs = [
        GoldPair(nlp(Doc(nlp.vocab, words=[t.text for t in g], spaces=[bool(t.whitespace_) for t in g])), g)
        for g in gold
    ]
    assert metrics["test/tagger_acc"] == pytest.approx(Scorer.score_token_attr(pairs, "pos")["pos_acc"])
    assert metrics["test/ner_f1"] == pytest.approx(get_ner_prf(pairs)["ents_f"])
    cats = Scorer.score_cats(pairs, "cats", labels=["food", "travel"], multi_label=False)
    assert metrics["test/textcat_macro_f1"] == pytest.approx(cats["cats_macro_f"])
    assert {"test/ner_precision", "test/ner_recall", "val/tagger_acc"} <= set(metrics)
    assert metrics["test/tagger_acc"] > 0.8  # 60 steps on a regular toy language: far above chance


def test_distill_spacy_cnn_gold_keeps_missing_annotation_missing(gold_run):
    tmp, pipeline = gold_run
    nlp = spacy.load(pipeline)
    # Texts without categories among the training data: textcat_multilabel (masks them), scored as exclusive.
    assert nlp.pipe_names == ["tok2vec", "morphologizer", "ner", "textcat_multilabel"]
    assert nlp.config["components"]["textcat_multilabel"]["scorer"]["@scorers"] == "spacy.textcat_scorer.v2"
    corpus = Corpus(tmp / "out" / "spacy_cnn" / "corpus" / "train.spacy")
    examples = list(corpus(nlp))
    tagged = [eg for eg in examples if eg.reference.has_annotation("POS")]
    entities = [eg for eg in examples if not eg.reference.has_annotation("POS")]
    assert len(tagged) == 48 and len(entities) == 12
    # No entities annotated is "unknown" for every token, not "O"; an annotated sentence has its O's.
    assert all(tag is None for eg in tagged for tag in eg.get_aligned_ner())
    assert all(tag is not None for eg in entities for tag in eg.get_aligned_ner())
    assert any(tag == "O" for eg in entities for tag in eg.get_aligned_ner())
    # spaCy's own losses give no gradient where annotation is missing, and some where it exists.
    morph = nlp.get_pipe("morphologizer")
    rows = [numpy.full((len(eg.predicted), len(morph.labels)), 0.5, dtype="f") for eg in examples]
    _, d_tags = morph.get_loss(examples, rows)
    for eg, d in zip(examples, d_tags):
        assert bool(numpy.abs(d).sum()) == eg.reference.has_annotation("POS")
    textcat = nlp.get_pipe("textcat_multilabel")
    scores = numpy.full((len(examples), len(textcat.labels)), 0.5, dtype="f")
    _, d_cats = textcat.get_loss(examples, scores)
    assert [bool(numpy.abs(d).sum()) for d in d_cats] == [bool(eg.reference.cats) for eg in examples]


def test_distill_spacy_cnn_dev_merges_annotation_of_the_same_text():
    examples = toy_examples(4, 0, "x")
    parts = split_annotation(examples)
    merged = merge_same_text(parts)
    assert len(merged) == 4
    for task in ("tagger", "ner", "textcat"):
        assert merged[0].get(task) == examples[0].get(task)
    assert merged[1].get("ner") is None
    # the inputs are left as they were
    assert not parts[0].has("ner") and not split_annotation(examples)[0].has("ner")


@pytest.mark.parametrize(
    ("keep", "tag_attr", "expected"),
    [
        (["tagger", "ner", "textcat"], "pos", (["morphologizer", "ner", "textcat"], True)),
        (["tagger", "textcat"], "tag", (["tagger", "textcat"], True)),
        (["ner"], "pos", (["ner"], True)),
    ],
)
def test_distill_spacy_cnn_components_follow_the_annotation(keep, tag_attr, expected):
    train = [ex.keep_tasks(keep) for ex in toy_examples(8, 0, "x")]
    assert pipeline_components(train, writers_of(train, tag_attr)) == expected


def test_distill_spacy_cnn_max_minutes_stops_at_an_evaluation_and_keeps_model_best(tmp_path):
    cfg = compose(tmp_path, "student.max_steps=100000", "student.max_minutes=0.0001")
    pipeline = run_spacy_cnn(cfg, toy_examples(16, 0, "train"), toy_examples(8, 1, "dev"), [], {})
    assert spacy.load(pipeline)("Sam visited Oslo .").has_annotation("POS")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED" and run.data.tags["spacy_cnn/stopped_by"] == "max_minutes"
    assert run.data.metrics["train/steps"] == 0  # spaCy evaluates at step 0: the first row after the budget


def test_distill_spacy_cnn_bench_distill_scores_match_the_run_and_fractions_are_of_the_teacher(
    teacher_run, gold_run
):
    """bench/distill.py on two pipelines: its scores are the ones the runs logged, fractions relative."""
    (tmp, pipeline), (_, gold_pipeline) = teacher_run, gold_run
    out = tmp / "bench.json"
    docbin = tmp / "out" / "spacy_cnn" / "corpus" / "test.spacy"
    cmd = [sys.executable, str(PROJECT_ROOT / "bench" / "distill.py"), f"teacher={pipeline}"]
    cmd += [f"gold={gold_pipeline}", "--docbin", str(docbin), "--texts", "8", "--repeats", "1"]
    cmd += ["--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("CPU: ") and "gold" in done.stdout
    report = json.loads(out.read_text())
    teacher, gold = report["results"]["teacher"], report["results"]["gold"]
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    for key in ("tagger_acc", "ner_f1", "textcat_macro_f1"):
        assert teacher["metrics"][key] == pytest.approx(run.data.metrics[f"test/{key}"])
        assert teacher["fraction_of_teacher"][key] == 1.0
        ratio = gold["metrics"][key] / teacher["metrics"][key]
        assert gold["fraction_of_teacher"][key] == pytest.approx(ratio)
    assert gold["x_teacher_words_per_sec"] == pytest.approx(gold["words_per_sec"] / teacher["words_per_sec"])
    assert teacher["disk_mb"] > 0 and teacher["peak_rss_mb"] > 0 and report["hardware"]["hw/cpu_model"]


def test_distill_spacy_cnn_textcat_choice_follows_the_categories_and_the_teacher_head():
    train = toy_examples(4, 0, "x")
    partial = split_annotation(train)  # entity-only texts lack categories: exclusive textcat cannot mask
    assert pipeline_components(partial, writers_of(partial, "pos"))[0][-1] == "textcat_multilabel"
    several = [replace(ex, gold={**ex.gold, "textcat": Gold("cats", ("food", "travel"))}) for ex in train]
    writers = writers_of(several, "pos")
    assert pipeline_components(several, writers) == (["morphologizer", "ner", "textcat_multilabel"], False)
    assert pipeline_components(train, writers_of(train, "pos"), exclusive=False)[1] is False
    with pytest.raises(UserError, match="exactly one category"):
        pipeline_components(several, writers, textcat="textcat")
