"""Checks of the user's settings made before any MLflow run is tracked: hyper-parameters torch or the
encoder would reject, and the encoder name. Each failure is a UserError naming the key and the value."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from polyhead.errors import UserError


def _at_least(low: float, strict: bool = False):
    return (lambda v: v > low, f"> {low}") if strict else (lambda v: v >= low, f">= {low}")


def _fraction():
    return lambda v: 0 <= v < 1, "in [0, 1)"


# key -> (test, what the value must be); a key absent from the config (or null) is not checked
RULES = {
    "optim.lr": _at_least(0),
    "optim.head_lr": _at_least(0),
    "optim.layer_decay": _at_least(0, strict=True),
    "optim.weight_decay": _at_least(0),
    "optim.eps": _at_least(0),
    "optim.warmup": _fraction(),
    "optim.ratio": _at_least(1),
    "encoder.window": _at_least(0, strict=True),
    "encoder.stride": _at_least(0, strict=True),
    "encoder.dropout": _fraction(),
    "mlm.probability": (lambda v: 0 < v < 1, "in (0, 1)"),
}


def check_number(key: str, value, test, must: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{key}={value!r}: must be a number {must}")
    if not test(value):
        raise UserError(f"{key}={value}: must be {must}")


def check_hparams(cfg: DictConfig) -> None:
    """Every rule of RULES, the betas, the window/stride pair, head dropouts and rates, the lr schedule."""
    from polyhead.training.optim import schedule_lambda

    for key, (test, must) in RULES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            check_number(key, value, test, must)
    for i, beta in enumerate(OmegaConf.select(cfg, "optim.betas", default=None) or []):
        check_number(f"optim.betas[{i}]", beta, *_fraction())
    window, stride = cfg.encoder.get("window"), cfg.encoder.get("stride")
    if window is not None and stride is not None and stride > window:
        raise UserError(f"encoder.stride={stride} must be <= encoder.window={window}")
    pooling = cfg.encoder.get("pooling")
    if pooling is not None and pooling not in ("first", "mean"):
        raise UserError(f"encoder.pooling={pooling!r}: must be 'first' or 'mean'")
    for task, spec in (OmegaConf.select(cfg, "model.heads", default=None) or {}).items():
        for key, rule in (("dropout", _fraction()), ("lr", _at_least(0))):
            if spec is not None and spec.get(key) is not None:
                check_number(f"model.heads.{task}.{key}", spec[key], *rule)
    try:
        schedule_lambda(cfg.optim.schedule, 1, cfg.optim.warmup)
    except ValueError as err:
        raise UserError(str(err)) from None


def looks_like_path(name: str) -> bool:
    """A folder name rather than a hub id (`org/model`): absolute, relative with ./ or ~, or nested."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def load_encoder_tokenizer(name: str):
    """The encoder's tokenizer; a missing folder or an unknown model name is a UserError saying which."""
    from polyhead.tokens.wordpieces import load_tokenizer, resolve_encoder

    name = str(name)
    path = Path(name).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"encoder.name={name}: is a file; give a model folder or a Hugging Face model name")
    if path.is_dir() and not (path / "config.json").is_file():
        raise UserError(f"encoder.name={name}: the folder has no config.json, so it holds no model")
    if not path.is_dir() and resolve_encoder(name) == name and looks_like_path(name):
        raise UserError(f"encoder.name={name}: the folder does not exist")
    try:
        return load_tokenizer(name)
    except (OSError, ValueError) as err:
        if path.is_dir():
            raise UserError(f"encoder.name={name}: cannot load the folder's tokenizer: {err}") from err
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        why = "the hub is offline (HF_HUB_OFFLINE)" if offline else "it could not be fetched from the hub"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"encoder.name={name}: no such folder, and not a known model: {why} ({first})"
        ) from err
