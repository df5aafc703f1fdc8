"""data.train_limit draws N examples per task, also when the tasks come from different corpora, and
data.tasks keeps one task's examples: a single-task run trains on the same sample as the multitask run."""

import json
from collections import Counter

import pytest

from polyhead.data.datamodule import MultitaskDataModule


def jsonl(tmp_path, name, rows):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def spec(path, tasks):
    return {"path": path, "format": "jsonl", "tasks": tasks}


@pytest.fixture
def ewt_like(tmp_path):
    """Like experiment=ewt: one corpus with tags and a genre (3:1 c1:c2), another with entities only."""
    tagged = [
        {"id": f"t{i}", "tokens": ["a", "b"], "tags": ["X", "Y"], "cats": ["c2" if i % 4 == 0 else "c1"]}
        for i in range(40)
    ]
    ents = [{"id": f"e{i}", "tokens": ["a", "b"], "ents": [[0, 1, "PER"]]} for i in range(12)]
    train = [spec(jsonl(tmp_path, "tagged.jsonl", tagged), ["tagger", "textcat"])]
    train.append(spec(jsonl(tmp_path, "ents.jsonl", ents), ["ner"]))
    dev = [spec(jsonl(tmp_path, "dev_tagged.jsonl", tagged[:3]), ["tagger", "textcat"])]
    dev.append(spec(jsonl(tmp_path, "dev_ents.jsonl", ents[:2]), ["ner"]))
    return train, dev


def load(train, dev, **options):
    dm = MultitaskDataModule(train=train, dev=dev, test=dev, **options)
    dm.load()
    return dm


def per_task(examples) -> dict[str, int]:
    return {task: sum(ex.has(task) for ex in examples) for task in ("tagger", "ner", "textcat")}


@pytest.mark.parametrize(("limit", "expected"), [(8, (8, 8, 8)), (20, (20, 12, 20)), (None, (40, 12, 40))])
def test_datamodule_limit_gives_n_examples_of_every_task_across_corpora(ewt_like, limit, expected):
    dm = load(*ewt_like, train_limit=limit, seed=5)
    counts = per_task(dm.examples["train"])
    assert (counts["tagger"], counts["ner"], counts["textcat"]) == expected  # ner has 12 in all
    if limit == 8:  # stratified by genre: 3:1 in the corpus, 6:2 in the sample
        assert Counter(ex.get("textcat")[0] for ex in dm.examples["train"] if ex.has("textcat")) == {
            "c1": 6,
            "c2": 2,
        }


def test_datamodule_limit_is_seeded(ewt_like):
    ids = [[ex.id for ex in load(*ewt_like, train_limit=8, seed=s).examples["train"]] for s in (5, 5, 6)]
    assert ids[0] == ids[1] and ids[0] != ids[2]


def test_datamodule_limit_on_one_corpus_with_every_task_draws_n_examples(tmp_path):
    rows = [
        {"tokens": ["a"], "tags": ["X"], "ents": [], "cats": ["c1" if i % 2 else "c2"], "id": str(i)}
        for i in range(30)
    ]
    train = [spec(jsonl(tmp_path, "all.jsonl", rows), ["tagger", "ner", "textcat"])]
    dm = load(train, [], train_limit=10, seed=1)
    assert len(dm.examples["train"]) == 10
    assert per_task(dm.examples["train"]) == {"tagger": 10, "ner": 10, "textcat": 10}


@pytest.mark.parametrize("task", ["tagger", "ner", "textcat"])
def test_datamodule_limit_tasks_keeps_the_multitask_sample_of_one_task(ewt_like, task):
    multitask = load(*ewt_like, train_limit=8, seed=5)
    single = load(*ewt_like, train_limit=8, seed=5, tasks=[task])
    assert [ex.id for ex in single.examples["train"]] == [
        ex.id for ex in multitask.examples["train"] if ex.has(task)
    ]
    assert list(single.labels) == [task]
    for split in ("train", "dev", "test"):
        examples = single.examples[split]
        assert examples and all(ex.has(task) for ex in examples)
        assert sum(per_task(examples).values()) == len(examples)  # no other task's annotation is left


def test_datamodule_limit_keeps_the_labels_of_the_whole_training_set(tmp_path):
    """A rare tag the sample lacks is still a class (EWT's UPOS X at 100 sentences), so dev may have it."""
    rows = [{"id": str(i), "tokens": ["a"], "tags": ["X" if i == 7 else "N"]} for i in range(50)]
    train = [spec(jsonl(tmp_path, "train.jsonl", rows), ["tagger"])]
    dev = [spec(jsonl(tmp_path, "dev.jsonl", [{"tokens": ["b"], "tags": ["X"]}]), ["tagger"])]
    dm = load(train, dev, train_limit=5, seed=2)
    assert len(dm.examples["train"]) == 5 and all(ex.get("tagger") == ["N"] for ex in dm.examples["train"])
    assert dm.labels == {"tagger": ["N", "X"]}
