"""Entry point: `python pretrain.py key=value ...` (Hydra composes conf/pretrain.yaml)."""

import hydra
from omegaconf import DictConfig

import polyhead.config  # noqa: F401  (registers the resolvers conf/ uses, before Hydra resolves the run dir)


@hydra.main(version_base="1.3", config_path="conf", config_name="pretrain")
def main(cfg: DictConfig) -> float | None:
    from polyhead.cli import run_cli
    from polyhead.pretrain.run import run

    return run_cli(run, cfg)


if __name__ == "__main__":
    main()
