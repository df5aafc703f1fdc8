"""The encoder alone, every inference runtime side by side in one process: words/s and error against fp32.

What `precision: auto` picks per CPU class rests on this A/B: torch fp32 with eager or sdpa attention,
torch.compile, dynamic int8 (per tensor, and the int8-pc and int8-keep recipes), bf16 weights, ONNX Runtime
fp32 and int8. Runtimes alternate within each round (median of `--rounds`), so a shared machine's load falls
on all of them alike. The pooled word vectors' largest relative error against fp32 eager tells which
runtimes are exact.

    python bench/encoder_runtimes.py --corpora ../shared/data
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

RUNTIMES = ("eager", "sdpa", "compile", "int8", "int8-pc", "int8-keep", "bf16", "onnx", "onnx-int8")


def ewt_sentences(corpora: str, limit: int) -> list[list[str]]:
    sentences, words = [], []
    for line in open(Path(corpora) / "ud_en_ewt" / "en_ewt-ud-test.conllu", encoding="utf-8"):
        cols = line.rstrip("\n").split("\t")
        if len(cols) == 10 and cols[0].isdigit():
            words.append(cols[1])
        elif not line.strip() and words:
            sentences.append(words)
            words = []
    return sentences[:limit]


def build(kind: str, encoder):
    from polyhead.export.runtimes import build_runtime

    if kind == "eager":
        return copy.deepcopy(encoder).eval()
    if kind == "compile":
        runtime, _ = build_runtime(encoder, "fp32")
        runtime.model = torch.compile(runtime.model, dynamic=True)
        return runtime
    return build_runtime(encoder, "fp32" if kind == "sdpa" else kind)[0]


def main() -> None:
    from polyhead.data.collate import Collator
    from polyhead.hardware import detect
    from polyhead.models.encoder import Encoder
    from polyhead.tokens.wordpieces import load_tokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--corpora", default="../shared/data")
    parser.add_argument("--encoder", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--texts", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--out", default="bench/results/encoder_runtimes.json")
    args = parser.parse_args()

    texts = sorted(ewt_sentences(args.corpora, args.texts), key=len)  # length-sorted, as the component does
    encoder = Encoder(args.encoder).eval()
    collate = Collator(load_tokenizer(args.encoder), encoder.windowing)  # 256-piece windows every 192
    batches = [collate.align(texts[i : i + args.batch_size]) for i in range(0, len(texts), args.batch_size)]
    words = sum(map(len, texts))
    kinds = args.runtimes.split(",")
    runtimes, errors, times = {}, {}, {k: [] for k in kinds}
    with torch.inference_mode():
        reference = [encoder(b).words for b in batches]
    for kind in kinds:
        runtimes[kind] = build(kind, encoder)
        with torch.inference_mode():
            out = [runtimes[kind](b).words.float() for b in batches]  # also the warm-up (and compilation)
        errors[kind] = max(((o - r).abs().max() / r.abs().max()).item() for o, r in zip(out, reference))
    for _ in range(args.rounds):
        for kind in kinds:
            start = time.perf_counter()
            with torch.inference_mode():
                for b in batches:
                    runtimes[kind](b)
            times[kind].append(time.perf_counter() - start)
    hw = detect()
    speed = {k: words / statistics.median(times[k]) for k in kinds}
    base = speed.get("sdpa") or speed[kinds[0]]
    print(f"CPU: {hw.describe()}; {len(texts)} EWT test sentences, {words} words, batch {args.batch_size}")
    print(f"{'runtime':<10} {'words/s':>8} {'x sdpa fp32':>11} {'max rel err':>11}")
    for k in kinds:
        print(f"{k:<10} {speed[k]:>8.0f} {speed[k] / base:>11.2f} {errors[k]:>11.1e}")
    result = {
        "hardware": hw.tags(),
        "cpu": hw.describe(),
        "words": words,
        "words_per_sec": speed,
        "seconds": times,
        "max_relative_error": errors,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
