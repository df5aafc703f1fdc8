"""`python -m polyhead.evaluate <pipeline> <test.spacy> <out dir> [--gold-preproc]`: the exported pipeline
scored by spaCy's own Scorer (each head's `score`), written for DVC: metrics.json under training's metric
names and, per head with one label per token or text (tagger, textcat), a confusion CSV (actual, predicted)
that `dvc plots` renders with its confusion template.

By default the pipeline reads each text as a user's text reaches it, tokenised by spaCy's tokenizer, which
splits some words differently from a treebank (scores are then aligned as `spacy evaluate` aligns them).
`--gold-preproc` (as `spacy evaluate --gold-preproc`) gives it the gold tokens instead, which is what the
run's test metrics measure: the two then agree, exactly where the encoder runs fp32 and within its rounding
where `precision: auto` runs bf16 or int8 (docs/export.md)."""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import Example

from polyhead.export.components import PolyheadHead


def metric_names(task: str, head, options: dict) -> dict[str, str]:
    """spaCy's score keys of a task's component -> the names training logs (pos_acc -> tagger_acc)."""
    return {key: f"{task}_{name}" for key, name in head.score_names(options).items()}


def evaluate(pipeline: Path, docbin: Path, out: Path, gold_preproc: bool = False) -> dict:
    nlp = spacy.load(pipeline)
    gold = list(DocBin().from_disk(docbin).get_docs(nlp.vocab))
    start = time.perf_counter()
    texts = (gold_tokens(doc) if gold_preproc else nlp.make_doc(doc.text) for doc in gold)
    predicted = list(nlp.pipe(texts))
    seconds = time.perf_counter() - start
    examples = [Example(p, g) for p, g in zip(predicted, gold)]
    metrics = {}
    for name, pipe in nlp.pipeline:  # each task's component on its own: two tasks may share a score key
        if isinstance(pipe, PolyheadHead):
            scores = pipe.score(examples)
            names = metric_names(name, pipe.head, pipe.settings)
            metrics |= {m: _rounded(scores[key]) for key, m in names.items() if scores.get(key) is not None}
    metrics["words_per_sec"] = round(sum(len(d) for d in gold) / seconds, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    for name, pipe in nlp.pipeline:
        pairs = pipe.confusion_pairs(examples) if isinstance(pipe, PolyheadHead) else None
        if pairs is not None:
            _write_pairs(out / f"{name}_confusion.csv", pairs)
    return metrics


def gold_tokens(doc: Doc) -> Doc:
    """An unannotated Doc with `doc`'s tokens and spaces."""
    return Doc(doc.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])


def _rounded(value):
    """A score, or a table of them (per entity type, per relation), to 6 decimals."""
    return {k: _rounded(v) for k, v in value.items()} if isinstance(value, dict) else round(value, 6)


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
    parser.add_argument(
        "--gold-preproc",
        action="store_true",
        help="the gold tokens, not spaCy's tokenizer (as spacy evaluate)",
    )
    args = parser.parse_args(argv)
    print(json.dumps(evaluate(args.pipeline, args.docbin, args.out, args.gold_preproc), indent=2))


if __name__ == "__main__":
    main()
