"""A training checkpoint, or an MLflow run's best one, back into the model and collator it trained."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from polyhead.callbacks.state import read_checkpoint
from polyhead.data.collate import Collator
from polyhead.errors import UserError
from polyhead.models.build import build_collator, build_model
from polyhead.models.multitask import MultitaskModel
from polyhead.models.stored_config import StoredConfigError, build_stored, read_stored_config


def load_checkpoint(path: str | Path) -> tuple[MultitaskModel, Collator, DictConfig]:
    """Rebuild from the config and labels every checkpoint carries (callbacks.state.RunSpec). The config is
    data: what it names is built from the allow-list of models.stored_config, never instantiated."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    cfg, labels = run_spec(ckpt, path)
    try:
        model = build_model(cfg, labels, make=build_stored)
    except StoredConfigError as err:
        raise StoredConfigError(f"{path}: {err}") from None
    state = {
        k.removeprefix("model."): v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("model.")
    }
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
    from polyhead.tracking import checkpoint_dir

    return pick_checkpoint(checkpoint_dir(tracking_uri, run_id))


def pick_checkpoint(path: Path) -> Path:
    """A checkpoint file as it is; in a checkpoint folder, the best*.ckpt whose ModelCheckpoint saved it with
    the best score (mode max or min, as that callback had it; file names only break ties, or choose when no
    file holds a score), else last.ckpt."""
    from polyhead.callbacks.checkpoint import monitored_score

    if path.is_file():
        return path
    found = sorted(path.glob("best*.ckpt"))
    scored = [(score, p) for p in found if (score := monitored_score(p)) and score[0] == score[0]]  # not NaN
    if scored:
        sign = 1.0 if scored[0][0][1] == "max" else -1.0
        return max(scored, key=lambda item: sign * item[0][0])[1]  # the first of equals: Lightning keeps it
    found = found or sorted(path.glob("last.ckpt"))
    if not found:
        raise UserError(f"{path}: no such checkpoint, nor a folder with best*.ckpt or last.ckpt")
    return found[-1]
