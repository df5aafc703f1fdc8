"""Inference speed of an exported pipeline on the EWT test texts: words/s of nlp.pipe and peak RSS.

Each configuration loads the pipeline in its own process (peak RSS is per process) and times
`nlp.pipe(texts, batch_size=...)` over every text, median of `--repeats` passes after one warm-up pass.
Accuracy (UPOS, entity F1, genre macro-F1) is scored with spaCy's own scorer against the gold
annotation, so the cost of reduced precision shows next to its speed.

    python bench/inference.py outputs/runs/<run>/spacy_pipeline --corpora ../shared/data
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

from isolated import run_each

CONFIGS = {  # name -> (precision, components to disable)
    "fp32, all heads": ("fp32", []),
    "fp32, tagger only": ("fp32", ["ner", "textcat"]),
    "bf16, all heads": ("bf16", []),
    "int8, all heads": ("int8", []),
}


def gold_examples(corpora: str):
    """EWT test joined with UNER test, exactly as `experiment=ewt` defines and reads it."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import polyhead.config  # noqa: F401
    from polyhead.export.convert import to_docbin

    root = Path(__file__).resolve().parents[1]
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=ewt", f"paths.corpora={corpora}", "paths.output_dir=."])
    datamodule = instantiate(cfg.data)
    datamodule.load()
    examples = datamodule.examples["test"]
    return examples, to_docbin(examples)


def measure(pipeline: str, corpora: str, name: str, repeats: int, batch_size: int) -> dict:
    import spacy
    from spacy.tokens import Doc
    from spacy.training import Example

    precision, disable = CONFIGS[name]
    nlp = spacy.load(pipeline, disable=disable, config={"components": {"encoder": {"precision": precision}}})
    examples, docbin = gold_examples(corpora)
    texts = [ex.text for ex in examples]
    words = sum(len(nlp.make_doc(t)) for t in texts)
    list(nlp.pipe(texts[:256], batch_size=batch_size))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        docs = list(nlp.pipe(texts, batch_size=batch_size))
        times.append(time.perf_counter() - start)
    # Accuracy on the gold tokenisation: evaluate() runs the pipeline on unannotated copies of the gold docs.
    gold = list(docbin.get_docs(nlp.vocab))
    bare = [Doc(nlp.vocab, words=[t.text for t in g], spaces=[bool(t.whitespace_) for t in g]) for g in gold]
    scores = nlp.evaluate([Example(b, g) for b, g in zip(bare, gold)], batch_size=batch_size)
    del docs
    return {
        "words_per_sec": words / statistics.median(times),
        "seconds": times,
        "words": words,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "upos": scores.get("pos_acc"),
        "ents_f": scores.get("ents_f"),
        "genre_macro_f": scores.get("cats_macro_f"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("pipeline")
    parser.add_argument("--corpora", default="../shared/data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default="bench/results/inference.json")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.pipeline, args.corpora, args.only, args.repeats, args.batch_size)))
        return
    options = [
        "--corpora",
        args.corpora,
        "--repeats",
        str(args.repeats),
        "--batch-size",
        str(args.batch_size),
    ]
    results = run_each(__file__, [args.pipeline, *options], CONFIGS)

    def pct(v):
        return f"{100 * v:6.2f}" if v is not None else "     -"

    print(f"{'configuration':<20} {'words/s':>8} {'RSS GB':>7} {'UPOS':>7} {'ent F1':>7} {'genre F':>7}")
    for name, r in results.items():
        print(
            f"{name:<20} {r['words_per_sec']:>8.0f} {r['peak_rss_gb']:>7.2f} {pct(r['upos'])} "
            f"{pct(r['ents_f'])} {pct(r['genre_macro_f'])}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"pipeline": args.pipeline, **results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
