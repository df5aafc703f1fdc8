"""The shared transformer: loading (hub name, local path or the embedded MiniLM) and word vectors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from polyhead.errors import UserError
from polyhead.tokens.alignment import Alignment, Windowing, pool_windows, pool_words
from polyhead.tokens.wordpieces import resolve_encoder

# Attention kinds the installed torch and transformers run as they are (None: transformers' default, sdpa).
# transformers fetches code from the hub for others: a "kernels-community/..." name, and flash_attention_*
# where the flash-attn package is missing and `kernels` is installed; a config or pipeline file may not.
ATTN_IMPLEMENTATIONS = (None, "eager", "sdpa")


@dataclass
class EncoderOutput:
    words: torch.Tensor  # (B, W, H) word vectors
    word_mask: torch.Tensor  # (B, W) True for real words
    cls: torch.Tensor  # (B, H) first-token vector averaged over each text's windows
    texts: list[list[str]] | None = None  # the words as written, for heads that read forms (models.surface)


class ScalarMix(nn.Module):
    """Learned softmax-weighted sum of all hidden layers times a scale (ELMo / Peters et al. 2018)."""

    def __init__(self, n_layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(n_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, layers: tuple[torch.Tensor, ...]) -> torch.Tensor:  # L x (N, T, H) -> (N, T, H)
        w = torch.softmax(self.weights, dim=0)
        return self.gamma * sum(wi * h for wi, h in zip(w, layers))

    def mix_stacked(self, stacked: torch.Tensor) -> torch.Tensor:  # (..., L, H) -> (..., H)
        w = torch.softmax(self.weights, dim=0).to(stacked.dtype)
        return self.gamma.to(stacked.dtype) * torch.einsum("...lh,l->...h", stacked, w)


MIX_MODES = (False, True, "per_task")


class Encoder(nn.Module):
    """Runs the transformer once over a batch's windows and returns word vectors for every head.

    `scalar_mix`: false reads the last layer; true one learned mix of all layers for every head; `per_task`
    one mix per task in `tasks` (UDify / MaChAmp), each head reading the layers it likes from the same pass.
    Per task, the layers are pooled to words once, side by side, and each task's mix is taken after pooling
    (pooling is linear, so this equals mixing first), in `task_views`."""

    def __init__(
        self,
        name: str,
        pooling: str = "first",
        window: int = 256,
        stride: int = 192,
        scalar_mix: bool | str = False,
        attn_implementation: str | None = "eager",
        dropout: float | None = None,
        freeze_word_embeddings: bool = False,
        keep_layers: list[int] | None = None,
        tasks: list[str] | None = None,
    ):
        super().__init__()
        if attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise UserError(
                f"encoder.attn_implementation={attn_implementation!r}: must be eager, sdpa or null "
                f"(transformers' default); any other value may fetch attention kernels from the hub"
            )
        if scalar_mix not in MIX_MODES:
            raise ValueError(f"encoder.scalar_mix must be false, true or per_task, got {scalar_mix!r}")
        if scalar_mix == "per_task" and not tasks:
            raise ValueError("encoder.scalar_mix=per_task needs the model's tasks")
        path = resolve_encoder(name)
        self.name, self.windowing = name, Windowing(window, stride, pooling)
        config = AutoConfig.from_pretrained(path)
        if dropout is not None:  # every dropout rate of the transformer (hidden, attention, ...)
            for key in [k for k, v in config.to_dict().items() if "dropout" in k and isinstance(v, float)]:
                setattr(config, key, dropout)
        self.model = AutoModel.from_pretrained(path, config=config, attn_implementation=attn_implementation)
        limit = self.model.config.max_position_embeddings - 2
        if window > limit:
            raise ValueError(f"encoder.window={window} exceeds what {name} supports ({limit} wordpieces)")
        if keep_layers is not None:  # a distilled student: the listed layers of the pretrained stack
            keep_transformer_layers(self.model, list(keep_layers))
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps submodule modes as found
        n_states = self.model.config.num_hidden_layers + 1  # the embeddings and every layer
        self.mix = ScalarMix(n_states) if scalar_mix is True else None
        per_task = scalar_mix == "per_task"
        self.task_mixes = nn.ModuleDict({t: ScalarMix(n_states) for t in tasks or []} if per_task else {})
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

    @property
    def scalar_mix(self) -> bool | str:
        return "per_task" if len(self.task_mixes) else self.mix is not None

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Wordpiece vectors of every window: the last layer, the scalar mix of all layers, or with per-task
        mixes every layer side by side.  # (N, T) -> (N, T, H), or (N, T, (L + 1) * H) per task"""
        all_states = self.mix is not None or len(self.task_mixes) > 0
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=all_states)
        if self.mix is not None:
            return self.mix(out.hidden_states)
        return torch.cat(out.hidden_states, -1) if len(self.task_mixes) else out.last_hidden_state

    def forward(self, alignment: Alignment) -> EncoderOutput:
        """The shared output: what every head reads, or with per-task mixes every layer's word vectors."""
        return word_outputs(self.hidden(alignment.input_ids, alignment.attention_mask), alignment)

    def task_views(self, shared: EncoderOutput, tasks) -> dict[str, EncoderOutput]:
        """What each task's head reads of the shared output: the same object, or its own mix of the layers."""
        if not len(self.task_mixes):
            return {task: shared for task in tasks}
        size = self.hidden_size
        words = shared.words.unflatten(-1, (-1, size))  # (B, W, (L + 1) * H) -> (B, W, L + 1, H)
        cls = shared.cls.unflatten(-1, (-1, size))
        return {
            task: EncoderOutput(
                self.task_mixes[task].mix_stacked(words),
                shared.word_mask,
                self.task_mixes[task].mix_stacked(cls),
                shared.texts,
            )
            for task in tasks
        }


