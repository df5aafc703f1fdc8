"""Training throughput on EWT: words/second and peak RSS for a fixed number of optimizer steps.

Each configuration runs in its own process (peak RSS is per process) through the same code path as
`python train.py experiment=ewt`: Hydra compose -> MultitaskDataModule -> MultitaskModule -> Trainer, with
`trainer.precision` resolved as train.py resolves it. Beside them, the plain Hugging Face way on the same
machine in the same run: Trainer-style fine-tuning of one token-classification model on EWT UPOS
(bench/hf_baseline.py). `--rounds R` alternates all configurations R times and keeps each one's median.

    python bench/train_throughput.py --corpora ../shared/data --steps 60
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from isolated import run_rounds

ROOT = Path(__file__).resolve().parents[1]
FP32 = "trainer.precision=32-true"
CONFIGS = {  # name -> overrides of `experiment=ewt` (length-grouped batches of 32, encoder dropout 0)
    "auto (the default)": [],
    "32-true": [FP32],
    "bf16-mixed": ["trainer.precision=bf16-mixed"],
    "32-true, 3 heads (without the parser)": [
        FP32,
        "~model.heads.parser",
        "~model.loss_weights.parser",
        "~objective.parser_las",
    ],
    "32-true, corpus order": [FP32, "data.group_by_length=false"],
    "32-true, sdpa attention": [FP32, "encoder.attn_implementation=sdpa"],
    "32-true, for-loop AdamW": [FP32, "optim.fused=false"],
    "32-true, dropout 0.1": [FP32, "encoder.dropout=null"],
    "32-true, frozen word embeddings": [FP32, "encoder.freeze_word_embeddings=true"],
    "32-true, torch.compile": [FP32, "+compile=true"],
    "HF Trainer-style, 1 model, 32-true": ["+hf=true", FP32],
    "HF Trainer-style, 1 model, bf16-mixed": ["+hf=true", "trainer.precision=bf16-mixed"],
}
BASELINE = "HF Trainer-style, 1 model, 32-true"


def compose_ewt(corpora: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    import polyhead.config  # noqa: F401

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                "experiment=ewt",
                f"paths.corpora={corpora}",
                "paths.output_dir=/tmp/bench",
                *overrides,
            ],
        )


def measure_hf(cfg, steps: int) -> dict:
    """One HF token classifier (the same encoder) on EWT UPOS, Trainer-style."""
    from hf_baseline import hf_train
    from hydra.utils import instantiate

    from polyhead.hardware import resolve_trainer_precision
    from polyhead.tokens.wordpieces import resolve_encoder

    dm = instantiate(cfg.data)
    dm.load()
    train = [ex for ex in dm.examples["train"] if ex.tags is not None]
    labels = sorted({t for ex in train for t in ex.tags})
    index = {t: i for i, t in enumerate(labels)}
    texts, tags = [ex.words for ex in train], [[index[t] for t in ex.tags] for ex in train]
    precision = resolve_trainer_precision(cfg.trainer)
    result = hf_train(
        resolve_encoder(cfg.encoder.name),
        texts,
        tags,
        len(labels),
        steps,
        batch_size=cfg.data.batch_size,
        dtype=str(precision),
        seed=cfg.seed,
    )
    return {**result, "precision": str(precision)}


def measure(corpora: str, steps: int, overrides: list[str]) -> dict:
    import pytorch_lightning as pl

    from polyhead.hardware import detect, resolve_trainer_precision
    from polyhead.models.build import build_collator, build_model
    from polyhead.training.callbacks.throughput import WordThroughput
    from polyhead.training.lit_module import MultitaskModule

    cfg = compose_ewt(corpora, overrides)
    pl.seed_everything(cfg.seed)
    start = time.perf_counter()
    if cfg.get("hf"):
        result = measure_hf(cfg, steps)
        return {
            **result,
            "wall_seconds": time.perf_counter() - start,
            "steps": steps,
            "hardware": detect().tags(),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        }
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    dm.load()
    dm.collate = build_collator(cfg.encoder)
    model = build_model(cfg, dm.labels)
    if cfg.get("compile"):  # in place: state_dict keys stay as they are
        model.encoder.model.compile(dynamic=True)
    module = MultitaskModule(model, cfg.optim, dict(cfg.objective))
    speed = WordThroughput()
    precision = resolve_trainer_precision(cfg.trainer)
    trainer = pl.Trainer(
        max_steps=steps,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        callbacks=[speed],
        gradient_clip_val=1.0,
    )
    trainer.fit(module, datamodule=dm)
    return {
        "words_per_sec": speed.words / speed.seconds,
        "words": speed.words,
        "train_seconds": speed.seconds,
        "wall_seconds": time.perf_counter() - start,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "batch_size": cfg.data.batch_size,
        "steps": steps,
        "precision": str(precision),
        "hardware": detect().tags(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpora", default="../shared/data")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--config", action="append", help="run only this configuration (repeatable)")
    parser.add_argument("--out", default="bench/results/train_throughput.json")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # internal: run one configuration in this process
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.corpora, args.steps, CONFIGS[args.only])))
        return
    from polyhead.hardware import detect

    names = args.config or list(CONFIGS)
    options = ["--corpora", args.corpora, "--steps", str(args.steps)]
    results = run_rounds(__file__, options, names, args.rounds)
    hw = detect()
    base = results.get(BASELINE, {}).get("words_per_sec")
    print(f"CPU: {hw.describe()}; EWT, batch 32, {args.steps} steps, median of {args.rounds} round(s)")
    print(f"{'configuration':<38} {'runs as':>10} {'words/s':>8} {'x HF':>6} {'x 32-true':>9} {'RSS GB':>7}")
    fp32 = results.get("32-true", {}).get("words_per_sec")
    for name, r in results.items():
        vs_hf = f"{r['words_per_sec'] / base:6.2f}" if base else "     -"
        vs_fp32 = f"{r['words_per_sec'] / fp32:9.2f}" if fp32 else "        -"
        print(
            f"{name:<38} {r['precision']:>10} {r['words_per_sec']:>8.0f} {vs_hf} {vs_fp32} "
            f"{r['peak_rss_gb']:>7.2f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"hardware": hw.tags(), "cpu": hw.describe(), "results": results}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
