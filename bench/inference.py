"""Inference speed of an exported pipeline on EWT test, per encoder runtime, beside the plain HF way.

Each configuration runs in its own process (peak RSS is per process). Speed: `nlp.pipe` over the first
`--texts` EWT test texts, median of `--repeats` passes after a warm-up pass; the HF rows run the same texts
through one separate HF model per head, or one model (bench/hf_baseline.py), in length-sorted batches of
the same size. Every configuration runs the heads HF has a model class for (tagging, NER, text
classification; `hf_heads`), all of them or the first; the table names them. Accuracy (UPOS, entity F1,
genre macro-F1) is spaCy's scorer on the whole of EWT test ⋈ UNER test, so the cost of each runtime shows
next to its speed. `--rounds R` runs every configuration R times, alternating, and keeps each one's median:
on a shared machine, compare ratios from one run. `--profile` adds one more pass per configuration with every
stage timed, and the encoder's GFLOP/s against this process's matmul peak (bench/stages.py). The "every head"
configurations also time the pipeline without the heads HF has no model for (the parser), the two
alternating in one process: the parser's cost as a ratio that the machine's load moves less; and, steadier
still, as its own share of each pass it runs in (its components' `annotate` timed within the pass).

    python bench/inference.py outputs/runs/<run>/spacy_pipeline --corpora ../shared/data
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

from isolated import run_rounds
from stages import Stages, format_profile, profile_hf, profile_polyhead

CONFIGS = {  # name -> (runner, precision, heads: "all" HF has a model for, "one" (the first), "each" (a
    # pipeline per head) or "every" (the parser too))
    "polyhead auto, all heads": ("polyhead", "auto", "all"),
    "polyhead fp32 (torch), all heads": ("polyhead", "fp32", "all"),
    "polyhead fp32 (torch), one head": ("polyhead", "fp32", "one"),
    "polyhead onnx, all heads": ("polyhead", "onnx", "all"),
    "polyhead onnx-int8, all heads": ("polyhead", "onnx-int8", "all"),
    "polyhead int8 (torch), all heads": ("polyhead", "int8", "all"),
    "polyhead int8-pc (torch), all heads": ("polyhead", "int8-pc", "all"),
    "polyhead int8-keep, all heads": ("polyhead", "int8-keep", "all"),
    "polyhead onnx-int8-pc, all heads": ("polyhead", "onnx-int8-pc", "all"),
    "polyhead onnx-int8-keep, all heads": ("polyhead", "onnx-int8-keep", "all"),
    "polyhead onnx-int8-static, all heads": ("polyhead", "onnx-int8-static", "all"),  # $POLYHEAD_CALIBRATION
    "polyhead bf16, all heads": ("polyhead", "bf16", "all"),
    "polyhead fp32, one pipeline per head": ("polyhead", "fp32", "each"),  # single-task pipelines' cost
    "polyhead auto, one pipeline per head": ("polyhead", "auto", "each"),
    "HF fp32, one model per head": ("hf", "fp32", "all"),
    "HF fp32, 1 model": ("hf", "fp32", "one"),
    "HF bf16, one model per head": ("hf", "bf16", "all"),
    "HF bf16, 1 model": ("hf", "bf16", "one"),
    "polyhead auto, every head (+ parser)": ("polyhead", "auto", "every"),  # heads HF has no model for too
    "polyhead fp32, every head (+ parser)": ("polyhead", "fp32", "every"),
}
BASELINE = "HF fp32, 1 model"


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


def hf_heads(pipeline: str) -> tuple[dict, list[str]]:
    """name -> (HF model kind, number of labels) of every head of the pipeline that plain HF has a model class
    for, in pipeline order: a tagging head (and NER, its BIO subclass) is a token classifier, a text
    classifier a sequence classifier; and the names of all the pipeline's heads. A head kind HF has no such
    model for (the parser) runs in no configuration, so both sides do the same work. Read from the heads'
    head.json, without their weights."""
    from polyhead.export.components import read_head_spec
    from polyhead.models.heads.tagger import TokenTaggingHead
    from polyhead.models.heads.textcat import TextClassificationHead

    names = json.loads((Path(pipeline) / "meta.json").read_text())["pipeline"]
    specs = {name: Path(pipeline) / name / "head.json" for name in names}
    heads = {name: read_head_spec(spec) for name, spec in specs.items() if spec.exists()}
    kinds = {}
    for name, head in heads.items():
        if isinstance(head, TextClassificationHead):
            kinds[name] = ("sequence", len(head.labels))
        elif isinstance(head, TokenTaggingHead):
            kinds[name] = ("token", len(head.labels))
    return kinds, list(heads)


def run_heads(pipeline: str, which: str) -> tuple[dict, list[str]]:
    """The heads a configuration runs ("all" or "one", the first) and the pipeline's heads it disables."""
    heads, every = hf_heads(pipeline)
    kept = dict(list(heads.items())[:1]) if which == "one" else heads  # "all", or "each" in its own pipeline
    return kept, [name for name in every if name not in kept]


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up: kernels, allocator, ONNX export on first use
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def gold_scores(nlp, gold: list, batch_size: int) -> dict:
    """spaCy's scores of `nlp` on the gold tokenisation: evaluate() runs the pipeline on unannotated copies
    of the gold Docs (their words and spaces only)."""
    from spacy.tokens import Doc
    from spacy.training import Example

    bare = [Doc(nlp.vocab, words=[t.text for t in g], spaces=[bool(t.whitespace_) for t in g]) for g in gold]
    return nlp.evaluate([Example(b, g) for b, g in zip(bare, gold)], batch_size=batch_size)


