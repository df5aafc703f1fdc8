"""Metrics torchmetrics does not have: exact-match entity spans."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class SpanF1(Metric):
    """Exact-match entity spans, micro precision / recall / F1 plus F1 per type (summed across processes).

    `per_type` is a (T, 4) table, one row per type: precision, recall, F1, support (gold spans); being
    no scalar, it is not logged as a metric but written as a test artifact."""

    full_state_update = False

    def __init__(self, types: list[str]):
        super().__init__()
        self.types = list(types)
        for name in ("tp", "fp", "fn"):
            self.add_state(name, default=torch.zeros(len(self.types)), dist_reduce_fx="sum")

    def update(self, pred: list[list[tuple[int, int, str]]], gold: list[list[tuple[int, int, str]]]) -> None:
        index = {t: i for i, t in enumerate(self.types)}
        for p, g in zip(pred, gold):
            p, g = {tuple(s) for s in p}, {tuple(s) for s in g}
            for s in p & g:
                self.tp[index[s[2]]] += 1
            for s in p - g:
                self.fp[index[s[2]]] += 1
            for s in g - p:
                self.fn[index[s[2]]] += 1

    def compute(self) -> dict[str, torch.Tensor]:
        tp, fp, fn = self.tp.sum(), self.fp.sum(), self.fn.sum()
        out = {
            "precision": tp / (tp + fp).clamp(min=1),
            "recall": tp / (tp + fn).clamp(min=1),
            "f1": 2 * tp / (2 * tp + fp + fn).clamp(min=1),
        }
        f1 = 2 * self.tp / (2 * self.tp + self.fp + self.fn).clamp(min=1)
        out.update({f"f1_{t}": f1[i] for i, t in enumerate(self.types)})
        precision = self.tp / (self.tp + self.fp).clamp(min=1)
        recall = self.tp / (self.tp + self.fn).clamp(min=1)
        out["per_type"] = torch.stack([precision, recall, f1, self.tp + self.fn], dim=1)  # (T, 4)
        return out
