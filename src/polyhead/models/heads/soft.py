"""What a teacher gives a student, shared by the head kinds: per-text rows of scores and the temperature-
scaled KL between teacher and student distributions (Hinton et al. 2015). Each head kind says which rows it
gives (`soft_targets`) and how its student matches them (`soft_loss`); these are the common pieces."""

from __future__ import annotations

import torch
from torch import nn


def word_rows(scores: torch.Tensor, word_mask: torch.Tensor) -> list[torch.Tensor]:
    """Each text's per-word rows, padding dropped.  # (B, W, K) -> B x (n_i, K)"""
    return [row[: int(n)].float() for row, n in zip(scores, word_mask.sum(-1))]


def kl_divergence(student: torch.Tensor, teacher: torch.Tensor, temperature: float, exclusive: bool = True):
    """T^2-scaled KL(teacher || student) of the temperature-softened distributions over the last axis,
    averaged over rows (N, K); independent labels (sigmoid) use the binary KL summed over labels."""
    t = temperature
    s, p = student.float() / t, teacher.float() / t
    if exclusive:
        kl = nn.functional.kl_div(s.log_softmax(-1), p.log_softmax(-1), log_target=True, reduction="none")
    else:
        target, bce = p.sigmoid(), nn.functional.binary_cross_entropy_with_logits
        kl = bce(s, target, reduction="none") - bce(p, target, reduction="none")  # cross-entropy - entropy
    return kl.sum(-1).mean() * t * t
