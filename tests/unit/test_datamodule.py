import json

import pytest

from polyhead.data.collate import LengthGroupedBatchSampler
from polyhead.data.datamodule import MultitaskDataModule
from polyhead.data.schema import CorpusError


def jsonl(tmp_path, name, rows):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def spec(path, tasks, **extra):
    return {"path": path, "format": "jsonl", "tasks": tasks, **extra}


@pytest.fixture
def corpora(tmp_path):
    tagged = [
        {"id": f"s{i}", "tokens": ["a", "b"], "tags": ["X", "Y"], "cats": ["c1" if i % 2 else "c2"]}
        for i in range(10)
    ]
    ents = [{"id": f"s{i}", "tokens": ["a", "b"], "ents": [[0, 1, "PER"]]} for i in range(10)]
    return jsonl(tmp_path, "tagged.jsonl", tagged), jsonl(tmp_path, "ents.jsonl", ents)


def test_datamodule_tasks_subset_masks_other_annotation(corpora):
    tagged, ents = corpora
    dm = MultitaskDataModule(train=[spec(tagged, ["tagger"]), spec(ents, ["ner"])], dev=[], test=[])
    dm.load()
    assert dm.labels == {"tagger": ["X", "Y"], "ner": ["PER"]}  # textcat dropped: not in tasks
    first, last = dm.examples["train"][0], dm.examples["train"][-1]
    assert first.get("tagger") and set(first.gold) == {"tagger"}  # no ner, no textcat (nor its field)
    assert last.get("ner") and set(last.gold) == {"ner"}


def test_datamodule_seeded_parts_are_disjoint_and_join_by_id(corpora):
    tagged, ents = corpora
    head = spec(ents, ["ner"], sample={"fraction": 0.8, "seed": 1, "part": "head"})
    tail = spec(ents, ["ner"], sample={"fraction": 0.8, "seed": 1, "part": "tail"})
    dm = MultitaskDataModule(
        train=[spec(tagged, ["tagger", "textcat"]), head],
        dev=[tail],
        test=[spec(tagged, ["tagger", "textcat"]), spec(ents, ["ner"], join=True)],
    )
    dm.load()
    train_ner = {ex.id for ex in dm.examples["train"] if ex.get("ner") is not None}
    dev_ids = {ex.id for ex in dm.examples["dev"]}
    assert len(train_ner) == 8 and len(dev_ids) == 2 and not train_ner & dev_ids
    assert len(dm.examples["test"]) == 10
    assert all(ex.get("tagger") and ex.get("ner") and ex.get("textcat") for ex in dm.examples["test"])


def test_datamodule_label_unseen_in_training_is_an_error(tmp_path, corpora):
    tagged, _ = corpora
    dev = jsonl(tmp_path, "dev.jsonl", [{"tokens": ["a"], "tags": ["X"]}, {"tokens": ["a"], "tags": ["Z"]}])
    dm = MultitaskDataModule(train=[spec(tagged, ["tagger"])], dev=[spec(dev, ["tagger"])], test=[])
    with pytest.raises(CorpusError, match=r"dev\.jsonl:2: dev tagger label 'Z' never occurs in training"):
        dm.load()


def test_datamodule_train_limit_is_seeded_and_stratified(corpora):
    tagged, _ = corpora
    picks = []
    for _ in range(2):
        dm = MultitaskDataModule(train=[spec(tagged, ["textcat"])], dev=[], test=[], train_limit=4, seed=3)
        dm.load()
        picks.append([ex.id for ex in dm.examples["train"]])
    assert picks[0] == picks[1] and len(picks[0]) == 4
    assert sorted(ex.get("textcat")[0] for ex in dm.examples["train"]) == ["c1", "c1", "c2", "c2"]


def test_datamodule_length_grouped_batches_cover_everything_once():
    lengths = [5, 50, 6, 49, 7, 48, 8, 47] * 10
    sampler = LengthGroupedBatchSampler(lengths, batch_size=4, seed=0, pool=5)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(80))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread < 0.2 * sum(max(lengths) - min(lengths) for _ in batches)
    sampler.set_epoch(1)
    assert list(sampler) != batches


@pytest.mark.parametrize(("alpha", "shares"), [(1.0, [80, 20]), (0.0, [50, 50]), (0.5, [67, 33])])
def test_datamodule_corpus_shares_follow_size_to_the_alpha(alpha, shares):
    from polyhead.data.collate import corpus_shares

    assert corpus_shares([80, 20], alpha) == shares


def test_datamodule_sampling_alpha_draws_each_corpus_its_share_per_epoch(tmp_path):
    big = jsonl(tmp_path, "big.jsonl", [{"tokens": ["a", f"w{i}"], "tags": ["X", "Y"]} for i in range(8)])
    small = jsonl(tmp_path, "small.jsonl", [{"tokens": ["b"], "ents": [[0, 1, "PER"]]} for _ in range(2)])
    dm = MultitaskDataModule(
        train=[spec(big, ["tagger"]), spec(small, ["ner"])], dev=[], test=[], batch_size=2, sampling_alpha=0
    )
    dm.load()
    sampler = dm.train_dataloader().batch_sampler
    seen = [[], []]
    for epoch in range(3):
        sampler.set_epoch(epoch)
        drawn = [i for batch in sampler for i in batch]
        assert len(drawn) == 10 and len(sampler) == 5  # the epoch keeps its length
        corpus = [dm.train_corpus(dm.examples["train"][i]) for i in drawn]
        assert corpus.count(0) == 5 and corpus.count(1) == 5  # uniform over the two corpora
        seen[0].append(sorted(i for i, c in zip(drawn, corpus) if c == 0))
    assert len({tuple(s) for s in seen[0]}) > 1  # the big corpus gives different examples each epoch
    with pytest.raises(CorpusError, match=r"data.sampling_alpha: must be in \[0, 1\]"):
        MultitaskDataModule(train=[spec(big, ["tagger"])], dev=[], test=[], sampling_alpha=2)
