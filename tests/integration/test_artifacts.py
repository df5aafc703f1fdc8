"""A tiny training run logs confusion matrices (tagger, textcat) and per-type entity scores under test/."""

import csv
from collections import Counter

import pytest
from conftest import compose_train, only_run

from polyhead.config import PACKAGE_DIR
from polyhead.data.readers import read_corpus
from polyhead.training.run import run


def read_rows(client, run_id, path, tmp_path) -> list[list[str]]:
    with open(client.download_artifacts(run_id, path, str(tmp_path))) as f:
        return list(csv.reader(f))


def test_artifacts_confusion_matrices_and_entity_table_match_test_metrics(tmp_path, tiny_bert):
    run(compose_train(tmp_path, tiny_bert, "trainer.max_epochs=1", "export.enabled=false"))
    client, (r,) = only_run(tmp_path)
    run_id, metrics = r.info.run_id, r.data.metrics
    logged = {a.path for a in client.list_artifacts(run_id, "test")}
    names = ("tagger_confusion.png", "tagger_confusion.csv", "textcat_confusion.png", "textcat_confusion.csv")
    assert {f"test/{n}" for n in (*names, "ner_per_type.csv", "ner_per_type.md")} == logged
    gold = read_corpus(PACKAGE_DIR / "corpora" / "demo_test.jsonl", "jsonl")

    for task, total in (("tagger", sum(len(ex.get("tags")) for ex in gold)), ("textcat", len(gold))):
        header, *rows = read_rows(client, run_id, f"test/{task}_confusion.csv", tmp_path)
        labels = [row[0] for row in rows]
        assert header[1:] == labels
        counts = [[int(v) for v in row[1:]] for row in rows]
        assert sum(map(sum, counts)) == total  # every labelled test word / text once
        correct = sum(counts[i][i] for i in range(len(labels)))
        assert correct / total == pytest.approx(metrics[f"test/{task}_acc"], abs=1e-6)

    header, *rows = read_rows(client, run_id, "test/ner_per_type.csv", tmp_path)
    assert header == ["type", "precision", "recall", "f1", "support"]
    support = Counter(label for ex in gold for _, _, label in ex.get("spans"))
    for name, _, _, f1, n in rows:
        assert float(f1) == pytest.approx(metrics[f"test/ner_f1_{name}"], abs=1e-4)
        assert int(n) == support[name]
    assert [row[0] for row in rows] == sorted(support)
