"""A config -> the model and the collator that feeds it: training, export and checkpoints build them here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from polyhead.data.collate import Collator
from polyhead.errors import UserError
from polyhead.models.multitask import MultitaskModel
from polyhead.tokens.alignment import Windowing
from polyhead.tokens.wordpieces import load_tokenizer


def build_model(
    cfg: DictConfig,
    labels: dict[str, list[str]],
    make: Callable[..., Any] = instantiate,
    kinds: dict[str, str] | None = None,
) -> MultitaskModel:
    """Encoder plus one head per configured task; a head whose task has no training labels, or whose
    corpora give another kind of annotation than it learns (`kinds`: task -> kind), is an error.
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
    heads = {}
    for task, spec in cfg.model.heads.items():
        try:
            heads[task] = make(head_spec(spec))(hidden_size=encoder.hidden_size, labels=labels[task])
        except ValueError as err:  # a head's own check of its settings (the parser's relation scorer)
            raise UserError(f"model.heads.{task}: {err}") from None
    for task, head in heads.items():
        if kinds and kinds.get(task, head.annotation) != head.annotation:
            raise UserError(
                f"model.heads.{task} learns {head.annotation} but the corpora give task {task!r} "
                f"{kinds[task]}: point it at a {head.annotation} field, or pick a head for {kinds[task]}"
            )
    return MultitaskModel(encoder, heads, loss_weights(cfg))


# What a task's node in model.heads may hold beside its head's arguments, so that the task's settings live
# in one place and `~model.heads.<task>` removes all of them:
#   loss_weight: 0.5          its loss's weight (model.loss_weights.<task> as before; 1.0 by default)
#   objective: {acc: 1.0}     its metrics' weights in val/objective (objective.<task>_acc as before)
#   lr: 2.0e-3                its head's learning rate (optim.task_lr.<task> as before; else optim.head_lr)
TASK_SETTINGS = ("loss_weight", "objective", "lr")


def head_spec(spec: DictConfig) -> DictConfig:
    """A task's node without its task settings: what builds the head."""
    return OmegaConf.masked_copy(spec, [k for k in spec if k not in TASK_SETTINGS])


def loss_weights(cfg: DictConfig) -> dict[str, float]:
    """Each task's loss weight: its node's loss_weight, else model.loss_weights.<task>, else 1."""
    legacy = cfg.model.get("loss_weights") or {}
    return {
        task: float(spec.get("loss_weight", legacy.get(task, 1.0))) for task, spec in cfg.model.heads.items()
    }


def optim_settings(cfg: DictConfig) -> DictConfig:
    """`optim` with each task node's `lr` in its task_lr (a node's rate over optim.task_lr's)."""
    node_lrs = {task: float(spec.lr) for task, spec in cfg.model.heads.items() if spec.get("lr") is not None}
    if not node_lrs:
        return cfg.optim
    optim = OmegaConf.create(OmegaConf.to_container(cfg.optim, resolve=True))
    optim.task_lr = {**(optim.get("task_lr") or {}), **node_lrs}
    return optim


def objective_weights(cfg: DictConfig) -> dict[str, float]:
    """The metrics val/objective averages, with their weights: `objective` (metric names, e.g. ner_f1) and
    each task node's `objective` (its own metrics: acc -> <task>_acc)."""
    weights = {str(k): float(v) for k, v in (cfg.get("objective") or {}).items()}
    for task, spec in cfg.model.heads.items():
        weights |= {f"{task}_{metric}": float(w) for metric, w in (spec.get("objective") or {}).items()}
    return weights


def build_collator(encoder: DictConfig, tokenizer=None) -> Collator:
    """The Collator for the `encoder` config's windows and pooling (its tokenizer unless one is given): the
    Windowing the Encoder built from the same config holds."""
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(encoder.name)
    return Collator(tokenizer, Windowing(encoder.window, encoder.stride, encoder.pooling))
