"""run(cfg): seed, read data, build model, fit, test, export; returns the sweep objective.

An orchestrator only: the model is built in polyhead.models.build, the loggers and resume in
polyhead.training.loggers, the Trainer in polyhead.training.trainer, MLflow records in polyhead.tracking and
the spaCy pipeline in polyhead.export.pipeline."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import polyhead.config  # noqa: F401  (registers the resolvers conf/ uses)
from polyhead.data.datamodule import MultitaskDataModule
from polyhead.export.pipeline import export_run
from polyhead.models.build import build_collator, build_model, objective_weights, optim_settings
from polyhead.tracking import (
    encoder_tags,
    log_run_metadata,
    mlflow_config,
    mlflow_loggers,
    record_failed_job,
    run_metadata,
    set_status,
    sweep_tags,
)
from polyhead.training.callbacks.state import RunSpec
from polyhead.training.lit_module import MultitaskModule
from polyhead.training.loggers import instantiate_loggers, resolve_resume
from polyhead.training.preflight import check_hparams, load_encoder_tokenizer
from polyhead.training.trainer import build_trainer

log = logging.getLogger(__name__)


def run_job(cfg: DictConfig, job=None) -> float | None:
    """`python train.py` calls this, with `job` (default `run`; born-again training passes its own).
    A job of a Hydra multirun that fails (bad hyper-parameters, NaN loss) is recorded as a FAILED MLflow run,
    with the error as a tag, before the error goes on to Hydra: the basic sweeper runs the remaining jobs
    and exits non-zero at the end, the Optuna sweeper marks the trial failed and goes on while failures stay
    under `hydra.sweeper.max_failure_rate`. A single run failing after its MLflow run started is marked
    FAILED with the error tag too; one failing before leaves none. Without an MLflow logger there is no run
    to mark."""
    tags, started = sweep_tags(), time.time()
    try:
        return (job or run)(cfg)
    except Exception as err:
        if mlflow_config(cfg) is not None:
            run_id = record_failed_job(cfg, tags, err, since=started)
            if run_id:
                log.error("MLflow run %s marked FAILED (%s)", run_id, type(err).__name__)
        raise


def run(
    cfg: DictConfig,
    datamodule: MultitaskDataModule | None = None,
    module: MultitaskModule | None = None,
    tags: dict[str, str] | None = None,
) -> float | None:
    """Train, test and export. A caller with its own data or training loss (distill.py) passes the loaded
    `datamodule` and the `module`, and `tags` for the run; the rest is the same run."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True)
    check_hparams(cfg)  # values torch would reject fail here, before any run is tracked
    datamodule = datamodule or load_data(cfg)  # bad corpora fail here, before any run is tracked
    module = module or MultitaskModule(
        build_model(cfg, datamodule.labels, kinds=datamodule.kinds),
        optim_settings(cfg),
        objective_weights(cfg),
        cfg.model.get("grad_norm_every"),
    )
    ckpt_path, run_id = resolve_resume(cfg)
    loggers = instantiate_loggers(cfg, run_id)
    spec = RunSpec(OmegaConf.to_yaml(cfg, resolve=True), datamodule.labels)
    trainer, precision = build_trainer(cfg, loggers, [spec])
    log_run_start(cfg, loggers, datamodule, precision, resumed=run_id is not None, extra=tags)

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if trainer.is_global_zero:  # Lightning ended the run FINISHED; it goes on
        set_status(loggers, "RUNNING")
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None)  # leaves the best weights loaded
    if trainer.is_global_zero:  # under DDP, one process exports and reports
        set_status(loggers, "RUNNING")
        pipeline = export_run(cfg, module.model, datamodule.collate, loggers) if cfg.export.enabled else None
        report(trainer, loggers, best, pipeline)
        set_status(loggers, "FINISHED")
    score = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    return float(score) if score is not None else None


def load_data(cfg: DictConfig, make=instantiate) -> MultitaskDataModule:
    """The configured corpora, read and checked, with the collator of the configured encoder. `make` builds
    the data module: a config read back from a checkpoint (distill's teacher) passes stored_config's."""
    datamodule: MultitaskDataModule = make(cfg.data)
    datamodule.load()
    datamodule.collate = build_collator(cfg.encoder, load_encoder_tokenizer(cfg.encoder.name))
    return datamodule


def log_run_start(
    cfg: DictConfig,
    loggers: list,
    datamodule: MultitaskDataModule,
    precision: str,
    resumed: bool,
    extra: dict[str, str] | None = None,
) -> None:
    """Config, labels and tags (hardware, commit, encoder lineage, corpora) to every logger that keeps them,
    and the x axis of learning curves: the examples actually trained on, after data.train_limit."""
    tags = {
        **run_metadata(cfg, precision),
        **encoder_tags(cfg),
        **datamodule.fingerprints(),
        **datamodule.corpus_repairs(),  # entity tags read as conlleval reads them (IOB1 B-X after O...)
        **sweep_tags(),
        **(extra or {}),
    }
    log_run_metadata(loggers, cfg, tags, datamodule.labels, resumed=resumed)
    for lg in loggers:
        lg.log_metrics({"data/train_examples": len(datamodule.examples["train"])}, step=0)


def report(trainer: pl.Trainer, loggers: list, best: str, pipeline: Path | None) -> None:
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    lines = [f"  {k:<28} {v:.4f}" for k, v in sorted(metrics.items())]
    for lg in mlflow_loggers(loggers):
        lines.append(f"MLflow run {lg.run_id} in {lg._tracking_uri}")
        lines.append(f"  browse: mlflow ui --backend-store-uri {lg._tracking_uri}")
    for lg in loggers:
        if not mlflow_loggers([lg]) and getattr(lg, "log_dir", None):
            lines.append(f"{type(lg).__name__}: {Path(lg.log_dir)}")
    lines.append(f"best checkpoint: {best or '(none)'}")
    if pipeline:
        lines.append(f"spaCy pipeline: {pipeline}  (spacy.load this directory)")
    print("\n".join(["test metrics:", *lines]))
