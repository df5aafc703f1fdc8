"""Entry point: `python train.py key=value ...` (Hydra composes conf/train.yaml)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from polyhead.train import run_job

    return run_job(cfg)


if __name__ == "__main__":
    main()