def alternated(first, second, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds of `first` and `second`, one after the other `repeats` times, the order swapped every time
    (a machine that slows down mid-run slows both alike), after one warm-up pass of each."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(repeats):
        for which, fn in ((0, first), (1, second))[:: 1 if i % 2 == 0 else -1]:
            start = time.perf_counter()
            fn()
            times[which].append(time.perf_counter() - start)
    return times


def measure_polyhead(
    pipeline: str, examples, docbin, precision: str, disables: list[list[str]], args, without=()
) -> dict:
    """One pipeline per entry of `disables` (one: the multitask pipeline; one per head: single-task
    pipelines, each with its own encoder pass), all run over the texts in turn and timed together.
    `without`: heads whose cost is measured apart, the pipeline with and without them alternating in this
    process (a ratio of two configurations run in their own processes moves with the machine's load)."""
    import spacy

    config = {"components": {"encoder": {"precision": precision, "batch_size": args.batch_size}}}
    nlps = [spacy.load(pipeline, disable=disable, config=config) for disable in disables]
    texts = [ex.text for ex in examples[: args.texts]]
    times = timed(lambda: [list(nlp.pipe(texts, batch_size=args.pipe_batch)) for nlp in nlps], args.repeats)
    scores, nlp = {}, nlps[0]
    gold = list(docbin.get_docs(nlp.vocab))
    for each in nlps:
        found = gold_scores(each, gold, args.pipe_batch)
        scores |= {k: v for k, v in found.items() if v is not None and scores.get(k) is None}
    profile = profile_polyhead(nlp, texts, args.pipe_batch) if args.profile and len(nlps) == 1 else None
    apart = {}
    if without:
        own: list[float] = []  # per pass with them: the seconds the heads themselves took (their annotate)

        def annotate(disable=()) -> None:
            before = sum(stages.seconds[name] for name in without)
            with nlp.select_pipes(disable=list(disable)):
                list(nlp.pipe(texts, batch_size=args.pipe_batch))
            if not disable:
                own.append(sum(stages.seconds[name] for name in without) - before)

        with Stages() as stages:
            for name in without:
                stages.wrap(nlp.get_pipe(name), "annotate", name)
            full, less = alternated(annotate, lambda: annotate(without), args.repeats)
        own = own[1:]  # after the warm-up pass, one per entry of `full`
        apart["without"] = {
            "heads": list(without),
            "seconds": less,
            "seconds_with": full,
            "x_without": statistics.median(less) / statistics.median(full),
            "seconds_own": own,  # the heads' own seconds in each pass with them
            "x_without_own": statistics.median([1 - o / t for o, t in zip(own, full)]),  # the pass less them
        }
    return {
        "words": sum(len(nlp.make_doc(t)) for t in texts),
        "seconds": times,
        "resolved_precision": nlp.get_pipe("encoder").resolved_precision,
        "upos": scores.get("pos_acc"),
        "ents_f": scores.get("ents_f"),
        "genre_macro_f": scores.get("cats_macro_f"),
        "las": scores.get("dep_las"),  # where the pipeline's parser ran (spaCy's scorer: every word)
        **({"profile": profile} if profile else {}),
        **apart,
    }


def measure_hf(pipeline: str, examples, precision: str, heads: dict, args) -> dict:
    import spacy
    import torch
    from hf_baseline import hf_annotate, hf_models
    from transformers import AutoTokenizer

    encoder_dir = str(Path(pipeline) / "encoder" / "model")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    models = hf_models(encoder_dir, heads, dtype)  # the label sets of polyhead's heads (BIO tags for NER)
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(ex.text) for ex in examples[: args.texts]]
    texts = [[t.text for t in doc if not t.is_space] for doc in docs]
    times = timed(lambda: hf_annotate(tokenizer, models, texts, args.batch_size), args.repeats)
    words = sum(len(d) for d in docs)
    if not args.profile:
        return {"words": words, "seconds": times}
    profile = profile_hf(
        lambda stage: hf_annotate(tokenizer, models, texts, args.batch_size, stage), models, words, dtype
    )
    return {"words": words, "seconds": times, "profile": profile}


