"""Examples -> a batch: the wordpiece windows and pooling plan the encoder needs, plus the examples."""

from __future__ import annotations

import random
from collections.abc import Iterator

from torch.utils.data import Sampler
from transformers import PreTrainedTokenizerBase

from polyhead.data.schema import Example
from polyhead.tokens.alignment import Alignment, plan_alignment
from polyhead.tokens.wordpieces import special_tokens, wordpieces


class Collator:
    """Shared by training and the exported spaCy pipeline, so both see identical windows and pooling."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, window: int, stride: int, pooling: str):
        self.tokenizer, self.window, self.stride, self.pooling = tokenizer, window, stride, pooling
        self.special = special_tokens(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def align(self, texts: list[list[str]]) -> Alignment:
        pieces = wordpieces(self.tokenizer, texts)
        return plan_alignment(pieces, self.window, self.stride, self.pooling, self.special, self.pad_id)

    def __call__(self, examples: list[Example]) -> dict:
        return {"alignment": self.align([ex.words for ex in examples]), "examples": examples}


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length texts: sort within pools of `pool` batches, then shuffle batches.

    Corpus order pads short sentences up to long ones; grouping cuts padding to a few percent while
    keeping batches random from epoch to epoch (Lightning calls set_epoch; the epoch is mixed into the seed).

    Under DDP (`num_replicas` > 1) every process draws the same order and keeps every num_replicas-th
    example from `rank` on. Training pads the order by repeating its start, so all processes take the same
    number of steps; evaluation does not, so no example is counted twice in the reduced metrics.
    """

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        pool: int = 50,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        self.lengths, self.batch_size, self.seed, self.shuffle, self.pool = (
            lengths,
            batch_size,
            seed,
            shuffle,
            pool,
        )
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shard(self, order: list[int]) -> list[int]:
        if self.num_replicas == 1:
            return order
        if self.shuffle:
            order = order + order[: -len(order) % self.num_replicas]
        return order[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        n = len(self._shard(list(range(len(self.lengths)))))
        return (n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        order = self._shard(order)
        if self.pool:  # evaluation (no shuffle) sorts the whole split
            size = self.batch_size * self.pool if self.shuffle else len(order)
            key = self.lengths.__getitem__
            order = [
                i
                for s in range(0, len(order), size)
                for i in sorted(order[s : s + size], key=key, reverse=True)
            ]
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        return iter(batches)
