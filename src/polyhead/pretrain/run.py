"""run(cfg) for `python pretrain.py`: continue masked-language-model training of the encoder on raw text,
then save it as an encoder directory that `python train.py encoder.name=<dir>` fine-tunes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

import polyhead.config  # noqa: F401  (registers the resolvers conf/ uses)
from polyhead.pretrain.mlm import MaskedLMModule, load_mlm, save_encoder
from polyhead.pretrain.packing import PackedTextDataModule
from polyhead.pretrain.text import TextStats, read_sources, split_documents
from polyhead.pretrain.vocabulary import add_domain_words, frequent_split_words
from polyhead.tracking import (
    LINEAGE_FILE,
    encoder_tags,
    log_artifacts,
    log_run_metadata,
    mlflow_config,
    mlflow_loggers,
    run_metadata,
)
from polyhead.training.loggers import instantiate_loggers, resolve_resume
from polyhead.training.preflight import check_hparams, load_encoder_tokenizer
from polyhead.training.trainer import build_trainer

log = logging.getLogger(__name__)


def read_text(cfg: DictConfig) -> tuple[list[str], list[str], TextStats]:
    """Training and validation documents: the dev sources, or a seeded share held out of train."""
    invalid = cfg.text.get("invalid_utf8", "skip")
    train_docs, stats = read_sources(cfg.text.train, invalid)
    if cfg.text.get("dev"):
        val_docs, dev_stats = read_sources(cfg.text.dev, invalid)
        for key in ("documents", "skipped_lines", "fingerprints"):
            getattr(stats, key).update(getattr(dev_stats, key))
    else:
        train_docs, val_docs = split_documents(train_docs, cfg.text.get("val_fraction", 0.05), cfg.seed)
    if not val_docs:
        raise ValueError("pretraining needs validation text: set text.dev or text.val_fraction > 0")
    return train_docs, val_docs, stats


def extend_vocabulary(cfg: DictConfig, tokenizer, model, docs: list[str]) -> list[str]:
    """vocab.words plus the vocab.top_k most frequent split words of the training text, added as tokens."""
    spec = cfg.get("vocab") or {}
    words = list(spec.get("words") or [])
    words += frequent_split_words(
        tokenizer, docs, int(spec.get("top_k") or 0), spec.get("min_count", 20), spec.get("min_pieces", 2)
    )
    added = add_domain_words(tokenizer, model, words) if words else []
    if added:
        log.info("added %d words to the vocabulary: %s", len(added), " ".join(added[:20]))
    return added


def run(cfg: DictConfig) -> float | None:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True)
    check_hparams(cfg)  # values torch would reject fail here, before any run is tracked
    train_docs, val_docs, stats = read_text(cfg)  # bad text fails here too
    tokenizer = load_encoder_tokenizer(cfg.encoder.name)
    model = load_mlm(cfg.encoder.name, cfg.encoder.get("dropout"), cfg.encoder.get("attn_implementation"))
    added = extend_vocabulary(cfg, tokenizer, model, train_docs)
    datamodule = PackedTextDataModule(
        tokenizer,
        train_docs,
        val_docs,
        max_length=cfg.mlm.max_length,
        batch_size=cfg.mlm.batch_size,
        eval_batch_size=cfg.mlm.eval_batch_size,
        mlm_probability=cfg.mlm.probability,
        whole_word_mask=cfg.mlm.whole_word_mask,
        seed=cfg.seed,
    )
    module = MaskedLMModule(model, cfg.optim)
    ckpt_path, run_id = resolve_resume(cfg)

    loggers = instantiate_loggers(cfg, run_id)
    trainer, precision = build_trainer(cfg, loggers)
    tags = {**run_metadata(cfg, precision), **run_tags(cfg, stats, datamodule, train_docs, val_docs, added)}
    log_run_metadata(loggers, cfg, tags, {"added_words": added}, resumed=run_id is not None)

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    encoder_dir = export_encoder(cfg, module.model, tokenizer, loggers)
    score = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    report(trainer, loggers, best, encoder_dir)
    return float(score) if score is not None else None


def run_tags(cfg, stats: TextStats, datamodule, train_docs, val_docs, added) -> dict[str, str]:
    """Source encoder (and its own lineage), text fingerprints and sizes, skipped lines, added words."""
    pieces = datamodule.num_pieces
    tags = {
        **encoder_tags(cfg),  # continuing an adapted encoder: keep where it came from
        "text/documents": f"{len(train_docs)} train, {len(val_docs)} val",
        "text/pieces": f"{pieces['train']} train, {pieces['val']} val",
        "text/skipped_lines": str(stats.total_skipped),
        "vocab/added_words": str(len(added)),
        "encoder_dir": str(Path(cfg.paths.output_dir) / "encoder"),
    }
    for path, digest in stats.fingerprints.items():
        tags[f"text/{Path(path).name}"] = digest
    return tags


def export_encoder(cfg: DictConfig, model, tokenizer, loggers: list) -> Path:
    """<output_dir>/encoder plus a lineage file naming this run; logged as the MLflow artifact encoder/."""
    directory = save_encoder(model, tokenizer, cfg.encoder.name, Path(cfg.paths.output_dir) / "encoder")
    lineage = {"source_encoder": cfg.encoder.name}
    for lg in mlflow_loggers(loggers):
        lineage.update(
            run_id=lg.run_id,
            experiment_id=lg.experiment_id,
            experiment_name=mlflow_config(cfg).get("experiment_name", ""),
            tracking_uri=lg._tracking_uri,
        )
    (directory / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2) + "\n")
    log_artifacts(loggers, directory, "encoder")
    return directory


def report(trainer: pl.Trainer, loggers: list, best: str, encoder_dir: Path) -> None:
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
    lines = [f"  {k:<28} {v:.4f}" for k, v in sorted(metrics.items())]
    for lg in mlflow_loggers(loggers):
        lines.append(f"MLflow run {lg.run_id} in {lg._tracking_uri}")
    lines.append(f"best checkpoint: {best or '(none)'}")
    lines.append(f"encoder: {encoder_dir}  (python train.py encoder.name={encoder_dir})")
    print("\n".join(["pretraining metrics (last epoch):", *lines]))
