"""The plain Hugging Face way, for side-by-side ratios: one model per head, each running its own encoder.

Inference: AutoModelForTokenClassification (tagger, NER) and AutoModelForSequenceClassification (textcat)
built from the same encoder weights, each tokenising the words itself, in length-sorted batches, with the
first wordpiece's label per word (what the token-classification examples do). Training: a Trainer-style loop
(AdamW, linear decay, padding to the batch's longest, shuffled batches, fp32 unless told) over one
token-classification model. Heads are untrained here: these runs measure speed, not accuracy.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch


def first_piece_labels(pred: torch.Tensor, word_ids: list[int | None]) -> list[int]:
    labels, seen = [], set()
    for position, word in enumerate(word_ids):
        if word is not None and word not in seen:
            seen.add(word)
            labels.append(int(pred[position]))
    return labels


def hf_models(encoder_dir: str, heads: dict[str, tuple[str, int]], dtype: torch.dtype = torch.float32):
    """name -> (kind, model) for name -> (kind, number of labels): a token ("token") or sequence
    ("sequence") classifier over the same encoder weights."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    classes = {"token": AutoModelForTokenClassification, "sequence": AutoModelForSequenceClassification}
    return {
        name: (kind, classes[kind].from_pretrained(encoder_dir, num_labels=n_labels).eval().to(dtype))
        for name, (kind, n_labels) in heads.items()
    }


@torch.inference_mode()
def hf_annotate(tokenizer, models: dict, texts: list[list[str]], batch_size: int = 64, stage=None) -> float:
    """Run every model over every text, each model on its own, as separate HF pipelines would. Seconds.
    `stage(name)`, a context manager, times the tokenizer, the model and the decoding (bench/stages.py)."""
    stage = stage or (lambda name: nullcontext())
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    start = time.perf_counter()
    for kind, model in models.values():
        for b in range(0, len(order), batch_size):
            words = [texts[i] for i in order[b : b + batch_size]]
            with stage("HF tokenizer"):
                enc = tokenizer(
                    words, is_split_into_words=True, truncation=True, padding=True, return_tensors="pt"
                )
            with stage("model"):
                logits = model(**enc).logits
            with stage("decode"):
                if kind == "token":
                    pred = logits.argmax(-1)
                    [first_piece_labels(pred[i], enc.word_ids(i)) for i in range(len(words))]
                else:
                    logits.softmax(-1).tolist()
    return time.perf_counter() - start


def hf_train(
    encoder_dir: str,
    texts: list[list[str]],
    tags: list[list[int]],
    n_labels: int,
    steps: int,
    batch_size: int = 32,
    lr: float = 5e-5,
    dtype: str = "32-true",
    seed: int = 42,
) -> dict:
    """Trainer-style fine-tuning of one token classifier for `steps` optimiser steps: words/s and seconds."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer, get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    model = AutoModelForTokenClassification.from_pretrained(encoder_dir, num_labels=n_labels).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, 0, steps)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(texts), generator=generator).tolist()
    words = 0
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16-mixed")
    start = time.perf_counter()  # like WordThroughput: wall time incl. tokenising, as a dataloader would
    for step in range(steps):
        idx = [order[(step * batch_size + k) % len(order)] for k in range(batch_size)]
        batch = [texts[i] for i in idx]
        enc = tokenizer(batch, is_split_into_words=True, truncation=True, padding=True, return_tensors="pt")
        labels = torch.full(enc["input_ids"].shape, -100)
        for row, i in enumerate(idx):
            seen = set()
            for position, word in enumerate(enc.word_ids(row)):
                if word is not None and word not in seen:
                    seen.add(word)
                    labels[row, position] = tags[i][word]
        with autocast:
            loss = model(**enc, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        words += sum(len(t) for t in batch)
    seconds = time.perf_counter() - start
    return {"words_per_sec": words / seconds, "words": words, "train_seconds": seconds}