def measure(name: str, args) -> dict:
    from polyhead.hardware import detect

    runner, precision, which = CONFIGS[name]
    heads, disable = run_heads(args.pipeline, which)
    examples, docbin = gold_examples(args.corpora)
    if runner == "polyhead":
        every = [*heads, *disable]
        disables = [[n for n in every if n != h] for h in heads] if which == "each" else [disable]
        disables = [[]] if which == "every" else disables
        without = disable if which == "every" else ()  # the heads HF has no model for: the parser
        result = measure_polyhead(args.pipeline, examples, docbin, precision, disables, args, without)
        heads = every if which == "every" else heads
    else:
        result = measure_hf(args.pipeline, examples, precision, heads, args)
    result["heads"] = list(heads)
    result["words_per_sec"] = result["words"] / statistics.median(result["seconds"])
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    result["hardware"] = detect().tags()
    return result


def table(results: dict, hardware: str) -> str:
    def pct(v):
        return f"{100 * v:6.2f}" if v is not None else "     -"

    base = results.get(BASELINE, {}).get("words_per_sec")
    lines = [
        f"CPU: {hardware}",
        f"{'configuration':<36} {'runs as':>16} {'words/s':>8} {'x HF 1':>7} {'RSS GB':>7} "
        f"{'UPOS':>6} {'ent F1':>6} {'genre F':>7} {'LAS':>6}  heads",
    ]
    for name, r in results.items():
        ratio = f"{r['words_per_sec'] / base:7.2f}" if base else "      -"
        lines.append(
            f"{name:<36} {r.get('resolved_precision') or CONFIGS[name][1]:>16} {r['words_per_sec']:>8.0f} "
            f"{ratio} {r['peak_rss_gb']:>7.2f} {pct(r.get('upos'))} {pct(r.get('ents_f'))} "
            f"{pct(r.get('genre_macro_f'))} {pct(r.get('las'))}  {','.join(r['heads'])}"
        )
    for name, r in results.items():
        if "without" in r:
            apart = r["without"]
            lines.append(
                f"{name}: {apart['x_without']:.3f}x the words/s without {', '.join(apart['heads'])} "
                f"(the two alternating in one process, medians of {len(apart['seconds'])}); "
                f"{apart['x_without_own']:.3f}x by their own share of each pass with them"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("pipeline")
    parser.add_argument("--corpora", default="../shared/data")
    parser.add_argument("--texts", type=int, default=600, help="EWT test texts timed (all are scored)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64, help="encoder batch (polyhead) = HF batch")
    parser.add_argument("--pipe-batch", type=int, default=256, help="nlp.pipe batch size")
    parser.add_argument("--config", action="append", help="run only this configuration (repeatable)")
    parser.add_argument("--profile", action="store_true", help="one more pass per configuration, by stage")
    parser.add_argument("--out", default="bench/results/inference.json")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, args)))
        return
    from polyhead.hardware import detect

    names = args.config or list(CONFIGS)
    options = {
        "--corpora": args.corpora,
        "--texts": args.texts,
        "--repeats": args.repeats,
        "--batch-size": args.batch_size,
        "--pipe-batch": args.pipe_batch,
    }
    forwarded = [args.pipeline, *[str(x) for item in options.items() for x in item]]
    forwarded += ["--profile"] if args.profile else []
    results = run_rounds(__file__, forwarded, names, args.rounds)
    hardware = detect().describe()
    print(table(results, hardware))
    for name, result in results.items():
        if "profile" in result:
            print(f"\n{format_profile(name, result['profile'])}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    payload = {"pipeline": args.pipeline, "hardware": detect().tags(), "cpu": hardware, "results": results}
    Path(args.out).write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
