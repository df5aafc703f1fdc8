"""Every option of every config group composes, resolves and builds, in seconds: a broken config never
reaches a user. For each primary config (train, pretrain, export, pipeline, distill) and each group its
defaults list names, every option file of that group is selected in turn; the datamodule (or pretraining
text) and the Trainer are built from the result. Corpora on disk are read only where they exist:
experiments on real corpora point `paths.corpora` at an empty folder and are instantiated without reading."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, compose_config
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from polyhead.data.datamodule import MultitaskDataModule
from polyhead.hardware import resolve_trainer_precision
from polyhead.pretrain.text import read_sources
from polyhead.tracking import logger_configs, mlflow_config
from polyhead.training.trainer import build_trainer

CONF = PROJECT_ROOT / "conf"
PRIMARY = ("train", "pretrain", "export", "pipeline", "distill")


def groups_of(name: str) -> list[str]:
    """The groups a primary config's defaults list selects (`- data: demo`, `- override paths: repo`)."""
    defaults = yaml.safe_load((CONF / f"{name}.yaml").read_text()).get("defaults", [])
    return [next(iter(entry)).removeprefix("override ") for entry in defaults if isinstance(entry, dict)]


def cases() -> list[tuple[str, str | None, str | None]]:
    """(primary config, group, option) for every option file of every group it uses; (name, None, None)
    composes the primary config as it is."""
    found = [(name, None, None) for name in PRIMARY]
    for name in PRIMARY:
        for group in groups_of(name):
            found += [(name, group, option.stem) for option in sorted((CONF / group).glob("*.yaml"))]
    return found


def test_configs_every_group_and_option_is_covered():
    """Each folder of conf/ is a group some primary config uses, so the cases below reach every file."""
    used = {group for name in PRIMARY for group in groups_of(name)}
    assert used == {p.name for p in CONF.iterdir() if p.is_dir()}
    assert ("train", "logger", "csv") in cases() and ("pretrain", "text", "tweets") in cases()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One project root for every case: the MLflow logger's sqlite store is created once, not per case."""
    return tmp_path_factory.mktemp("configs")


def compose(name: str, tmp_path: Path, overrides: list[str]) -> DictConfig:
    corpora = tmp_path / "corpora"  # empty: real corpora are named, never read
    corpora.mkdir(exist_ok=True)
    cfg = compose_config(name, tmp_path, [f"paths.corpora={corpora}", *overrides], tmp_path / "out")
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    return cfg


def corpus_paths(cfg: DictConfig) -> list[str]:
    section = cfg.get("data") or cfg.get("text") or {}
    return [str(c.path) for split in ("train", "dev", "test") for c in section.get(split) or []]


def build_data(cfg: DictConfig) -> None:
    """The datamodule (read when its files exist), or the pretraining text (read when it exists)."""
    readable = all(Path(p).is_file() for p in corpus_paths(cfg))
    if "data" in cfg:
        datamodule = instantiate(cfg.data)
        assert isinstance(datamodule, MultitaskDataModule)
        assert [s.path for specs in datamodule.specs.values() for s in specs] == corpus_paths(cfg)
        if readable:
            datamodule.load()
            assert datamodule.examples["train"] and set(datamodule.labels) <= set(cfg.model.heads)
    elif cfg.get("text") and readable:
        docs, _ = read_sources(cfg.text.train)
        assert docs


def build(cfg: DictConfig) -> None:
    """Loggers, callbacks and Trainer of a composed training config, as polyhead.training.run builds them."""
    loggers = [instantiate(spec) for spec in logger_configs(cfg).values()]
    trainer, precision = build_trainer(cfg, loggers)
    assert precision == resolve_trainer_precision(cfg.trainer) and precision != "auto"
    assert [type(lg).__name__ for lg in trainer.loggers] == [
        spec._target_.rsplit(".", 1)[-1] for spec in logger_configs(cfg).values()
    ] or cfg.trainer.fast_dev_run
    names = {type(cb).__name__ for cb in trainer.callbacks}
    for spec in cfg.callbacks.values():
        if spec is not None:
            assert spec._target_.rsplit(".", 1)[-1] in names
    if not cfg.trainer.fast_dev_run:
        assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize(("name", "group", "option"), cases())
def test_configs_option_composes_and_builds(name, group, option, root):
    cfg = compose(name, root, [f"{group}={option}"] if group else [])
    if group:
        assert HydraConfig.get().runtime.choices[group] == option
    build_data(cfg)
    if "trainer" in cfg:
        build(cfg)


def test_configs_several_loggers_and_mlflow_overrides(root):
    cfg = compose("train", root, ["logger=[mlflow,csv]", "logger.mlflow.tracking_uri=http://host:5000"])
    assert list(logger_configs(cfg)) == ["mlflow", "csv"]
    assert mlflow_config(cfg).tracking_uri == "http://host:5000"
    build(cfg)
    assert mlflow_config(compose("train", root, ["logger=csv"])) is None
    assert logger_configs(compose("train", root, ["~logger"])) == {}


def test_configs_experiment_on_real_corpora_reads_from_paths_corpora(root):
    cfg = compose("train", root, ["experiment=ewt", "debug=limit", "launcher=joblib"])
    assert cfg.experiment_name == "ewt" and cfg.threads == 1 and cfg.trainer.max_epochs == 1
    assert all(p.startswith(str(root / "corpora")) for p in corpus_paths(cfg))
    build_data(cfg)
    build(cfg)


@pytest.mark.parametrize("name", ["train", "pretrain"])
def test_configs_debug_overlay_wins_over_the_main_config(name, root):
    cfg = compose(name, root, ["debug=limit"])
    assert cfg.trainer.max_epochs == 1 and cfg.trainer.limit_train_batches == 5
