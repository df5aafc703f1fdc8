"""Examples -> a batch: the wordpiece windows and pooling plan the encoder needs, plus the examples."""

from __future__ import annotations

import random
from collections.abc import Iterator

from torch.utils.data import Sampler
from transformers import PreTrainedTokenizerBase

from polyhead.data.schema import Example
from polyhead.tokens.alignment import Alignment, Windowing, plan_alignment
from polyhead.tokens.wordpieces import special_tokens, wordpieces


class Collator:
    """Shared by training and the exported spaCy pipeline, so both see identical windows and pooling: the
    encoder's `windowing`."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, windowing: Windowing):
        self.tokenizer, self.windowing = tokenizer, windowing
        self.special = special_tokens(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def align(self, texts: list[list[str]]) -> Alignment:
        return self.plan(self.pieces(texts))

    def pieces(self, texts: list[list[str]]) -> list[list[list[int]]]:
        """Each word's wordpiece ids, per text (one tokenizer call for all)."""
        return wordpieces(self.tokenizer, texts)

    def row_length(self, pieces: list[list[int]]) -> int:
        """The longest window row a text of these words' wordpieces needs, special tokens included."""
        return min(sum(map(len, pieces)), self.windowing.window) + sum(map(len, self.special))

    def plan(self, pieces: list[list[list[int]]]) -> Alignment:
        """The windows and pooling plan of texts already cut into wordpieces."""
        w = self.windowing
        return plan_alignment(pieces, w.window, w.stride, w.pooling, self.special, self.pad_id)

    def __call__(self, examples: list[Example]) -> dict:
        return {"alignment": self.align([ex.words for ex in examples]), "examples": examples}


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length texts: sort within pools of `pool` batches, then shuffle batches.

    Corpus order pads short sentences up to long ones; grouping cuts padding to a few percent while
    keeping batches random from epoch to epoch (Lightning calls set_epoch; the epoch is mixed into the seed).

    Under DDP (`num_replicas` > 1) every process draws the same order and keeps every num_replicas-th
    example from `rank` on. Training pads the order by repeating its start, so all processes take the same
    number of steps; evaluation does not, so no example is counted twice in the reduced metrics.

    `corpora` (each example's corpus) with `alpha` != 1 redraws each epoch's examples per corpus
    (`corpus_sample`): the epoch keeps its length, the corpora their share n_i ** alpha.
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
        corpora: list[int] | None = None,
        alpha: float = 1.0,
    ):
        self.lengths, self.batch_size, self.seed, self.shuffle, self.pool = (
            lengths,
            batch_size,
            seed,
            shuffle,
            pool,
        )
        self.num_replicas, self.rank = num_replicas, rank
        self.corpora, self.alpha = corpora, float(alpha)
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
        if self.shuffle and self.corpora is not None and self.alpha != 1.0:
            order = corpus_sample(order, self.corpora, self.alpha, rng)
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


def corpus_shares(sizes: list[int], alpha: float) -> list[int]:
    """Examples per corpus in an epoch of sum(sizes): corpus i gets a share n_i ** alpha / sum_j n_j ** alpha
    (alpha 1: as read, 0: uniform over corpora, 0.5: MaChAmp's smoothing), rounded so the shares add up."""
    total, weights = sum(sizes), [n**alpha if n else 0.0 for n in sizes]
    exact = [total * w / sum(weights) for w in weights]
    shares = [int(x) for x in exact]
    for i in sorted(range(len(sizes)), key=lambda i: shares[i] - exact[i])[: total - sum(shares)]:
        shares[i] += 1  # largest remainders first
    return shares


def corpus_sample(order: list[int], corpora: list[int], alpha: float, rng: random.Random) -> list[int]:
    """`order` (shuffled indices) redrawn to each corpus's share: a corpus drawn less than its size gives its
    first examples in `order` (different ones each epoch), one drawn more repeats its shuffled examples."""
    by_corpus: dict[int, list[int]] = {}
    for i in order:
        by_corpus.setdefault(corpora[i], []).append(i)
    keys = sorted(by_corpus)
    out = []
    for key, share in zip(keys, corpus_shares([len(by_corpus[k]) for k in keys], alpha)):
        pool = by_corpus[key]
        out += (pool * (share // len(pool) + 1))[:share]
    rng.shuffle(out)
    return out
