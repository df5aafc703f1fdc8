"""encoder.freeze_word_embeddings: the word-embedding matrix stays fixed, through gradual unfreezing too."""

import torch

from polyhead.data.collate import Collator
from polyhead.models.encoder import Encoder
from polyhead.tokens.alignment import Windowing
from polyhead.tokens.wordpieces import load_tokenizer
from polyhead.training.callbacks.unfreeze import GradualUnfreezing


def test_encoder_freeze_frozen_word_embeddings_do_not_move(tiny_bert):
    encoder = Encoder(str(tiny_bert), window=30, stride=20, freeze_word_embeddings=True)
    words = encoder.model.embeddings.word_embeddings.weight
    positions = encoder.model.embeddings.position_embeddings.weight
    before_words, before_positions = words.detach().clone(), positions.detach().clone()

    class Module:  # what GradualUnfreezing reads: pl_module.model.encoder
        model = type("M", (), {"encoder": encoder})

    GradualUnfreezing().apply(Module, n_trainable=encoder.num_layers + 2)  # everything unfrozen
    assert not words.requires_grad and positions.requires_grad
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=0.1)
    collate = Collator(load_tokenizer(str(tiny_bert)), Windowing(30, 20, "first"))
    encoder(collate.align([["the", "team", "won"], ["rome"]])).words.sum().backward()
    optimizer.step()
    assert words.grad is None and torch.equal(words, before_words)
    assert not torch.equal(positions, before_positions)


def test_encoder_freeze_without_freezing_trains_every_weight(tiny_bert):
    encoder = Encoder(str(tiny_bert), window=30, stride=20)
    assert all(p.requires_grad for p in encoder.parameters()) and not encoder.frozen
