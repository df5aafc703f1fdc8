"""Entry point: `python distill.py teacher=<run id | checkpoint> student=layers ...` (conf/distill.yaml)."""

import hydra
from omegaconf import DictConfig

import polyhead.config  # noqa: F401  (registers the resolvers conf/ uses, before Hydra resolves the run dir)


@hydra.main(version_base="1.3", config_path="conf", config_name="distill")
def main(cfg: DictConfig):
    from polyhead.cli import run_cli
    from polyhead.distill.run import run_job

    return run_cli(run_job, cfg)


if __name__ == "__main__":
    main()
