"""One head of two pipelines side by side: the time its component takes to annotate the first `--texts` EWT
test texts, each pipeline's head on its own encoder's vectors (the encoder runs once, untimed), the two
alternating in one process (`alternated`: the order swapped each pass, median of `--repeats`), and the
head's score on all of EWT test ⋈ UNER test. For two settings of one head kind, e.g. the parser at
`label_size` 128 and 64, where a ratio of two whole pipelines run apart moves more with the machine's load
than the head costs:

    python bench/heads.py outputs/runs/<a>/spacy_pipeline outputs/runs/<b>/spacy_pipeline --head parser \\
        --corpora ../shared/data --precision auto

`--second-fp32-head` runs the second pipeline's head without its int8 copy (the component's `int8 = false`):
given one pipeline twice with `--precision auto` on a CPU where that is int8, what the int8 head gains.

Prints a table naming the CPU and writes bench/results/heads.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from inference import alternated, gold_examples, gold_scores

SCORES = {"parser": "dep_las", "tagger": "pos_acc", "ner": "ents_f", "textcat": "cats_macro_f"}


def encoded(path: str, head: str, texts: list[str], args, int8: bool = True):
    """The pipeline, its `head` component (`int8`: with its int8 copy beside an int8 encoder) and the texts'
    Docs with the encoder's vectors on them."""
    import spacy
    from spacy.util import minibatch

    config = {"components": {"encoder": {"precision": args.precision}}}
    if not int8:  # only then: pipelines exported before the setting name their heads' factories otherwise
        config["components"][head] = {"int8": False}
    nlp = spacy.load(path, config=config)
    if head not in nlp.pipe_names:
        raise SystemExit(f"error: {path}: no component {head!r} (it has {', '.join(nlp.pipe_names)})")
    with nlp.select_pipes(enable=["encoder"]):
        docs = list(nlp.pipe(texts, batch_size=args.pipe_batch))
    return nlp, nlp.get_pipe(head), list(minibatch(docs, size=args.pipe_batch))


def score(nlp, gold, head: str, args) -> float | None:
    with nlp.select_pipes(enable=["encoder", head]):
        scores = gold_scores(nlp, gold, args.pipe_batch)
    key = SCORES.get(head)
    return scores.get(key) if key else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--head", default="parser", help="the component timed in both pipelines")
    parser.add_argument("--corpora", default="../shared/data")
    parser.add_argument("--texts", type=int, default=600, help="EWT test texts timed (all are scored)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--pipe-batch", type=int, default=256, help="Docs per annotate call")
    parser.add_argument("--precision", default="auto", help="how each pipeline's encoder runs")
    parser.add_argument("--second-fp32-head", action="store_true", help="the second's head without int8")
    parser.add_argument("--out", default="bench/results/heads.json")
    args = parser.parse_args()

    from polyhead.hardware import detect

    examples, docbin = gold_examples(args.corpora)
    texts = [ex.text for ex in examples[: args.texts]]
    runs = [encoded(args.first, args.head, texts, args)]
    runs.append(encoded(args.second, args.head, texts, args, int8=not args.second_fp32_head))

    def annotate(component, batches):
        return lambda: [component.annotate(batch) for batch in batches]

    first, second = (annotate(component, batches) for _, component, batches in runs)
    times = alternated(first, second, args.repeats)
    results = {}
    paths = (args.first, args.second)
    for name, path, (nlp, component, _), seconds in zip(("first", "second"), paths, runs, times):
        gold = list(docbin.get_docs(nlp.vocab))
        results[name] = {
            "path": path,
            "runs_as": nlp.get_pipe("encoder").resolved_precision,
            "head_int8": component.runtime(nlp.get_pipe("encoder").resolved_precision) is not component.head,
            "head_config": {k: v for k, v in component.head.config.items() if k != "labels"},
            "seconds": seconds,
            "median_seconds": statistics.median(seconds),
            "score": score(nlp, gold, args.head, args),
        }
    ratio = results["second"]["median_seconds"] / results["first"]["median_seconds"]
    cpu = detect().describe()
    key = SCORES.get(args.head, "score")
    print(f"CPU: {cpu}    head: {args.head}    {len(texts)} texts, median of {args.repeats}, alternating")
    print(f"{'pipeline':<8} {'runs as':>10} {'int8 head':>9} {'seconds':>8} {key:>10}  path")
    for name, r in results.items():
        value = f"{100 * r['score']:.2f}" if r["score"] is not None else "-"
        int8 = "yes" if r["head_int8"] else "no"
        print(f"{name:<8} {r['runs_as']:>10} {int8:>9} {r['median_seconds']:>8.4f} {value:>10}  {r['path']}")
    print(f"first is {ratio:.2f}x as fast as second")
    payload = {"cpu": cpu, "hardware": detect().tags(), "head": args.head, "texts": len(texts)}
    payload |= {"repeats": args.repeats, "pipe_batch": args.pipe_batch, "precision": args.precision}
    payload |= {"results": results, "first_x_second": ratio}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
