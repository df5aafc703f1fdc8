"""What the word vectors lack: the written form's shape and last letters, as small learned embeddings.

An uncased encoder (MiniLM, BERT-base-uncased) sees "Space" and "space" as one wordpiece, and with
first-piece pooling a head sees only a word's first piece ("nomin" of "nominated"). A lemma depends on
both: "Space" in "Space Needle" keeps its capital, "nominated" loses a "d" where "walked" loses "ed". A head
that takes `surface` (the tagger family: lemmatizer, morphologizer, tagger) adds, per word, an embedding of
its shape (lower, Title, UPPER, mixed, digits, other) and of its last 1-4 letters, hashed into `buckets`
rows (spaCy's MultiHashEmbed and UDPipe's character features, cut down to what a lemma needs). With
`word_shape`, also its written shape as spaCy's `token.shape_` spells it ("ddd,ddd" for "256,000", "Xxxxx"
for "Stevens", "xx'x" for "it's"), hashed into the same rows: the six classes call "256,000" and "2000" both
digits, where only the first loses its separators in its lemma.

The ids come from the words as strings (`EncoderOutput.texts`), the same in training and in the exported
pipeline; the hash is CRC-32, so a pipeline computes the ids its training did in any process.
"""

from __future__ import annotations

import functools
import zlib

import torch
from torch import nn

SHAPES = ("pad", "lower", "title", "upper", "mixed", "digit", "other")
SUFFIXES = (1, 2, 3, 4)  # letters at the end of the lower-cased form


def shape(word: str) -> int:
    """The index in SHAPES of how `word` is written."""
    if any(c.isdigit() for c in word):
        return SHAPES.index("digit")
    if not any(c.isalpha() for c in word):
        return SHAPES.index("other")
    if word.islower():
        return SHAPES.index("lower")
    if word.isupper():
        return SHAPES.index("upper") if len(word) > 1 else SHAPES.index("title")
    if word[:1].isupper() and word[1:].islower():
        return SHAPES.index("title")
    return SHAPES.index("mixed")


@functools.lru_cache(maxsize=1 << 17)  # asked again for every word of every batch, every epoch
def word_ids(word: str, buckets: int, with_shape: bool = False) -> tuple[int, ...]:
    """The word's shape class, then its suffix rows (and its written shape's): one row of SurfaceEmbedding's
    ids."""
    rows = suffix_ids(word, buckets)
    if with_shape:
        rows.append(zlib.crc32(f"shape:{word_shape(word)}".encode()) % buckets)
    return (shape(word), *rows)


def word_shape(word: str) -> str:
    """How the word is written, as spaCy's token.shape_: each letter X or x by its case, each digit d, any
    other character itself, a run of one kind cut at four ("XXXX" for "STEVENS")."""
    out, last, run = [], "", 0
    for char in word:
        kind = ("X" if char.isupper() else "x") if char.isalpha() else "d" if char.isdigit() else char
        run = run + 1 if kind == last else 0
        last = kind
        if run < 4:
            out.append(kind)
    return "".join(out)


def suffix_ids(word: str, buckets: int) -> list[int]:
    """The hashed rows of the word's last 1..4 lower-cased letters (a short word repeats its whole form)."""
    low = word.lower()
    return [zlib.crc32(f"{n}:{low[-n:]}".encode()) % buckets for n in SUFFIXES]


class SurfaceEmbedding(nn.Module):
    """Per word: shape embedding + the sum of its suffix embeddings (and its written shape's, `word_shape`),
    `size` wide."""

    def __init__(self, size: int = 64, buckets: int = 1 << 14, word_shape: bool = False):
        super().__init__()
        self.size, self.buckets, self.word_shape = size, buckets, word_shape
        self.shapes = nn.Embedding(len(SHAPES), size)
        self.suffixes = nn.Embedding(buckets, size)

    def forward(self, texts: list[list[str]] | None, width: int) -> torch.Tensor:  # -> (B, W, size)
        if texts is None:
            raise ValueError("this head reads the words' forms: call the model with the texts")
        ids = torch.zeros(len(texts), width, 1 + len(SUFFIXES) + self.word_shape, dtype=torch.long)
        for i, words in enumerate(texts):
            if words:
                rows = [word_ids(w, self.buckets, self.word_shape) for w in words[:width]]
                ids[i, : len(words)] = torch.tensor(rows)
        ids = ids.to(self.shapes.weight.device)
        return self.shapes(ids[..., 0]) + self.suffixes(ids[..., 1:]).sum(-2)
