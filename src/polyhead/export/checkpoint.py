"""A training checkpoint, or an MLflow run's best one, back into the model and collator it trained: where an
earlier run kept its checkpoints (its `checkpoint_dir` tag), checkpoint files read back whole, or for the
score their ModelCheckpoint saved them with, so the best file is chosen by score, not by name."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from polyhead.data.collate import Collator
from polyhead.errors import UserError
from polyhead.models.build import build_collator, build_model
from polyhead.models.multitask import MultitaskModel
from polyhead.models.stored_config import StoredConfigError, build_stored, read_stored_config


def load_checkpoint(path: str | Path) -> tuple[MultitaskModel, Collator, DictConfig]:
    """Rebuild from the config and labels every checkpoint carries (training.callbacks.state.RunSpec). The
    config is data: what it names is built from the allow-list of models.stored_config, never instantiated."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    cfg, labels = run_spec(ckpt, path)
    state = {
        k.removeprefix("model."): v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("model.")
    }
    try:
        model = build_model(cfg, labels, make=build_stored)
        if set(model.state_dict()) != set(state):  # a head saved before an argument it has now
            model = build_model(cfg, labels, make=functools.partial(build_stored, saved=True))
    except StoredConfigError as err:
        raise StoredConfigError(f"{path}: {err}") from None
    model.load_state_dict(state)
    return model.eval(), build_collator(cfg.encoder), cfg


def run_spec(ckpt: dict, path: Path) -> tuple[DictConfig, dict[str, list[str]]]:
    """The checked config and label sets of a checkpoint read with read_checkpoint."""
    spec = ckpt.get("polyhead")
    if not isinstance(spec, dict) or "config" not in spec or "labels" not in spec:
        raise UserError(f"{path}: not a polyhead checkpoint (it holds no 'polyhead' config and labels)")
    labels = spec["labels"]
    if not isinstance(labels, dict) or not all(
        isinstance(task, str) and isinstance(values, list) and all(isinstance(v, str) for v in values)
        for task, values in labels.items()
    ):
        raise UserError(f"{path}: the checkpoint's labels are not lists of strings by task")
    cfg = read_stored_config(spec["config"], str(path))
    for key in ("encoder", "model.heads"):
        if not isinstance(OmegaConf.select(cfg, key), DictConfig):
            raise UserError(f"{path}: the stored config has no {key} section to rebuild the model from")
    return cfg, labels


def best_checkpoint(tracking_uri: str, run_id: str) -> Path:
    """The best checkpoint of an MLflow run of train.py."""
    return pick_checkpoint(checkpoint_dir(tracking_uri, run_id), run_id)


def checkpoint_dir(tracking_uri: str, run_id: str) -> Path:
    """Where an earlier MLflow run of train.py kept its checkpoints (its `checkpoint_dir` tag)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        raise UserError(f"{run_id}: not a checkpoint file, nor a run in {tracking_uri} (no such store)")
    try:
        ckpt_dir = MlflowClient(tracking_uri).get_run(run_id).data.tags.get("checkpoint_dir")
    except MlflowException as err:
        message = f"{run_id}: not a checkpoint file, nor a run in {tracking_uri}: {err.message}"
        raise UserError(message) from err
    if not ckpt_dir:
        raise UserError(f"run {run_id} has no checkpoint_dir tag: was it trained by train.py?")
    return Path(ckpt_dir)


def checkpoint_from_run(tracking_uri: str, run_id: str) -> str:
    """The last checkpoint of an earlier MLflow run, to resume it."""
    ckpt = checkpoint_dir(tracking_uri, run_id) / "last.ckpt"
    if not ckpt.is_file():
        raise UserError(f"run {run_id} has no last.ckpt (checkpoint_dir tag: {str(ckpt.parent)!r})")
    if (other := saved_run_id(peek_checkpoint(ckpt))) not in (None, run_id):
        raise UserError(f"{ckpt}: written by a later run ({other}) in the same folder, not by run {run_id}")
    return str(ckpt)


def pick_checkpoint(path: Path, run_id: str | None = None) -> Path:
    """A checkpoint file as it is; in a checkpoint folder, the best*.ckpt whose ModelCheckpoint saved it with
    the best score (mode max or min, as that callback had it; file names only break ties, or choose when no
    file holds a score), else last.ckpt. Given `run_id`, the files another MLflow run saved are passed over:
    a run started afresh in a folder an earlier run left (a study rerunning a killed job) saves beside it."""
    if path.is_file():
        return path

    def own(files) -> list[tuple[Path, dict]]:  # each file read once, for the run that saved it and its score
        peeked = [(p, peek_checkpoint(p)) for p in files]
        return [(p, ckpt) for p, ckpt in peeked if not run_id or saved_run_id(ckpt) in (None, run_id)]

    best = own(sorted(path.glob("best*.ckpt")))
    # scored, not NaN (score[0] == score[0])
    scored = [(score, p) for p, ckpt in best if (score := monitored_score(ckpt)) and score[0] == score[0]]
    if scored:
        sign = 1.0 if scored[0][0][1] == "max" else -1.0
        return max(scored, key=lambda item: sign * item[0][0])[1]  # the first of equals: Lightning keeps it
    found = [p for p, _ in best] or [p for p, _ in own(path.glob("last.ckpt"))]
    if not found:
        of_run = f" of run {run_id}" if run_id else ""
        raise UserError(f"{path}: no such checkpoint, nor a folder with best*.ckpt or last.ckpt{of_run}")
    return found[-1]


def read_checkpoint(path) -> dict:
    """torch.load of a checkpoint file; a truncated or foreign file is a UserError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such checkpoint") from None
    except Exception as err:  # zip reader errors (truncated), unpickling errors (not a checkpoint)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        why = f"truncated, or not a checkpoint: {reason}"
        raise UserError(f"{path}: cannot read the checkpoint ({why})") from err


def peek_checkpoint(path: Path) -> dict:
    """A checkpoint file memory-mapped, for what it says of itself (the weights are not read); {} for one
    that cannot be read."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return {}
    return ckpt if isinstance(ckpt, dict) else {}


def saved_run_id(ckpt: dict) -> str | None:
    """The MLflow run that saved a checkpoint (peek_checkpoint; training.callbacks.state), None when it names
    none."""
    run_id = ckpt.get("mlflow_run_id")
    return run_id if isinstance(run_id, str) else None


def monitored_score(ckpt: dict) -> tuple[float, str] | None:
    """(score, mode) a ModelCheckpoint saved a checkpoint (peek_checkpoint) with: its monitor's value then
    (`current_score`) and whether higher or lower is better; None for a file without one, or one that cannot
    be read."""
    callbacks = ckpt.get("callbacks")
    for key, state in (callbacks or {}).items():
        if not str(key).startswith("ModelCheckpoint") or not isinstance(state, dict):
            continue
        score = state.get("current_score")
        if score is not None and state.get("monitor"):
            return float(score), _state_key_fields(str(key)).get("mode", "min")  # Lightning's default
    return None


def _state_key_fields(key: str) -> dict:
    """The fields of a callback's state key, e.g. `ModelCheckpoint{'monitor': 'val/objective', 'mode': 'max',
    ...}` (Callback._generate_state_key), read as a literal."""
    try:
        fields = ast.literal_eval(key[key.index("{") :])
    except (ValueError, SyntaxError):
        return {}
    return fields if isinstance(fields, dict) else {}
