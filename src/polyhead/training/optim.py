"""Discriminative fine-tuning: layer-wise learning-rate decay, a head learning rate, warmup schedules."""

from __future__ import annotations

import math
import re

import torch
from torch import nn

NO_DECAY = re.compile(r"(bias|LayerNorm\.weight|layer_norm\.weight|norm\.weight)$")
LAYER = re.compile(r"\.(?:layer|layers|h|block)\.(\d+)\.")


def encoder_depth(name: str, num_layers: int) -> int:
    """0 for embeddings, l + 1 for transformer layer l, num_layers for anything above (pooler)."""
    match = LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    return 0 if "embed" in name else num_layers


TASK_PARAM = re.compile(r"^(?:heads|encoder\.task_mixes)\.([^.]+)\.")


def param_groups(
    model: nn.Module,
    lr: float,
    head_lr: float,
    layer_decay: float,
    weight_decay: float,
    task_lr: dict[str, float] | None = None,
) -> list[dict]:
    """Named AdamW groups: encoder depth d gets lr * layer_decay ** (num_layers - d); heads get head_lr, or a
    task's own rate in `task_lr` for its head and its layer mix (group `head_<task>`)."""
    num_layers, task_lr = model.encoder.num_layers, dict(task_lr or {})
    unknown = sorted(set(task_lr) - set(getattr(model, "heads", {}))) if task_lr else []
    if unknown:
        raise ValueError(
            f"optim.task_lr names {unknown}, which are not tasks of the model ({list(model.heads)})"
        )
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        task = TASK_PARAM.match(name)
        if name.startswith("encoder.model."):
            depth = encoder_depth(name, num_layers)
            key, group_lr = f"layer_{depth:02d}", lr * layer_decay ** (num_layers - depth)
        elif task and task.group(1) in task_lr:
            key, group_lr = f"head_{task.group(1)}", float(task_lr[task.group(1)])
        else:  # heads and the scalar mixes
            key, group_lr = "heads", head_lr
        decay = not NO_DECAY.search(name) and param.ndim > 1
        key += "" if decay else "_no_decay"
        group = groups.setdefault(
            key, {"name": key, "params": [], "lr": group_lr, "weight_decay": weight_decay if decay else 0.0}
        )
        group["params"].append(param)
    return [groups[k] for k in sorted(groups)]


def schedule_lambda(kind: str, total_steps: int, warmup: float, ratio: float = 32.0):
    """Multiplier of the base lr at each optimizer step for `constant`, `linear` or `slanted_triangular`."""
    total = max(1, total_steps)
    warm = max(1, math.ceil(total * warmup)) if warmup > 0 else 0
    if kind == "constant":
        return lambda step: min(1.0, (step + 1) / warm) if warm else 1.0
    if kind == "linear":  # linear warmup to the peak, then linear decay to zero
        return lambda step: (
            (step + 1) / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))
        )
    if kind == "slanted_triangular":  # Howard & Ruder 2018: short steep rise, long decay to 1/ratio
        cut = max(1, warm)

        def stlr(step: int) -> float:
            p = step / cut if step < cut else 1 - (step - cut) / max(1, total - cut)
            return (1 + max(0.0, p) * (ratio - 1)) / ratio

        return stlr
    raise ValueError(f"optim.schedule must be constant, linear or slanted_triangular, got {kind!r}")


def build_optimizer(model: nn.Module, total_steps: int, cfg) -> tuple[torch.optim.Optimizer, dict]:
    groups = param_groups(model, cfg.lr, cfg.head_lr, cfg.layer_decay, cfg.weight_decay, cfg.get("task_lr"))
    optimizer = torch.optim.AdamW(
        groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=cfg.get("fused")
    )
    fn = schedule_lambda(cfg.schedule, total_steps, cfg.warmup, cfg.get("ratio", 32.0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
    return optimizer, {"scheduler": scheduler, "interval": "step", "name": "lr"}
