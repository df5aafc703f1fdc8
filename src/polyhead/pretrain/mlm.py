"""Masked-language-model training of the encoder: loading with an MLM head, the LightningModule, saving.

The saved directory is a plain encoder (AutoModel config + safetensors + tokenizer) that `train.py` loads
like any other; the MLM head sits beside it in mlm_head.safetensors so pretraining can continue from it."""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, PreTrainedModel

from polyhead.tokens.wordpieces import resolve_encoder
from polyhead.training.lit_module import MultitaskModule
from polyhead.training.optim import build_optimizer

HEAD_FILE = "mlm_head.safetensors"


def load_mlm(
    name: str, dropout: float | None = None, attn_implementation: str | None = "eager"
) -> PreTrainedModel:
    """The encoder with its MLM head: the saved head when there is one (a checkpoint or a directory this
    module wrote), else a freshly initialised one (sentence-transformers checkpoints ship none)."""
    path = resolve_encoder(name)
    config = AutoConfig.from_pretrained(path)
    if dropout is not None:
        for key in [k for k, v in config.to_dict().items() if "dropout" in k and isinstance(v, float)]:
            setattr(config, key, dropout)
    model = AutoModelForMaskedLM.from_pretrained(path, config=config, attn_implementation=attn_implementation)
    head = Path(path) / HEAD_FILE
    if head.is_file():
        unexpected = model.load_state_dict(load_file(head), strict=False).unexpected_keys
        if unexpected:
            raise ValueError(f"{head}: weights that fit no part of {type(model).__name__}: {unexpected[:5]}")
    model.train()
    return model


def head_state(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """Parameters outside the base transformer (the tied output matrix is the input embedding, not here)."""
    base = {id(p) for p in model.base_model.parameters()}
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if id(p) not in base}


def save_encoder(model: PreTrainedModel, tokenizer, source: str, directory: Path) -> Path:
    """The adapted base transformer as an AutoModel directory (parts the MLM model lacks, e.g. BERT's
    pooler, are kept from `source`), the tokenizer, and the MLM head in mlm_head.safetensors."""
    directory.mkdir(parents=True, exist_ok=True)
    encoder = AutoModel.from_pretrained(resolve_encoder(source))  # its own config: training dropout not saved
    if encoder.get_input_embeddings().weight.shape[0] != len(tokenizer):
        encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    result = encoder.load_state_dict(model.base_model.state_dict(), strict=False)
    if result.unexpected_keys:
        raise RuntimeError(f"the MLM model's encoder does not fit AutoModel: {result.unexpected_keys[:5]}")
    encoder.save_pretrained(directory)  # safetensors by default
    tokenizer.save_pretrained(directory)
    save_file(head_state(model), str(directory / HEAD_FILE))
    return directory


class _GroupView:
    """What optim.param_groups reads: the base transformer named encoder.model.*, the rest a head."""

    def __init__(self, model: PreTrainedModel):
        self.model = model
        self.encoder = SimpleNamespace(num_layers=model.config.num_hidden_layers)

    def named_parameters(self):
        prefix = self.model.base_model_prefix + "."
        for name, param in self.model.named_parameters():  # a tied weight comes once, as the embedding
            yield (
                ("encoder.model." + name.removeprefix(prefix) if name.startswith(prefix) else "head." + name),
                param,
            )


class MaskedLMModule(pl.LightningModule):
    """Continued MLM training; the output layer runs on the masked positions only (~15% of the pieces),
    which on CPU is most of the saving, since the vocabulary projection dominates a small encoder."""

    def __init__(self, model: PreTrainedModel, optim):
        super().__init__()
        self.model, self.optim_cfg = model, optim
        heads = [n for n, m in model.named_children() if m is not model.base_model]
        self.head_name = heads[0] if len(heads) == 1 else None  # else: the model's own forward and loss
        self._val = [0.0, 0]  # summed loss, masked pieces
        self._speed = [0, 0.0, 0.0]  # pieces, seconds, last batch end

    def mlm_loss(self, batch) -> tuple[torch.Tensor | None, int]:
        """Mean cross-entropy over the masked pieces of the batch and their number."""
        labels = batch["labels"]
        masked = labels != -100
        n = int(masked.sum())
        if n == 0:
            return None, 0
        if self.head_name is None:
            return self.model(**batch).loss, n
        hidden = self.model.base_model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state  # (B, T, H)
        logits = getattr(self.model, self.head_name)(hidden[masked])  # (M, H) -> (M, V)
        return F.cross_entropy(logits.float(), labels[masked]), n

    def training_step(self, batch, batch_idx):
        loss, n = self.mlm_loss(batch)
        if loss is None:
            return None  # nothing masked in this batch: skip the step
        size = len(batch["input_ids"])
        self.log("train/mlm_loss", loss, prog_bar=True, batch_size=size)
        self.log("train/perplexity", torch.exp(loss.detach()), batch_size=size)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, n = self.mlm_loss(batch)
        if loss is not None:
            self._val[0] += float(loss) * n
            self._val[1] += n

    def on_validation_epoch_start(self):
        self._val = [0.0, 0]

    def on_validation_epoch_end(self):
        if self._val[1]:
            loss = self._val[0] / self._val[1]  # per masked piece over the whole validation text
            self.log("val/mlm_loss", loss, prog_bar=True)
            self.log("val/perplexity", math.exp(min(loss, 50.0)))

    def on_train_epoch_start(self):
        self._speed = [0, 0.0, time.perf_counter()]

    def on_train_batch_end(self, outputs, batch, batch_idx):
        now = time.perf_counter()
        self._speed[0] += int(batch["attention_mask"].sum())
        self._speed[1] += now - self._speed[2]
        self._speed[2] = now

    def on_validation_end(self):
        self._speed[2] = time.perf_counter()  # validation time is not training time

    def on_train_epoch_end(self):
        if self._speed[1] > 0:
            self.log("train/pieces_per_sec", self._speed[0] / self._speed[1])

    # Same clipping (fused AdamW under bf16) and checkpoint run id as the multitask module.
    configure_gradient_clipping = MultitaskModule.configure_gradient_clipping
    on_save_checkpoint = MultitaskModule.on_save_checkpoint

    def configure_optimizers(self):
        optimizer, scheduler = build_optimizer(
            _GroupView(self.model), self.trainer.estimated_stepping_batches, self.optim_cfg
        )
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
