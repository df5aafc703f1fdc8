"""`python -m polyhead.export run_id=<id> [package=true]`: an earlier run or checkpoint as a spaCy pipeline,
and optionally as an installable package (conf/export.yaml)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from polyhead.config import project_root
from polyhead.errors import UserError


def export(cfg: DictConfig) -> Path:
    """The pipeline directory, or the package directory when package=true."""
    from polyhead.export.checkpoint import best_checkpoint, load_checkpoint, pick_checkpoint, read_checkpoint
    from polyhead.export.package import build_package, check_lang, package_folder
    from polyhead.export.pipeline import PACKAGE_META, export_run

    if bool(cfg.run_id) == bool(cfg.checkpoint):
        raise UserError("give exactly one of run_id=<MLflow run id> or checkpoint=<path>")
    ckpt = (
        pick_checkpoint(Path(cfg.checkpoint))
        if cfg.checkpoint
        else best_checkpoint(cfg.tracking_uri, cfg.run_id)
    )
    model, collate, run_cfg = load_checkpoint(ckpt)
    with open_dict(run_cfg):
        from_file = OmegaConf.load(cfg.export_from).get("export", {}) if cfg.export_from else {}
        overrides = {k: v for k, v in cfg.export.items() if v is not None}
        run_cfg.export = OmegaConf.merge(run_cfg.export, from_file, overrides)
        run_cfg.paths = {"output_dir": cfg.paths.output_dir}  # a checkpoint's own paths are never read
    check_lang(run_cfg.export.lang)
    if cfg.package:  # before anything is written: the package folder is built from these
        package_folder(run_cfg.export.get("name"), run_cfg.export.lang, run_cfg.export.get("version"))
    pipeline = export_run(run_cfg, model, collate, loggers=[])
    print(f"spaCy pipeline: {pipeline}  (from {ckpt})")
    if not cfg.package:
        return pipeline
    meta = {key: run_cfg.export[key] for key in PACKAGE_META if run_cfg.export.get(key) is not None}
    package = build_package(pipeline, Path(cfg.paths.output_dir) / "packages", meta, cfg.build)
    dist = sorted((package / "dist").glob("*")) if (package / "dist").is_dir() else []
    for file in dist:
        print(f"package: {file}  (pip install it, then spacy.load({package.name.rsplit('-', 1)[0]!r}))")
    run_id = cfg.run_id or read_checkpoint(ckpt).get("mlflow_run_id")
    if cfg.log_to_run and run_id and dist:
        from polyhead.tracking import log_files

        log_files(cfg.tracking_uri, run_id, dist, "package")
    return package


@hydra.main(version_base="1.3", config_path=str(project_root() / "conf"), config_name="export")
def main(cfg: DictConfig) -> None:
    from polyhead.cli import run_cli

    run_cli(export, cfg)


if __name__ == "__main__":
    main()
