"""PNG figures for MLflow artifacts: learning curves over seeds and confusion matrices.

Figures are built with matplotlib's object API (no pyplot), so nothing depends on a display or on global
backend state and figures are freed with their last reference."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def learning_curve(
    curves: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float]]], metric: str, path: Path
) -> Path:
    """One line per configuration, `curves[label] = (train examples, mean, std)`, with ± 1 std as error bars
    (side by side where configurations share a size) and a band."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    xs_all = []
    for i, (label, (x, mean, std)) in enumerate(curves.items()):
        order = np.argsort(x)
        x, mean = np.asarray(x, float)[order], np.asarray(mean, float)[order]
        std = np.nan_to_num(np.asarray(std, float)[order])  # one seed: no bar
        shift = 1.0 + 0.03 * (i - (len(curves) - 1) / 2)  # side by side on a log axis
        line = ax.errorbar(x * shift, mean, yerr=std, marker="o", capsize=3, label=label)
        ax.fill_between(x, mean - std, mean + std, alpha=0.15, color=line.lines[0].get_color())
        xs_all.extend(x)
    if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 10:
        ax.set_xscale("log")
    ax.set_xlabel("training examples")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean ± 1 std over seeds")
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize="small")
    fig.savefig(path, dpi=120)
    return path


def difference_intervals(
    series: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float]]],
    metric: str,
    level: float,
    path: Path,
) -> Path:
    """One line per comparison, `series[label] = (train examples, A - B, low, high)`, with its interval as
    error bars and a line at 0: an interval across 0 cannot tell A from B at that size."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(0.0, color="black", linewidth=0.8)
    xs_all = []
    for i, (label, (x, diff, low, high)) in enumerate(series.items()):
        order = np.argsort(np.asarray(x, float), kind="stable")
        x, diff = np.asarray(x, float)[order], np.asarray(diff, float)[order]
        low, high = np.asarray(low, float)[order], np.asarray(high, float)[order]
        shift = 1.0 + 0.03 * (i - (len(series) - 1) / 2)  # side by side on a log axis
        errors = np.nan_to_num(np.vstack([diff - low, high - diff]))  # one seed: no interval
        ax.errorbar(x * shift, diff, yerr=errors, marker="o", capsize=3, label=label)
        xs_all.extend(x)
    if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 10:
        ax.set_xscale("log")
    ax.set_xlabel("training examples")
    ax.set_ylabel(f"difference in {metric}")
    ax.set_title(f"{metric}: A − B with {level:.0%} interval")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=120)
    return path


def confusion_matrix(matrix: np.ndarray, labels: Sequence[str], title: str, path: Path) -> Path:
    """Rows gold, columns predicted; colour is the row-normalised share (recall), cells show counts."""
    counts = np.asarray(matrix, dtype=np.int64)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    n = len(labels)
    side = min(max(4.0, 0.45 * n + 2), 24.0)
    fig = Figure(figsize=(side + 1, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of gold row")
    ax.set_xticks(range(n), labels, rotation=90, fontsize="small")
    ax.set_yticks(range(n), labels, fontsize="small")
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    if n <= 30:
        for (i, j), count in np.ndenumerate(counts):
            if count:
                colour = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, str(count), ha="center", va="center", fontsize="x-small", color=colour)
    fig.savefig(path, dpi=120)
    return path