def layer_stack(model: nn.Module) -> nn.ModuleList:
    """The transformer's list of layers: the ModuleList as long as config.num_hidden_layers (BERT's
    encoder.layer, DistilBERT's transformer.layer, GPT-2's h, ...)."""
    n = model.config.num_hidden_layers
    stacks = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    if not stacks:
        raise ValueError(f"{type(model).__name__}: found no list of {n} layers to cut")
    return stacks[0]


def check_keep_layers(keep: list[int], num_layers: int, where: str = "student.keep") -> None:
    """`keep` must name distinct layers of a `num_layers` stack, bottom to top."""
    bad = [i for i in keep if not isinstance(i, int) or not 0 <= i < num_layers]
    if not keep or bad:
        why = f"got {bad or 'none'}"
        raise ValueError(f"{where}={keep}: layers must be integers in 0..{num_layers - 1}, {why}")
    if len(set(keep)) != len(keep):
        raise ValueError(f"{where}={keep}: a layer is listed twice")
    if keep != sorted(keep):
        raise ValueError(f"{where}={keep}: list the layers bottom to top (increasing)")


def keep_transformer_layers(model: nn.Module, keep: list[int]) -> None:
    """Cut the layer stack to the `keep` layers in place; the saved config then says len(keep) layers, so
    the cut model reloads with from_pretrained as it is."""
    stack = layer_stack(model)
    check_keep_layers(keep, len(stack), "encoder.keep_layers")
    kept = [stack[i] for i in keep]
    for i, layer in enumerate(kept):  # attention modules that index a cache by layer number
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
    del stack[:]  # the same container, renumbered: parameter names stay those of a len(keep)-layer model
    stack.extend(kept)
    model.config.num_hidden_layers = len(keep)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[i] for i in keep]


def word_outputs(hidden: torch.Tensor, alignment: Alignment) -> EncoderOutput:
    """Window wordpiece vectors (N, T, H) -> the word vectors and text vectors every head reads."""
    return EncoderOutput(
        words=pool_words(hidden, alignment),
        word_mask=alignment.word_mask,
        cls=pool_windows(hidden[:, 0], alignment),
    )
