"""Domain words added to a tokenizer's vocabulary, each embedding initialised from its old wordpieces."""

from __future__ import annotations

from collections import Counter

import torch
from tokenizers import AddedToken
from transformers import PreTrainedModel, PreTrainedTokenizerBase


def normalize(tokenizer: PreTrainedTokenizerBase, text: str) -> str:
    """The text as the tokenizer sees it before splitting (lowercased, accents stripped for uncased BERT)."""
    normalizer = tokenizer.backend_tokenizer.normalizer
    return normalizer.normalize_str(text) if normalizer is not None else text


def frequent_split_words(
    tokenizer: PreTrainedTokenizerBase, docs: list[str], top_k: int, min_count: int = 20, min_pieces: int = 2
) -> list[str]:
    """The `top_k` most frequent alphabetic words of the documents that the tokenizer cuts into pieces."""
    if top_k <= 0:
        return []
    pre = tokenizer.backend_tokenizer.pre_tokenizer
    counts: Counter[str] = Counter()
    for doc in docs:
        text = normalize(tokenizer, doc)
        counts.update([w for w, _ in pre.pre_tokenize_str(text)] if pre is not None else text.split())
    words = []
    for word, count in counts.most_common():
        if count < min_count or len(words) >= top_k:
            break
        if word.isalpha() and len(tokenizer.tokenize(word)) >= min_pieces:
            words.append(word)
    return words


def add_domain_words(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, words: list[str]
) -> list[str]:
    """Add whole-word tokens for the `words` the tokenizer splits; each one's input embedding (and MLM output
    bias, if any) is the mean of its old pieces'. Returns the words added, in the tokenizer's normal form."""
    vocab = tokenizer.get_vocab()
    pieces: dict[str, list[int]] = {}
    for word in dict.fromkeys(normalize(tokenizer, w).strip() for w in words):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if word and word not in vocab and len(ids) > 1 and " " not in word:
            pieces[word] = ids
    if not pieces:
        return []
    # single_word: "bitcoin" matches the word bitcoin (also in "#bitcoin"), not the start of "bitcoins"
    tokenizer.add_tokens([AddedToken(w, single_word=True, normalized=True) for w in pieces])
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    embeddings = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    untied = output.weight if output is not None and output.weight is not embeddings else None
    bias = getattr(output, "bias", None) if output is not None else None
    with torch.no_grad():
        for word, ids in pieces.items():
            new = tokenizer.convert_tokens_to_ids(word)
            embeddings[new] = embeddings[ids].mean(0)
            if untied is not None:
                untied[new] = untied[ids].mean(0)
            if bias is not None and bias.shape[0] == len(tokenizer):
                bias[new] = bias[ids].mean()
    return list(pieces)
