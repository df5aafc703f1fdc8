"""`python -m polyhead.evaluate <pipeline> <test.spacy> <out dir>`: the exported spaCy pipeline scored by
spaCy's own Scorer, written for DVC: metrics.json and, per classification head, a confusion CSV
(actual, predicted) that `dvc plots` renders with its confusion template."""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import spacy
from spacy.tokens import DocBin
from spacy.training import Example

KEYS = {
    "pos_acc": "tagger_acc",
    "tag_acc": "tagger_acc",
    "ents_p": "ner_precision",
    "ents_r": "ner_recall",
    "ents_f": "ner_f1",
    "cats_macro_f": "textcat_macro_f1",
    "cats_micro_f": "textcat_micro_f1",
}


def evaluate(pipeline: Path, docbin: Path, out: Path) -> dict:
    nlp = spacy.load(pipeline)
    gold = list(DocBin().from_disk(docbin).get_docs(nlp.vocab))
    start = time.perf_counter()
    predicted = list(nlp.pipe(nlp.make_doc(doc.text) for doc in gold))
    seconds = time.perf_counter() - start
    examples = [Example(p, g) for p, g in zip(predicted, gold)]
    scores = nlp.evaluate(examples)
    metrics = {name: round(scores[key], 6) for key, name in KEYS.items() if scores.get(key) is not None}
    metrics["ner_per_type"] = {
        k: {m: round(v, 6) for m, v in s.items()} for k, s in (scores.get("ents_per_type") or {}).items()
    }
    metrics["words_per_sec"] = round(sum(len(d) for d in gold) / seconds, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if "tagger" in nlp.pipe_names:
        attr = "pos_" if "pos_acc" in scores else "tag_"
        rows = [
            (getattr(g, attr), getattr(p, attr)) for e in examples for g, p in zip(e.reference, e.predicted)
        ]
        _write_pairs(out / "tagger_confusion.csv", rows)
    if "textcat" in nlp.pipe_names:
        rows = [
            (max(e.reference.cats, key=e.reference.cats.get), max(e.predicted.cats, key=e.predicted.cats.get))
            for e in examples
            if e.reference.cats
        ]
        _write_pairs(out / "textcat_confusion.csv", rows)
    return metrics


def _write_pairs(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["actual", "predicted"])
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", type=Path)
    parser.add_argument("docbin", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    print(json.dumps(evaluate(args.pipeline, args.docbin, args.out), indent=2))


if __name__ == "__main__":
    main()
