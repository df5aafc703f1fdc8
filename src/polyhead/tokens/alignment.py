"""Wordpieces -> words: strided windows over long texts and pooling of pieces into word vectors.

The encoder sees wordpieces; the heads see words. A batch of B texts is cut into N windows of at most
`window` pieces each (plus the model's special tokens), stepping `stride` pieces at a time, so windows
overlap by `window - stride` pieces and no text is ever truncated. The transformer runs once over the
(N, T) window batch. Every piece occurrence that should feed a word is then described by two flat
indices: `piece_index` points into the (N * T) flattened hidden states, `word_index` into the
(B * W) flattened word grid (W = the longest text in words). Pooling is a single `index_add_` of the
selected hidden states into their words followed by a division by how many were added:

- "mean" selects every piece of a word, so a word vector is the mean of its pieces;
- "first" selects only the first piece of the word inside each window.

A word that falls into the overlap of two windows is selected once per window, so the same division
averages its vectors across windows. The plan is pure Python on token ids (built by the collator in
training and by the spaCy component at inference); `pool_words` is the only tensor code, so training
and export align words identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate, chain

import torch


@dataclass(frozen=True)
class Windowing:
    """How texts become windows and pieces become words: at most `window` pieces a window, a new window every
    `stride` pieces, `pooling` "first" or "mean". The encoder holds it (its encoder.json keeps these keys)
    and the collator that feeds the encoder windows with it, so training and export cut texts alike."""

    window: int = 256
    stride: int = 192
    pooling: str = "first"


@dataclass
class Alignment:
    """Index tensors that map windows of wordpieces back to the words of each text."""

    input_ids: torch.Tensor  # (N, T) wordpiece ids, one row per window, special tokens included
    attention_mask: torch.Tensor  # (N, T)
    piece_index: torch.Tensor  # (P,) flat index into N * T
    word_index: torch.Tensor  # (P,) flat index into B * W
    window_text: torch.Tensor  # (N,) which text each window belongs to
    word_mask: torch.Tensor  # (B, W) True for real words

    def to(self, device: torch.device | str) -> Alignment:
        return Alignment(**{k: v.to(device) for k, v in vars(self).items()})


def window_starts(n_pieces: int, window: int, stride: int) -> list[int]:
    """Starts of `window`-piece windows every `stride` pieces; the last one ends at the text end."""
    if n_pieces <= window:
        return [0]
    starts = list(range(0, n_pieces - window, stride))
    starts.append(n_pieces - window)
    return starts


def plan_alignment(
    pieces: list[list[list[int]]],
    window: int,
    stride: int,
    pooling: str,
    special: tuple[list[int], list[int]],
    pad_id: int,
) -> Alignment:
    """Build the window batch and pooling indices for B texts given as words -> wordpiece ids."""
    if pooling not in ("first", "mean"):
        raise ValueError(f"pooling must be 'first' or 'mean', got {pooling!r}")
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride={stride} window={window}")
    prefix, suffix = special
    n_words = max((len(words) for words in pieces), default=0)
    width = max(1, n_words)
    rows, window_text, piece_index, word_index = [], [], [], []
    row_len = len(prefix) + window + len(suffix)
    for text_i, words in enumerate(pieces):
        sizes = [len(word_pieces) for word_pieces in words]
        if sum(sizes) <= window:  # one window (most texts): no per-piece bookkeeping
            base = len(rows) * row_len + len(prefix)
            starts = list(accumulate(sizes, initial=0))
            if pooling == "first":
                piece_index += [base + start for start, size in zip(starts, sizes) if size]
                word_index += [text_i * width + w for w, size in enumerate(sizes) if size]
            else:
                piece_index += range(base, base + starts[-1])
                word_index += [text_i * width + w for w, size in enumerate(sizes) for _ in range(size)]
            rows.append(prefix + list(chain.from_iterable(words)) + suffix)
            window_text.append(text_i)
            continue
        flat = [(p, w) for w, word_pieces in enumerate(words) for p in word_pieces]
        for start in window_starts(len(flat), window, stride):
            chunk = flat[start : start + window]
            row = len(rows)
            seen = set()
            for offset, (_, w) in enumerate(chunk):
                if pooling == "first" and w in seen:
                    continue
                seen.add(w)
                piece_index.append(row * row_len + len(prefix) + offset)
                word_index.append(text_i * width + w)
            rows.append(prefix + [p for p, _ in chunk] + suffix)
            window_text.append(text_i)
    longest = max(len(r) for r in rows)
    input_ids = torch.tensor([r + [pad_id] * (longest - len(r)) for r in rows], dtype=torch.long)
    attention_mask = (torch.arange(longest) < torch.tensor([len(r) for r in rows]).unsqueeze(1)).long()
    # piece_index was computed against rows of width row_len; re-base it onto the padded width.
    piece = torch.tensor(piece_index, dtype=torch.long)
    piece = (piece // row_len) * longest + piece % row_len
    lengths = torch.tensor([len(words) for words in pieces])
    return Alignment(
        input_ids=input_ids,
        attention_mask=attention_mask,
        piece_index=piece,
        word_index=torch.tensor(word_index, dtype=torch.long),
        window_text=torch.tensor(window_text, dtype=torch.long),
        word_mask=torch.arange(width)[None, :] < lengths[:, None],
    )


def pool_words(hidden: torch.Tensor, alignment: Alignment) -> torch.Tensor:
    """Average the selected piece vectors into word vectors.  # (N, T, H) -> (B, W, H)"""
    batch, width = alignment.word_mask.shape
    flat = hidden.reshape(-1, hidden.shape[-1])
    out = flat.new_zeros(batch * width, flat.shape[-1])
    out.index_add_(0, alignment.word_index, flat[alignment.piece_index])
    count = flat.new_zeros(batch * width).index_add_(
        0, alignment.word_index, flat.new_ones(len(alignment.word_index))
    )
    return (out / count.clamp(min=1).unsqueeze(-1)).view(batch, width, -1)


def pool_windows(vectors: torch.Tensor, alignment: Alignment) -> torch.Tensor:
    """Average per-window vectors (e.g. each window's first token) per text.  # (N, H) -> (B, H)"""
    batch = alignment.word_mask.shape[0]
    out = vectors.new_zeros(batch, vectors.shape[-1]).index_add_(0, alignment.window_text, vectors)
    count = vectors.new_zeros(batch).index_add_(0, alignment.window_text, vectors.new_ones(len(vectors)))
    return out / count.clamp(min=1).unsqueeze(-1)
