"""Packing documents into full sequences, dynamic (whole-word) masking, domain words in the vocabulary."""

import numpy as np
import pytest
import torch
from conftest import FIXTURES
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

from polyhead.pretrain.packing import MaskingCollator, PackedTextDataModule, pack_documents
from polyhead.pretrain.vocabulary import add_domain_words, frequent_split_words

DOCS = ["the robot tested rough ground", "elena petrova won", "okafor signed the contract with bluepeak"]


def toy_tokenizer():
    # vocab=, not vocab_file=: transformers 5 ignores vocab_file and leaves only the special tokens
    return BertTokenizerFast(vocab=str(FIXTURES / "vocab.txt"), do_lower_case=True)


@pytest.fixture(scope="module")
def tokenizer():
    return toy_tokenizer()


def test_packing_fills_sequences_with_documents_between_separators(tokenizer):
    seqs = pack_documents(tokenizer, DOCS, max_length=8)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert [len(ids) for ids, _ in seqs[:-1]] == [8] * (len(seqs) - 1) and len(seqs[-1][0]) <= 8
    assert all(ids[0] == cls and ids[-1] == sep for ids, _ in seqs)
    stream = [int(i) for ids, _ in seqs for i in ids[1:-1]]
    pieces = [tokenizer(d, add_special_tokens=False)["input_ids"] for d in DOCS]
    assert stream == pieces[0] + [sep] + pieces[1] + [sep] + pieces[2]
    for ids, starts in seqs:  # a word starts at every piece but ##continuations; a cut word starts afresh
        pieces = tokenizer.convert_ids_to_tokens(ids[1:-1].tolist())
        expected = [
            (p != "[SEP]" and not p.startswith("##")) or (i == 0 and p != "[SEP]")
            for i, p in enumerate(pieces)
        ]
        assert starts[1:-1].tolist() == expected and not starts[0] and not starts[-1]


def test_packing_masks_only_real_pieces_and_changes_every_batch(tokenizer):
    torch.manual_seed(0)
    seqs = pack_documents(tokenizer, DOCS * 20, max_length=32)
    collate = MaskingCollator(tokenizer, mlm_probability=0.3)
    batch = collate(seqs)
    special = torch.isin(batch["labels"], torch.tensor(tokenizer.all_special_ids))
    masked = batch["labels"] != -100
    assert not special.any() and not (masked & (batch["attention_mask"] == 0)).any()
    real = (batch["attention_mask"] == 1).sum() - 2 * len(seqs)
    assert 0.2 < masked.sum() / real < 0.4
    assert (batch["input_ids"][masked] == tokenizer.mask_token_id).float().mean() > 0.6  # 80/10/10
    assert not torch.equal(masked, collate(seqs)["labels"] != -100)  # dynamic: fresh masks per call
    seeded = [MaskingCollator(tokenizer, 0.3, seed=5)(seqs)["labels"] for _ in range(2)]
    assert torch.equal(*seeded)


def test_packing_whole_word_mask_masks_all_pieces_of_a_word(tokenizer):
    torch.manual_seed(1)
    seqs = pack_documents(tokenizer, ["bluepeak solara greenleaf ironbridge zzqx"] * 30, max_length=64)
    batch = MaskingCollator(tokenizer, mlm_probability=0.4, whole_word_mask=True)(seqs)
    special = set(tokenizer.all_special_ids)
    n_masked_words = 0
    for (ids, starts), labels in zip(seqs, batch["labels"]):
        word = np.cumsum(starts)
        real = np.array([i not in special for i in ids.tolist()])
        for w in set(word[starts].tolist()):
            members = (labels[: len(ids)] != -100).numpy()[(word == w) & real]
            assert len(members) >= 1 and (members.all() or not members.any())
            n_masked_words += bool(members.all())
    assert n_masked_words > 10


def test_packing_datamodule_validation_masks_fixed(tokenizer):
    dm = PackedTextDataModule(tokenizer, DOCS * 4, DOCS, max_length=16, batch_size=2, eval_batch_size=2)
    first = [b["labels"].clone() for b in dm.val_dataloader()]
    second = [b["labels"] for b in dm.val_dataloader()]
    assert len(first) == len(dm.val_batches) > 0
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert dm.num_pieces["train"] == sum(len(ids) for ids, _ in dm.train)


def test_packing_vocabulary_domain_word_is_one_token_with_mean_embedding():
    tokenizer = toy_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    model = BertForMaskedLM(config)
    docs = ["zorbix rises", "Zorbix falls", "the zorbix", "zorbixes"] * 5
    assert frequent_split_words(tokenizer, docs, top_k=2, min_count=10) == ["zorbix"]  # "rises" < 10
    old = tokenizer("zorbix", add_special_tokens=False)["input_ids"]
    before = model.get_input_embeddings().weight[old].mean(0).detach().clone()
    assert add_domain_words(tokenizer, model, ["Zorbix", "the", "zorbix"]) == ["zorbix"]
    new = tokenizer.convert_tokens_to_ids("zorbix")
    assert new == len(tokenizer) - 1 and model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert torch.allclose(model.get_input_embeddings().weight[new], before)
    assert tokenizer.tokenize("Zorbix (zorbix) zorbixes") == [
        "zorbix",
        "(",
        "zorbix",
        ")",
        *tokenizer.tokenize("zorbixes"),
    ]
    assert tokenizer.tokenize("zorbixes")[0] != "zorbix"  # whole words only
    assert model(**tokenizer(["zorbix"], return_tensors="pt")).logits.shape[-1] == len(tokenizer)
