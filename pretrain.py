"""Entry point: `python pretrain.py key=value ...` (Hydra composes conf/pretrain.yaml)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="pretrain")
def main(cfg: DictConfig) -> float | None:
    from polyhead.pretrain import run

    return run(cfg)


if __name__ == "__main__":
    main()
