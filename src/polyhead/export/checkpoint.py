"""A training checkpoint, or an MLflow run's best one, back into the model and collator it trained."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from polyhead.callbacks.state import read_checkpoint
from polyhead.data.collate import Collator
from polyhead.errors import UserError
from polyhead.models.build import build_collator, build_model
from polyhead.models.multitask import MultitaskModel


def load_checkpoint(path: str | Path) -> tuple[MultitaskModel, Collator, DictConfig]:
    """Rebuild from the config and labels every checkpoint carries (callbacks.state.RunSpec)."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    spec = ckpt.get("polyhead")
    if spec is None:
        raise UserError(f"{path}: not a polyhead checkpoint (it holds no 'polyhead' config and labels)")
    cfg = OmegaConf.create(spec["config"])
    model = build_model(cfg, spec["labels"])
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model.eval(), build_collator(cfg.encoder), cfg


def best_checkpoint(tracking_uri: str, run_id: str) -> Path:
    """The best checkpoint of an MLflow run of train.py."""
    from polyhead.tracking import checkpoint_dir

    return pick_checkpoint(checkpoint_dir(tracking_uri, run_id))


def pick_checkpoint(path: Path) -> Path:
    """A checkpoint file as it is; in a checkpoint folder, the best checkpoint, else last.ckpt."""
    if path.is_file():
        return path
    found = sorted(path.glob("best*.ckpt")) or sorted(path.glob("last.ckpt"))
    if not found:
        raise UserError(f"{path}: no such checkpoint, nor a folder with best*.ckpt or last.ckpt")
    return found[-1]
