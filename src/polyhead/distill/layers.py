"""The `layers` student: the teacher's encoder cut to some of its layers, its heads copied, trained on a
temperature-scaled KL to the teacher's distributions plus the gold loss where gold labels exist.

Everything else is training as train.py does it: the same data module (its train split replaced by the
transfer texts), LightningModule steps, optimiser, schedules, callbacks, checkpoints and export.
"""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from polyhead.models.encoder import check_keep_layers, keep_transformer_layers
from polyhead.models.multitask import MultitaskModel
from polyhead.models.stored_config import SECTIONS, is_plain
from polyhead.training.lit_module import MultitaskModule

OWN_KEYS = ("seed", "threads", "resume", "run_name", "optim", "trainer", "callbacks", "logger", "paths")


def student_config(teacher_cfg: DictConfig, cfg: DictConfig) -> DictConfig:
    """The student run's config: the teacher's data, encoder, heads, objective and export (checked data,
    models.stored_config) and plain values; the distill command's seed, trainer, optimiser, callbacks,
    loggers and paths; the encoder cut to student.keep. Nothing else of the teacher's is kept."""
    teacher = OmegaConf.to_container(teacher_cfg, resolve=True)
    out = OmegaConf.create({k: v for k, v in teacher.items() if k in SECTIONS or is_plain(v)})
    own = OmegaConf.to_container(cfg, resolve=False)  # ${paths...} stay interpolations until the run resolves
    with open_dict(out):
        for key in OWN_KEYS:
            out[key] = own.get(key)
        out.experiment_name = cfg.experiment_name or teacher_cfg.experiment_name
        out.student = own["student"]
        out.teacher = cfg.teacher
        if cfg.student.name == "layers":
            out.encoder.keep_layers = list(cfg.student.keep)
    return out


def student_from_teacher(teacher: MultitaskModel, student: MultitaskModel, keep: list[int]) -> None:
    """Load the teacher's weights into `student`: layer i of the student is teacher layer keep[i], the
    embeddings, heads and (if any) scalar mix weights of the kept layers are the teacher's."""
    check_keep_layers(list(keep), teacher.encoder.num_layers)
    cut = copy.deepcopy(teacher)
    keep_transformer_layers(cut.encoder.model, list(keep))
    for mix in [cut.encoder.mix, *cut.encoder.task_mixes.values()]:  # [embeddings, layer 0, ...] -> kept
        if mix is not None:
            mix.weights = nn.Parameter(mix.weights[[0, *[k + 1 for k in keep]]].clone())
    student.load_state_dict(cut.state_dict())


def gather_teacher(
    examples, task: str, kind: str, word_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher rows the examples carry for `task`, padded to the batch: (B, W, K) with a (B, W) mask for
    per-word rows (`kind` "word"), (B, K) with a (B,) mask for per-text ones; examples without are masked."""
    rows = [ex.meta.get("teacher", {}).get(task) for ex in examples]
    size = next(r for r in rows if r is not None).shape[-1]
    batch, width = word_mask.shape
    shape = (batch, width, size) if kind == "word" else (batch, size)
    out = torch.zeros(shape, device=word_mask.device)
    mask = torch.zeros(shape[:-1], dtype=torch.bool, device=word_mask.device)
    for i, value in enumerate(rows):
        if value is None:
            continue
        if kind == "word":
            out[i, : value.shape[0]], mask[i, : value.shape[0]] = value, True
        else:
            out[i], mask[i] = value.reshape(-1), True
    return out, mask


class DistillationModule(MultitaskModule):
    """MultitaskModule whose training loss is, for each task the teacher scores, (1 - λ) * soft loss +
    λ * gold loss (the gold part only where the batch has gold labels, masked as training masks it); a task
    with no soft targets learns from gold alone. λ is 1 - alpha, or with `anneal` rises linearly from 0 to 1
    over training (teacher annealing, Clark et al. 2019: the target moves from the teacher to the gold
    label). Evaluation is unchanged: gold dev and test sets, the same metrics."""

    def __init__(
        self,
        model: MultitaskModel,
        optim,
        objective: dict,
        temperature: float,
        alpha: float,
        anneal: bool = False,
        grad_norm_every: int = 0,
    ):
        super().__init__(model, optim, objective, grad_norm_every)
        self.temperature, self.alpha, self.anneal = float(temperature), float(alpha), bool(anneal)

    def gold_share(self) -> float:
        """λ: the gold loss's share of a taught task's loss at this step."""
        if not self.anneal:
            return 1.0 - self.alpha
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
        return min(1.0, self.global_step / max(1, total))

    def training_step(self, batch, batch_idx):
        enc, logits, targets = self._forward(batch)
        gold = self.model.losses(logits, targets)
        losses = self.taught_losses(batch["examples"], logits, gold, enc.word_mask)
        if not losses:
            return None
        total = self.model.total_loss(losses)
        self.log_losses(total, losses, len(batch["examples"]))
        self.log_grad_norms(enc, losses, len(batch["examples"]))
        return total

    def taught_losses(self, examples, logits, gold: dict, word_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per task: (1 - λ) * soft + λ * gold where the teacher scored the batch, else gold alone; the soft
        loss is the head's own (its soft_loss against the rows its teacher's soft_targets gave)."""
        share, losses = self.gold_share(), {}
        for task, head in self.model.heads.items():
            if not any(task in ex.meta.get("teacher", {}) for ex in examples):  # no teacher for this task
                if task in gold:
                    losses[task] = gold[task]
                continue
            teacher, mask = gather_teacher(examples, task, head.soft_kind, word_mask)
            soft = head.soft_loss(logits[task], teacher, mask, self.temperature)
            self.log(f"train/{task}_kl", soft, batch_size=len(examples))
            losses[task] = (1 - share) * soft + (share * gold[task] if task in gold else 0.0)
        return losses
