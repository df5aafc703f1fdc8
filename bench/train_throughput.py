"""Training throughput on EWT: words/second and peak RSS for a fixed number of optimizer steps.

Each configuration runs in its own process (peak RSS is per process) through the same code path as
`python train.py experiment=ewt`: Hydra compose -> MultitaskDataModule -> MultitaskModule -> Trainer.

    python bench/train_throughput.py --corpora ../shared/data --steps 60
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from isolated import run_each

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {  # name -> overrides
    "fp32, corpus order": ["trainer.precision=32-true", "data.group_by_length=false"],
    "fp32, length-grouped": ["trainer.precision=32-true"],
    "bf16, length-grouped": ["trainer.precision=bf16-mixed"],
    "bf16, grouped, batch 64": ["trainer.precision=bf16-mixed", "data.batch_size=64"],
    "bf16, grouped, encoder dropout 0": ["trainer.precision=bf16-mixed", "encoder.dropout=0.0"],
}


def measure(corpora: str, steps: int, overrides: list[str]) -> dict:
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir

    import polyhead.config  # noqa: F401
    from polyhead.callbacks.throughput import WordThroughput
    from polyhead.data.collate import Collator
    from polyhead.lit_module import MultitaskModule
    from polyhead.models.encoder import load_tokenizer
    from polyhead.train import build_model

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "experiment=ewt",
                f"paths.corpora={corpora}",
                "paths.output_dir=/tmp/bench",
                *overrides,
            ],
        )
    pl.seed_everything(cfg.seed)
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    dm.load()
    dm.collate = Collator(
        load_tokenizer(cfg.encoder.name), cfg.encoder.window, cfg.encoder.stride, cfg.encoder.pooling
    )
    module = MultitaskModule(build_model(cfg, dm.labels), cfg.optim, dict(cfg.objective))
    speed = WordThroughput()
    trainer = pl.Trainer(
        max_steps=steps,
        precision=cfg.trainer.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        callbacks=[speed],
        gradient_clip_val=1.0,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    return {
        "words_per_sec": speed.words / speed.seconds,
        "words": speed.words,
        "train_seconds": speed.seconds,
        "wall_seconds": time.perf_counter() - start,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "batch_size": cfg.data.batch_size,
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpora", default="../shared/data")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default="bench/results/train_throughput.json")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # internal: run one configuration in this process
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.corpora, args.steps, CONFIGS[args.only])))
        return
    results = run_each(__file__, ["--corpora", args.corpora, "--steps", str(args.steps)], CONFIGS)
    print(f"{'configuration':<34} {'words/s':>9} {'peak RSS GB':>12} {'steps':>6}")
    for name, r in results.items():
        print(f"{name:<34} {r['words_per_sec']:>9.0f} {r['peak_rss_gb']:>12.2f} {r['steps']:>6}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
