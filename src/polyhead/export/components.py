"""spaCy components that replay training's data path: one encoder pass per batch of Docs, then the heads.

`polyhead_encoder` turns each Doc's non-whitespace tokens into word vectors with the same Collator,
Encoder and pooling code as training and stores them in `doc._.polyhead`; `polyhead_head`, one factory for
every registered head kind, reads those vectors, runs its head and lets the head set its annotations and
score them. `polyhead_tagger`, `polyhead_ner` and `polyhead_textcat`, the names pipelines exported before
the generic factory carry, build the same component. The factories themselves are in
`polyhead.export.factories`, which imports nothing but spaCy: spaCy imports it for every Language it builds.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import minibatch

from polyhead.data.collate import Collator
from polyhead.errors import UserError
from polyhead.export.quantize import ONNX_INT8, TORCH_INT8, quantize_head
from polyhead.export.runtimes import build_runtime
from polyhead.hardware import INFERENCE_PRECISIONS
from polyhead.models.encoder import ATTN_IMPLEMENTATIONS, Encoder, EncoderOutput
from polyhead.models.heads.registry import HEADS, head_key, lookup_head
from polyhead.tokens.wordpieces import load_tokenizer

# What encoder.json may hold: what to_disk writes, and an attention kind of ATTN_IMPLEMENTATIONS.
ENCODER_SETTINGS = ("pooling", "window", "stride", "scalar_mix", "tasks", "attn_implementation")

if not Doc.has_extension("polyhead"):
    # {"words": (n_words, H), "index": token ids, "cls": (H,), "precision": what the encoder ran as}; with
    # per-task layer mixes, instead of words and cls, "tasks": {task: {"words", "cls"}}: each head's own
    # view of the one encoder pass
    Doc.set_extension("polyhead", default=None)


def _check_dir(path: Path, files: list[str]) -> None:
    missing = [f for f in files if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: pipeline is incomplete, missing {missing}; export it again")


class BatchedComponent:
    """spaCy's call protocol on top of `annotate(docs)`: one Doc, or a stream in batches."""

    batch_size = 128

    def annotate(self, docs: list[Doc]) -> None:
        raise NotImplementedError

    def __call__(self, doc: Doc) -> Doc:
        self.annotate([doc])
        return doc

    def pipe(self, docs, batch_size: int | None = None):
        for batch in minibatch(docs, size=batch_size or self.batch_size):
            self.annotate(batch)
            yield from batch


class PolyheadEncoder(BatchedComponent):
    """Runs the shared transformer once per batch of Docs, in length-sorted sub-batches to limit padding.

    `precision` is how the encoder runs on the machine that loads the pipeline (the saved weights stay fp32):
    auto (the default: bf16 where the CPU computes bf16 natively, int8-keep on other x86 CPUs, else torch
    fp32; `polyhead.export.runtimes.resolve_precision`), fp32, bf16 (a bf16 copy of the weights), int8
    (dynamic quantization of the Linear layers), onnx / onnx-int8 (ONNX Runtime), and the int8 variants of
    polyhead.hardware.INFERENCE_PRECISIONS. See `polyhead.export.runtimes`; `resolved_precision` says what
    ran."""

    def __init__(self, nlp: Language, name: str, batch_size: int = 64, precision: str = "auto"):
        if precision not in INFERENCE_PRECISIONS:
            raise ValueError(f"encoder precision must be one of {INFERENCE_PRECISIONS}, got {precision!r}")
        self.name, self.batch_size, self.precision = name, batch_size, precision
        self.resolved_precision: str | None = None
        self.encoder: Encoder | None = None
        self.collate: Collator | None = None

    def set_model(self, encoder: Encoder, collate: Collator) -> None:
        self.encoder, self.collate, self._runtime = encoder.eval(), collate, None

    def runtime(self):
        """The encoder that runs, built on first use in the precision resolved for this machine."""
        if self._runtime is None:
            self._runtime, self.resolved_precision = build_runtime(self.encoder, self.precision)
        return self._runtime

    @torch.inference_mode()
    def annotate(self, docs: list[Doc]) -> None:
        """Word vectors for every Doc: all wordpieces in one tokenizer call, then `sub_batches` of Docs with
        similar wordpiece counts (the encoder's cost is its padded length, not the word count)."""
        index = [[t.i for t in doc if not t.is_space] for doc in docs]  # whitespace tokens get no vector
        pieces = self.collate.pieces([[doc[j].text for j in idx] for doc, idx in zip(docs, index)])
        for chunk in sub_batches([self.collate.row_length(p) for p in pieces], self.batch_size):
            out = self.runtime()(self.collate.plan([pieces[i] for i in chunk]))
            precision = self.resolved_precision
            views = self.encoder.task_views(out, self.encoder.task_mixes.keys())
            for row, i in enumerate(chunk):
                n = len(index[i])
                if views:  # per-task layer mixes: each head's own vectors, not the stacked layers
                    vectors = {t: {"words": v.words[row, :n], "cls": v.cls[row]} for t, v in views.items()}
                    docs[i]._.polyhead = {"index": index[i], "tasks": vectors, "precision": precision}
                else:
                    docs[i]._.polyhead = {
                        "index": index[i],
                        "words": out.words[row, :n],
                        "cls": out.cls[row],
                        "precision": precision,
                    }

    def to_disk(self, path, exclude=()) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder.model.save_pretrained(path / "model")  # safetensors
        self.collate.tokenizer.save_pretrained(path / "model")
        w = self.encoder.windowing  # encoder.json's keys as before the settings were one object
        settings = {
            "pooling": w.pooling,
            "window": w.window,
            "stride": w.stride,
            "scalar_mix": self.encoder.scalar_mix,
        }
        settings["tasks"] = list(self.encoder.task_mixes.keys()) or None
        (path / "encoder.json").write_text(json.dumps(settings, indent=2))
        mixes = {k: v.contiguous() for k, v in self.encoder.state_dict().items() if "mix" in k.split(".")[0]}
        if mixes:  # the learned layer mixes: not part of the transformer's own weights
            from safetensors.torch import save_file

            save_file(mixes, str(path / "mixes.safetensors"))

    def from_disk(self, path, exclude=()) -> PolyheadEncoder:
        path = Path(path)
        _check_dir(path, ["encoder.json", "model/config.json", "model/model.safetensors"])
        settings = read_encoder_settings(path / "encoder.json")
        try:
            encoder = Encoder(str(path / "model"), **settings)
            if encoder.scalar_mix:
                from safetensors.torch import load_file

                encoder.load_state_dict(load_file(str(path / "mixes.safetensors")), strict=False)
        except Exception as err:
            raise OSError(f"{path / 'model'}: could not load the encoder weights ({err})") from err
        self.set_model(encoder, Collator(load_tokenizer(str(path / "model")), encoder.windowing))
        return self


