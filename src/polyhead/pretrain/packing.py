"""Documents -> full-length wordpiece sequences for masked-language-model training, masked afresh per batch.

Packing concatenates the documents' pieces with a separator between documents and cuts the stream into
[CLS] + (max_length - 2) pieces + [SEP], so no step is spent on padding (only the last sequence is short).
Each piece also carries whether it starts a whitespace word, which whole-word masking needs."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

from polyhead.tokens.wordpieces import special_tokens


def pack_documents(
    tokenizer: PreTrainedTokenizerBase, docs: list[str], max_length: int, batch: int = 1000
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(piece ids, word-start flags) per packed sequence, special tokens included."""
    first, last = special_tokens(tokenizer)
    if max_length <= len(first) + len(last):
        raise ValueError(f"max_length={max_length} leaves no room for text")
    ids: list[int] = []
    starts: list[bool] = []
    for i in range(0, len(docs), batch):
        enc = tokenizer(docs[i : i + batch], add_special_tokens=False, return_offsets_mapping=True)
        for doc_ids, offsets in zip(enc["input_ids"], enc["offset_mapping"]):
            if not doc_ids:
                continue
            if ids and last:  # separator between documents: never masked, never part of a word
                ids.extend(last)
                starts.extend([False] * len(last))
            ids.extend(doc_ids)
            starts.extend(j == 0 or offsets[j][0] != offsets[j - 1][1] for j in range(len(doc_ids)))
    body = max_length - len(first) - len(last)
    ids_arr, starts_arr = np.asarray(ids, dtype=np.int64), np.asarray(starts, dtype=bool)
    sequences = []
    for i in range(0, len(ids_arr), body):
        chunk_ids, chunk_starts = ids_arr[i : i + body], starts_arr[i : i + body].copy()
        if len(chunk_ids) and int(chunk_ids[0]) not in last:
            chunk_starts[0] = True  # a word cut by the sequence boundary starts afresh
        sequences.append(
            (
                np.concatenate([first, chunk_ids, last]).astype(np.int64),
                np.concatenate([[False] * len(first), chunk_starts, [False] * len(last)]).astype(bool),
            )
        )
    return sequences


class MaskingCollator:
    """Pads packed sequences and masks them with transformers' MLM collator (80/10/10 or whole words).

    Without a seed it draws from torch's global RNG (seeded by the run, restored on resume)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        mlm_probability: float = 0.15,
        whole_word_mask: bool = False,
        seed: int | None = None,
    ):
        replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if whole_word_mask else {}
        self.mlm = DataCollatorForLanguageModeling(  # whole words: always [MASK] (transformers' only option)
            tokenizer, mlm_probability=mlm_probability, whole_word_mask=whole_word_mask, **replace
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        self.mlm.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def __call__(self, items: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
        size, length = len(items), max(len(ids) for ids, _ in items)
        input_ids = torch.full((size, length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((size, length), dtype=torch.long)
        word_start = torch.zeros((size, length), dtype=torch.bool)
        for i, (ids, starts) in enumerate(items):
            input_ids[i, : len(ids)] = torch.from_numpy(ids)
            attention_mask[i, : len(ids)] = 1
            word_start[i, : len(ids)] = torch.from_numpy(starts)
        special = torch.isin(input_ids, self.special_ids) | (attention_mask == 0)
        offsets = None
        if self.mlm.whole_word_mask:
            # Synthetic character offsets: pieces of one word touch, words are one character apart.
            pos = torch.arange(length) + torch.cumsum(word_start.long(), dim=1)
            offsets = torch.stack([pos, pos + 1], dim=-1)
        original = input_ids.clone()
        inputs, labels = self.mlm.torch_mask_tokens(
            input_ids, special_tokens_mask=special, offset_mapping=offsets
        )
        if (labels == -100).all() and not special.all():  # a tiny batch drew no mask: predict one piece
            candidates = (~special).nonzero()
            row, col = candidates[torch.randint(len(candidates), (1,), generator=self.mlm.generator)][0]
            labels[row, col], inputs[row, col] = original[row, col], self.mlm.tokenizer.mask_token_id
        return {"input_ids": inputs, "attention_mask": attention_mask, "labels": labels}


class PackedTextDataModule(pl.LightningDataModule):
    """Packed train / validation sequences; training masks change every epoch (dynamic masking), validation
    batches are masked once with a fixed seed so epochs compare on the same task."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        train_docs: list[str],
        val_docs: list[str],
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        mlm_probability: float = 0.15,
        whole_word_mask: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.train = pack_documents(tokenizer, train_docs, max_length)
        self.val = pack_documents(tokenizer, val_docs, max_length) if val_docs else []
        self.batch_size = batch_size
        self.train_collate = MaskingCollator(tokenizer, mlm_probability, whole_word_mask)
        val_collate = MaskingCollator(tokenizer, mlm_probability, whole_word_mask, seed=seed)
        step = eval_batch_size
        self.val_batches = [val_collate(self.val[i : i + step]) for i in range(0, len(self.val), step)]

    @property
    def num_pieces(self) -> dict[str, int]:
        return {"train": sum(len(i) for i, _ in self.train), "val": sum(len(i) for i, _ in self.val)}

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True, collate_fn=self.train_collate)

    def val_dataloader(self):
        return DataLoader(self.val_batches, batch_size=None)  # already batched and masked
