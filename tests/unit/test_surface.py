"""models.surface: the form features a head reads beside its word vectors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from polyhead.models.encoder import EncoderOutput
from polyhead.models.heads.tagger import TokenTaggingHead
from polyhead.models.surface import SHAPES, SurfaceEmbedding, shape, suffix_ids, word_ids, word_shape


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


@pytest.mark.parametrize(
    "word, expected",
    [
        ("256,000", "ddd,ddd"),
        ("Stevens", "Xxxxx"),
        ("STEVENS", "XXXX"),
        ("it's", "xx'x"),
        ("T.V.", "X.X."),
        ("", ""),
    ],
)
def test_surface_written_shape_of_a_word(word, expected):
    assert word_shape(word) == expected


def test_surface_written_shape_tells_separated_numbers_from_plain_ones():
    plain, separated = word_ids("2000", 1 << 14, True), word_ids("2,000", 1 << 14, True)
    assert plain[0] == separated[0] == SHAPES.index("digit")  # one shape class for both
    assert plain[-1] != separated[-1]  # "dddd" and "d,ddd"
    assert len(word_ids("2000", 1 << 14)) == len(plain) - 1  # without it, the rows as before


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


def test_surface_a_lemmatizer_saved_before_the_written_shape_decodes_as_it_did(tmp_path):
    """A head.json from before `surface_shape` rebuilds without the shape row, so its trained embeddings
    see the ids they were trained on."""
    import json

    from polyhead.export.components import read_head_spec
    from polyhead.models.heads.lemmatizer import LemmatizerHead
    from polyhead.models.heads.registry import head_key

    old = LemmatizerHead(8, ["l=", "d,"], surface=4, surface_shape=False)
    config = {k: v for k, v in old.config.items() if k != "surface_shape"}
    (tmp_path / "head.json").write_text(json.dumps({"head": head_key(old), "config": config}))
    loaded = read_head_spec(tmp_path / "head.json")
    loaded.load_state_dict(old.state_dict())
    assert loaded.surface.word_shape is False
    assert LemmatizerHead(8, ["l="]).surface.word_shape is True  # new heads read it
    enc = EncoderOutput(
        torch.randn(1, 2, 8), torch.ones(1, 2, dtype=torch.bool), torch.zeros(1, 8), [["2,000", "x"]]
    )
    old.eval(), loaded.eval()
    assert torch.equal(old(enc), loaded(enc))
