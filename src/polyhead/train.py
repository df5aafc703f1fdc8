"""run(cfg): seed, read data, build model, fit, test; returns the sweep objective."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import polyhead.config  # noqa: F401  (registers the resolvers conf/ uses)
from polyhead.callbacks.state import RunSpec, read_checkpoint
from polyhead.data.collate import Collator
from polyhead.data.datamodule import MultitaskDataModule
from polyhead.errors import UserError
from polyhead.hardware import detect, inference_precision, onnxruntime_available, resolve_trainer_precision
from polyhead.hardware import run_tags as hardware_tags
from polyhead.lit_module import MultitaskModule
from polyhead.models.multitask import MultitaskModel
from polyhead.preflight import check_hparams, load_encoder_tokenizer, looks_like_path
from polyhead.tracking import (
    NullLogger,
    checkpoint_from_run,
    default_run_name,
    encoder_lineage,
    git_commit,
    log_run_metadata,
    mlflow_loggers,
    prepare_store,
    record_failed_job,
    sweep_tags,
)

log = logging.getLogger(__name__)
PACKAGE_META = ("name", "version", "description", "author", "email", "url", "license")


def build_model(cfg: DictConfig, labels: dict[str, list[str]]) -> MultitaskModel:
    """Encoder plus one head per configured task; a head whose task has no training labels is an error."""
    missing = [task for task in cfg.model.heads if task not in labels]
    if missing:
        raise UserError(
            f"model.heads has {missing} but no training corpus provides labels for it; "
            f"add a corpus for it or drop the head (e.g. '~model.heads.{missing[0]}')"
        )
    encoder = instantiate(cfg.encoder)
    heads = {
        task: instantiate(spec)(hidden_size=encoder.hidden_size, labels=labels[task])
        for task, spec in cfg.model.heads.items()
    }
    return MultitaskModel(encoder, heads, cfg.model.get("loss_weights"))


def resolve_resume(cfg: DictConfig) -> tuple[str | None, str | None]:
    """`resume` is a checkpoint path or an MLflow run id: returns (checkpoint, run id to continue)."""
    if not cfg.get("resume"):
        return None, None
    resume = str(cfg.resume)
    if Path(resume).is_file():
        return resume, read_checkpoint(resume).get("mlflow_run_id")
    if looks_like_path(resume) or resume.endswith(".ckpt"):
        raise UserError(f"resume={resume}: no such checkpoint file")
    if not cfg.get("logger"):
        raise UserError(f"resume={resume}: not a checkpoint file, and no MLflow store to find a run in")
    return checkpoint_from_run(cfg.logger.tracking_uri, resume), resume


def run_job(cfg: DictConfig) -> float | None:
    """`python train.py` calls this. A job of a Hydra multirun that fails (bad hyper-parameters, NaN loss)
    is recorded as a FAILED MLflow run, with the error as a tag, before the error goes on to Hydra: the
    basic sweeper runs the remaining jobs and exits non-zero at the end, the Optuna sweeper marks the trial
    failed and goes on while failures stay under `hydra.sweeper.max_failure_rate`. A single run failing
    after its MLflow run started is marked FAILED with the error tag too; one failing before leaves none."""
    tags, started = sweep_tags(), time.time()
    try:
        return run(cfg)
    except Exception as err:
        if cfg.get("logger"):
            run_id = record_failed_job(cfg, tags, err, since=started)
            if run_id:
                log.error("MLflow run %s marked FAILED (%s)", run_id, type(err).__name__)
        raise


def run(cfg: DictConfig) -> float | None:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True)
    check_hparams(cfg)  # values torch would reject fail here, before any run is tracked
    datamodule: MultitaskDataModule = instantiate(cfg.data)
    datamodule.load()  # bad corpora fail here, before any run is tracked
    tokenizer = load_encoder_tokenizer(cfg.encoder.name)
    datamodule.collate = Collator(tokenizer, cfg.encoder.window, cfg.encoder.stride, cfg.encoder.pooling)
    model = build_model(cfg, datamodule.labels)
    module = MultitaskModule(model, cfg.optim, dict(cfg.objective))
    ckpt_path, run_id = resolve_resume(cfg)

    loggers = instantiate_loggers(cfg, run_id)
    callbacks = [instantiate(spec) for spec in cfg.callbacks.values() if spec is not None]
    callbacks.append(RunSpec(OmegaConf.to_yaml(cfg, resolve=True), datamodule.labels))
    precision = resolve_trainer_precision(cfg.trainer)  # `auto`: bf16 only where this machine has it natively
    trainer: pl.Trainer = instantiate(cfg.trainer, precision=precision, logger=loggers, callbacks=callbacks)
    tags = {
        **hardware_tags(precision),  # CPU model, torch's capability, threads, device, precision used
        "git_commit": git_commit(cfg.paths.root_dir),
        "encoder": cfg.encoder.name,
        **encoder_lineage(cfg.encoder.name),  # the pretraining run of a domain-adapted encoder
        **datamodule.fingerprints(),
        **datamodule.corpus_repairs(),  # entity tags read as conlleval reads them (IOB1 B-X after O...)
    }
    tags["checkpoint_dir"] = str(Path(cfg.paths.output_dir) / "checkpoints")
    tags.update(sweep_tags())
    log_run_metadata(loggers, cfg, tags, datamodule.labels, resumed=run_id is not None)
    for lg in loggers:  # the x axis of learning curves: examples actually trained on, after data.train_limit
        lg.log_metrics({"data/train_examples": len(datamodule.examples["train"])}, step=0)

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None)  # leaves the best weights loaded
    if trainer.is_global_zero:  # under DDP, one process exports and reports
        pipeline = export_run(cfg, module.model, datamodule.collate, loggers) if cfg.export.enabled else None
        report(trainer, loggers, best, pipeline)
    score = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    return float(score) if score is not None else None


def instantiate_loggers(cfg: DictConfig, run_id: str | None) -> list:
    """The configured MLflow logger, continuing `run_id` when resuming. Under trainer.fast_dev_run
    (debug=fast) a logger of nothing, as Lightning logs nothing then: no MLflow run starts nor stays open."""
    if cfg.trainer.get("fast_dev_run"):
        return [NullLogger()]
    if not cfg.get("logger"):
        return []
    prepare_store(cfg.logger.tracking_uri, cfg.logger.experiment_name, cfg.logger.get("artifact_location"))
    extra = {"run_id": run_id} if run_id else {}
    if run_id and cfg.logger.get("_target_", "").endswith(".MLFlowLogger"):
        extra["_target_"] = "polyhead.tracking.ContinuedMLFlowLogger"  # replayed steps are not logged twice
    if cfg.logger.get("run_name", "absent") is None:
        extra["run_name"] = default_run_name(cfg)
    return [instantiate(cfg.logger, **extra)]


def export_run(cfg: DictConfig, model, collate: Collator, loggers: list) -> Path:
    """The tested model as a spaCy pipeline directory, also logged as the MLflow artifact spacy_pipeline/."""
    from polyhead.export.pipeline import export_pipeline

    meta = {key: cfg.export[key] for key in PACKAGE_META if cfg.export.get(key) is not None}
    path = export_pipeline(
        model,
        collate,
        Path(cfg.paths.output_dir) / "spacy_pipeline",
        meta,
        lang=cfg.export.lang,
        tag_attr=cfg.export.tag_attr,
        precision=cfg.export.precision,
    )
    resolved = inference_precision(cfg.export.precision, detect(), onnxruntime_available())
    for lg in mlflow_loggers(loggers):
        lg.experiment.log_artifacts(lg.run_id, str(path), "spacy_pipeline")
        lg.experiment.set_tag(lg.run_id, "hw/inference_precision", resolved)  # what `auto` runs here
    return path


def report(trainer: pl.Trainer, loggers: list, best: str, pipeline: Path | None) -> None:
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    lines = [f"  {k:<28} {v:.4f}" for k, v in sorted(metrics.items())]
    for lg in mlflow_loggers(loggers):
        lines.append(f"MLflow run {lg.run_id} in {lg._tracking_uri}")
        lines.append(f"  browse: mlflow ui --backend-store-uri {lg._tracking_uri}")
    lines.append(f"best checkpoint: {best or '(none)'}")
    if pipeline:
        lines.append(f"spaCy pipeline: {pipeline}  (spacy.load this directory)")
    print("\n".join(["test metrics:", *lines]))
