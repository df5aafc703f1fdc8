"""Test-set artifacts for MLflow: confusion matrices of classification heads, per-type entity scores."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch

from polyhead.tracking import log_artifacts, mlflow_loggers

PER_TYPE_COLUMNS = ("precision", "recall", "f1", "support")


class TestArtifacts(pl.Callback):
    """After testing, logs to every MLflow logger under `artifact_path`/:

    - `<task>_confusion.png` + `.csv` for heads with a confusion matrix (tagger, exclusive textcat);
      rows are gold labels, columns predicted labels, counts over the labelled test words / texts;
    - `<task>_per_type.md` + `.csv` for ner: precision, recall, F1 and support (gold spans) per entity type.

    It reads `MultitaskModule.details["test"]`, the non-scalar outputs of the heads' test metrics."""

    __test__ = False  # not a pytest class

    def __init__(self, artifact_path: str = "test"):
        self.artifact_path = artifact_path

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        details = getattr(pl_module, "details", {}).get("test", {})
        loggers = mlflow_loggers(trainer.loggers)
        if not details or not loggers or not trainer.is_global_zero:
            return
        with tempfile.TemporaryDirectory() as tmp:
            write_test_artifacts(details, pl_module.model.heads, Path(tmp))
            log_artifacts(loggers, tmp, self.artifact_path)


def write_test_artifacts(details: dict[str, dict[str, torch.Tensor]], heads, directory: Path) -> list[Path]:
    written = []
    for task, values in details.items():
        if "confusion" in values:
            written += _confusion_files(task, values["confusion"], heads[task].labels, directory)
        if "per_type" in values:
            written += _per_type_files(task, values["per_type"], heads[task].types, directory)
    return written


def _confusion_files(task: str, matrix: torch.Tensor, labels: list[str], directory: Path) -> list[Path]:
    from polyhead.plots import confusion_matrix  # matplotlib: imported only when there is something to draw

    rows = [[gold, *counts] for gold, counts in zip(labels, matrix.long().tolist())]
    csv_path = _write_csv(directory / f"{task}_confusion.csv", ["gold \\ predicted", *labels], rows)
    title = f"{task}: test confusion matrix"
    return [csv_path, confusion_matrix(matrix.numpy(), labels, title, directory / f"{task}_confusion.png")]


def _per_type_files(task: str, table: torch.Tensor, types: list[str], directory: Path) -> list[Path]:
    header = ["type", *PER_TYPE_COLUMNS]
    rows = [
        [t, *(f"{v:.4f}" for v in scores), int(support)]
        for t, (*scores, support) in zip(types, table.tolist())
    ]
    return [
        _write_csv(directory / f"{task}_per_type.csv", header, rows),
        _write_markdown(directory / f"{task}_per_type.md", header, rows),
    ]


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def _write_markdown(path: Path, header: list[str], rows: list[list]) -> Path:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path
