"""Entry point: `python train.py key=value ...` (Hydra composes conf/train.yaml); with `teachers=...`,
born-again training (polyhead.distill.born_again)."""

import hydra
from omegaconf import DictConfig

import polyhead.config  # noqa: F401  (registers the resolvers conf/ uses, before Hydra resolves the run dir)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from polyhead.cli import run_cli

    if cfg.get("teachers"):
        from polyhead.distill.born_again import run_job
    else:
        from polyhead.training.run import run_job
    return run_cli(run_job, cfg)


if __name__ == "__main__":
    main()
