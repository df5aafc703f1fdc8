"""A config -> the model and the collator that feeds it: training, export and checkpoints build them here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from polyhead.data.collate import Collator
from polyhead.errors import UserError
from polyhead.models.multitask import MultitaskModel
from polyhead.tokens.wordpieces import load_tokenizer


def build_model(
    cfg: DictConfig, labels: dict[str, list[str]], make: Callable[..., Any] = instantiate
) -> MultitaskModel:
    """Encoder plus one head per configured task; a head whose task has no training labels is an error.
    `make` builds each `_target_`: Hydra's instantiate for the user's own config; for a config read back
    from a checkpoint, models.stored_config.build_stored, which builds allow-listed classes only."""
    missing = [task for task in cfg.model.heads if task not in labels]
    if missing:
        raise UserError(
            f"model.heads has {missing} but no training corpus provides labels for it; "
            f"add a corpus for it or drop the head (e.g. '~model.heads.{missing[0]}')"
        )
    per_task = cfg.encoder.get("scalar_mix") == "per_task"  # one layer mix per task: the encoder needs them
    encoder = make(cfg.encoder, **({"tasks": list(cfg.model.heads)} if per_task else {}))
    heads = {
        task: make(spec)(hidden_size=encoder.hidden_size, labels=labels[task])
        for task, spec in cfg.model.heads.items()
    }
    return MultitaskModel(encoder, heads, cfg.model.get("loss_weights"))


def build_collator(encoder: DictConfig, tokenizer=None) -> Collator:
    """The Collator for the `encoder` config's windows and pooling (its tokenizer unless one is given)."""
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(encoder.name)
    return Collator(tokenizer, encoder.window, encoder.stride, encoder.pooling)
