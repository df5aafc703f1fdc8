"""Shared fixtures: no network, a tiny random BERT with a tokenizer over a checked-in toy vocabulary."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # a stray hub download fails loudly instead of hanging
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def child_env(**env: str) -> dict[str, str]:
    """The environment `env` of a child python, which runs the polyhead this test imports: with
    PYTHONPATH=<checkout>/src set here (a worktree beside the installed one), the child gets it too."""
    return env | ({"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {})


def write_tiny_bert(directory: Path, max_positions: int = 64) -> Path:
    """A 2-layer, 32-wide random BERT saved like any pretrained encoder (safetensors + tokenizer files)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    tokenizer = BertTokenizerFast(vocab=str(FIXTURES / "vocab.txt"), do_lower_case=True)  # transformers 5
    assert tokenizer.vocab_size > 50, "the toy vocabulary was not loaded"
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def compose_config(name: str, tmp_path: Path, overrides: list[str], output_dir: Path):
    """Compose conf/<name>.yaml as its script does (Hydra runtime set), with a private root and store."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import polyhead.config  # noqa: F401  (registers the resolvers conf/ uses)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose(name, overrides=[f"paths.root_dir={tmp_path}", *overrides], return_hydra_config=True)
    (tmp_path / "mlruns").mkdir(exist_ok=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg["hydra"]
    return cfg


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    """A small corpus file the test writes itself: text as UTF-8, bytes as given."""
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path
