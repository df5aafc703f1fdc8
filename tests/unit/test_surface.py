"""models.surface: the form features a head reads beside its word vectors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from polyhead.models.encoder import EncoderOutput
from polyhead.models.heads.tagger import TokenTaggingHead
from polyhead.models.surface import SHAPES, SurfaceEmbedding, shape, suffix_ids


@pytest.mark.parametrize(
    "word, expected",
    [
        ("space", "lower"),
        ("Space", "title"),
        ("I", "title"),
        ("NASA", "upper"),
        ("iPhone", "mixed"),
        ("B2B", "digit"),
        ("--", "other"),
        ("é", "lower"),
    ],
)
def test_surface_shape_of_a_word(word, expected):
    assert SHAPES[shape(word)] == expected


def test_surface_suffix_ids_do_not_depend_on_case_or_on_the_process():
    assert suffix_ids("Walked", 1 << 14) == suffix_ids("walked", 1 << 14)
    assert suffix_ids("walked", 1 << 14) != suffix_ids("walker", 1 << 14)
    code = "from polyhead.models.surface import suffix_ids; print(suffix_ids('nominated', 1 << 14))"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert seen == {f"{suffix_ids('nominated', 1 << 14)}\n"}  # an exported pipeline's ids are training's


def test_surface_embedding_needs_the_texts():
    with pytest.raises(ValueError, match="forms"):
        SurfaceEmbedding(8)(None, 3)


def test_surface_tagger_learns_what_only_the_form_shows():
    """The word vectors of "Paris" and "paris" are the same (an uncased encoder); the label is the case.
    With surface features the head learns it; without, it cannot beat one label for both."""
    torch.manual_seed(0)
    words = [["Paris", "paris", "Rome", "rome"], ["rome", "Paris", "paris", "Rome"]]
    gold = torch.tensor([[1 if w[0].isupper() else 0 for w in text] for text in words])
    vector = {"paris": torch.randn(16), "rome": torch.randn(16)}
    enc = EncoderOutput(
        words=torch.stack([torch.stack([vector[w.lower()] for w in text]) for text in words]),
        word_mask=torch.ones(2, 4, dtype=torch.bool),
        cls=torch.zeros(2, 16),
        texts=words,
    )
    accuracy = {}
    for surface in (0, 8):
        head = TokenTaggingHead(16, ["low", "cap"], dropout=0.0, surface=surface)
        optim = torch.optim.Adam(head.parameters(), lr=0.05)
        for _ in range(100):
            optim.zero_grad()
            head.loss(head(enc), gold).backward()
            optim.step()
        accuracy[surface] = (head(enc).argmax(-1) == gold).float().mean().item()
    assert accuracy == {0: 0.5, 8: 1.0}


def test_surface_a_lemmatizer_saved_before_form_features_builds_as_it_was_saved(tmp_path):
    """head.json and stored checkpoint configs written before `surface` existed rebuild a head without it;
    a new config gets the form features by default."""
    import json

    from polyhead.export.components import read_head_spec
    from polyhead.models.heads.lemmatizer import LemmatizerHead
    from polyhead.models.heads.registry import head_key
    from polyhead.models.stored_config import build_stored

    old = LemmatizerHead(8, ["l=", "l|||s|"], surface=0)
    config = {k: v for k, v in old.config.items() if k != "surface"}
    (tmp_path / "head.json").write_text(json.dumps({"head": head_key(old), "config": config}))
    loaded = read_head_spec(tmp_path / "head.json")
    loaded.load_state_dict(old.state_dict())  # strict: the same parameters
    assert loaded.surface is None
    target = {"_target_": "polyhead.models.heads.lemmatizer.LemmatizerHead", "_partial_": True}
    assert build_stored(target, saved=True)(hidden_size=8, labels=["l="]).surface is None  # old checkpoint
    assert build_stored(target)(hidden_size=8, labels=["l="]).surface is not None  # a config that omits it