# A sub-batch's longest row at most this many times its shortest. Smaller spreads pad less but make more,
# smaller transformer calls, whose cost differs between CPUs and precisions: on the one CPU timed (AMD EPYC,
# AVX-512 + AVX512-BF16) spreads 1.25, 1.5 and 2 ran within 14% of each other, fp32 a little faster at the
# smaller ones and bf16 at 2; 1.5 sits between. Not measured elsewhere.
SPREAD = 1.5


def sub_batches(lengths: list[int], size: int, spread: float = SPREAD) -> list[list[int]]:
    """Indices of texts in order of padded row length, cut into sub-batches of at most `size` texts whose
    longest row is at most `spread` times their shortest. Cutting at a fixed count alone pads a batch's tail
    to its longest text: on the first 600 EWT test texts in `nlp.pipe` batches of 256 (AMD EPYC, AVX-512 +
    AVX512-BF16), 56% of the transformer's positions held a wordpiece with batches of 64, 83% cut this way:
    302 GFLOP instead of 455 (`bench/inference.py --profile`)."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if batches and len(batches[-1]) < size and lengths[i] <= spread * lengths[batches[-1][0]]:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def read_encoder_settings(file: Path) -> dict:
    """encoder.json's settings, only those `to_disk` writes: any other would reach transformers (an
    `attn_implementation` naming a hub kernel is code fetched and run at spacy.load)."""
    try:
        settings = json.loads(file.read_text())
    except ValueError as err:
        raise PipelineError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(settings, dict):
        raise PipelineError(f"{file}: must be an object of the encoder's settings")
    unknown = sorted(set(settings) - set(ENCODER_SETTINGS))
    if unknown:
        raise PipelineError(
            f"{file}: {unknown[0]!r} is not a setting a pipeline may give ({ENCODER_SETTINGS})"
        )
    attn = settings.get("attn_implementation")
    if attn not in ATTN_IMPLEMENTATIONS:
        allowed = [a for a in ATTN_IMPLEMENTATIONS if a]
        raise PipelineError(f"{file}: attn_implementation={attn!r} is not one of {allowed}; refusing to load")
    return settings


def batch_vectors(docs: list[Doc], states: list[dict], task: str, forms: bool = False) -> EncoderOutput:
    """Re-pad the vectors the encoder component stored on `docs` (their `doc._.polyhead`, as `states`:
    `task`'s own, with per-task layer mixes; in the dtype its runtime gave) into the (B, W, H) batch the
    heads expect; `forms`: with the words as written."""
    states = [{**s, **s["tasks"][task]} if "tasks" in s else s for s in states]
    words = torch.nn.utils.rnn.pad_sequence([s["words"] for s in states], batch_first=True)  # one C++ copy
    if not words.shape[1]:  # texts without words: one padding position, as every batch has
        words = words.new_zeros(len(states), 1, words.shape[-1])
    lengths = torch.tensor([len(s["index"]) for s in states])
    mask = torch.arange(words.shape[1]) < lengths.unsqueeze(1)
    texts = [[doc[j].text for j in s["index"]] for doc, s in zip(docs, states)] if forms else None
    return EncoderOutput(words, mask, torch.stack([s["cls"] for s in states]), texts)


class PipelineError(UserError, OSError):
    """A pipeline directory that cannot be loaded as it is: unreadable weights, or a head it may not name."""


class PolyheadHead(BatchedComponent):
    """One trained head of any registered kind, which sets its annotations and scores them (its spaCy side:
    polyhead.models.heads.registry.Head); `options` override the head's spacy_options (the tagger's attr);
    `int8`: beside an int8 encoder, run the head's int8 copy where its kind has one (`runtime`)."""

    # Docs per head pass, of similar lengths: on a 2-core AVX2 EPYC (600 EWT test texts, int8-keep encoder)
    # the parser took 0.31 / 0.26 / 0.23 / 0.25 s at 16 / 32 / 64 / 128, the tagger and NER alike or less
    sub_batch = 64

    def __init__(self, nlp: Language, name: str, options: dict | None = None, int8: bool = True):
        self.name, self.options, self.int8 = name, dict(options or {}), int8
        self.head: torch.nn.Module | None = None

    def set_model(self, head: torch.nn.Module) -> None:
        self.head, self._int8 = head.eval(), None

    def runtime(self, precision: str | None) -> torch.nn.Module:
        """The head that runs beside an encoder that ran as `precision`: an int8 copy beside an int8 encoder
        (`quantize_head`, built on first use) unless `int8` is off, else the head itself (in bf16 autocast
        beside bf16)."""
        if not self.int8 or precision not in TORCH_INT8 + ONNX_INT8:
            return self.head
        if self._int8 is None:
            self._int8 = quantize_head(self.head)
        return self._int8

    @property
    def settings(self) -> dict:
        return {**self.head.spacy_options, **self.options}

    @torch.inference_mode()
    def annotate(self, docs: list[Doc]) -> None:
        """The head over length-sorted sub-batches (a head's cost follows the padded width: the parser's
        arc scores grow with its square), each Doc's prediction set on it."""
        settings, states = self.settings, [doc._.polyhead for doc in docs]
        if any(s is None for s in states):
            raise ValueError("polyhead heads need the 'encoder' component to run first")
        order = sorted(range(len(docs)), key=lambda i: len(docs[i]))
        for chunk in minibatch(order, size=self.sub_batch):
            part = [docs[i] for i in chunk]
            enc = batch_vectors(part, [states[i] for i in chunk], self.name, self.head.reads_forms)
            # the head's products in the encoder's precision (bf16 where `auto` chose it, int8 beside int8)
            head = self.runtime(states[chunk[0]].get("precision"))
            with torch.autocast("cpu", torch.bfloat16, enabled=enc.words.dtype == torch.bfloat16):
                predictions = head.decode(head(enc), enc.word_mask)
            for i, pred in zip(chunk, predictions):
                self.head.set_annotations(docs[i], pred, states[i]["index"], settings)

    def score(self, examples, **kwargs) -> dict:
        """What `spacy evaluate` reports: tag accuracy, entity P/R/F, category scores, UAS/LAS..."""
        return self.head.score(examples, self.settings, **kwargs)

    def confusion_pairs(self, examples) -> list[tuple[str, str]] | None:
        """(gold, predicted) labels for a confusion plot, or None where the head has no such view."""
        return self.head.confusion_pairs(examples, self.settings)

    def to_disk(self, path, exclude=()) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        spec = {"head": head_key(self.head), "config": self.head.config}  # a registered key, not code
        (path / "head.json").write_text(json.dumps(spec, indent=2))
        save_file(
            {k: v.contiguous() for k, v in self.head.state_dict().items()}, str(path / "head.safetensors")
        )

    def from_disk(self, path, exclude=()) -> PolyheadHead:
        from safetensors.torch import load_file

        path = Path(path)
        _check_dir(path, ["head.json", "head.safetensors"])
        head = read_head_spec(path / "head.json")
        try:
            head.load_state_dict(load_file(str(path / "head.safetensors")))
        except Exception as err:
            file = path / "head.safetensors"
            raise PipelineError(f"{file}: could not load the head weights ({err})") from err
        self.set_model(head)
        return self


def read_head_spec(file: Path) -> torch.nn.Module:
    """The head head.json describes, built from a registered class only (polyhead.models.heads.registry):
    a file naming any other class or module is refused, and what it names is never imported."""
    try:
        spec = json.loads(file.read_text())
    except ValueError as err:
        raise PipelineError(f"{file}: not valid JSON ({err})") from None
    cls = lookup_head(spec) if isinstance(spec, dict) else None
    if cls is None:
        named = spec.get("head", spec.get("class")) if isinstance(spec, dict) else spec
        raise PipelineError(
            f"{file}: names the head {named!r}, which is not a registered polyhead head "
            f"({', '.join(sorted(HEADS))}); refusing to load it (a pipeline never names code to run)"
        )
    if not isinstance(spec.get("config"), dict):
        raise PipelineError(f"{file}: 'config' must be an object of the head's settings")
    try:
        return cls(**cls.saved(spec["config"]))
    except (TypeError, ValueError) as err:
        raise PipelineError(f"{file}: the head's config does not fit {cls.__name__} ({err})") from err
