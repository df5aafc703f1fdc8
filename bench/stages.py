"""Where a pipeline's time goes (`bench/inference.py --profile`): stage timers wrapped around the benchmark's
own objects, the encoder's FLOPs from the shapes it was given, and the matmul peak of this very process.

Nothing in the library changes: `Stages` replaces a method or module-level function with a timed call for
the length of one profiled pass and puts the original back afterwards, and `TransformerProbe` times the
transformer with forward hooks (torch) or by wrapping the ONNX session's `run`. Stages nest: a component's
time includes its parts, and each `rest` row is what its parts leave over, so the rows of a table add up to
the pass. The encoder's FLOPs are counted on the padded (windows, pieces) shapes it actually ran, so padding
shows as work done; `real/padded` is the share of those positions that held a wordpiece.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch

MATMUL_SIZE = 1024  # the issue's reference: a 1,024² matmul in torch, all of this process's threads
ENCODER_PARTS = ["wordpieces", "windows", "transformer", "pooling"]
HEAD_PARTS = {"forward": "forward", "decode": "decode", "set_annotations": "Doc writing"}  # attr: row


class Stages:
    """Inclusive seconds per stage name, and the patches that feed them (undone on exit)."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._undo: list = []

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def wrap(self, owner, attr: str, name: str) -> None:
        """Time every call of `owner.attr` (a bound method or a module's function) under `name`."""
        original = getattr(owner, attr)
        had_own = attr in vars(owner)  # a module global or instance attribute, not a class's method

        def timed(*args, **kwargs):
            with self(name):
                return original(*args, **kwargs)

        setattr(owner, attr, timed)
        self._undo.append(lambda: setattr(owner, attr, original) if had_own else delattr(owner, attr))

    def on_exit(self, undo) -> None:
        self._undo.append(undo)

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, *exc) -> None:
        while self._undo:
            self._undo.pop()()


class TransformerProbe:
    """Seconds in the transformer's forward, and the (windows, pieces) and real pieces of every call."""

    def __init__(self, stages: Stages, name: str):
        self.stages, self.name = stages, name
        self.shapes: list[tuple[int, int, int]] = []  # (rows, padded length, real pieces) per call
        self._start = 0.0

    def record(self, attention_mask) -> None:
        rows, length = attention_mask.shape
        self.shapes.append((int(rows), int(length), int(attention_mask.sum())))

    def attach(self, module: torch.nn.Module) -> None:
        """Forward hooks on a transformer called as module(input_ids=..., attention_mask=...)."""

        def before(mod, args, kwargs):
            mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
            self.record(mask if mask is not None else torch.ones_like(kwargs.get("input_ids", args[0])))
            self._start = time.perf_counter()

        def after(mod, args, kwargs, out):
            self.stages.seconds[self.name] += time.perf_counter() - self._start

        handles = [
            module.register_forward_pre_hook(before, with_kwargs=True),
            module.register_forward_hook(after, with_kwargs=True),
        ]
        self.stages.on_exit(lambda: [h.remove() for h in handles])

    def attach_onnx(self, session) -> None:
        """An ONNX Runtime session fed {"input_ids", "attention_mask"}: its `run` timed."""
        original = session.run

        def run(outputs, feed, *args, **kwargs):
            self.record(feed["attention_mask"])
            with self.stages(self.name):
                return original(outputs, feed, *args, **kwargs)

        session.run = run
        self.stages.on_exit(lambda: setattr(session, "run", original))


def transformer_flops(config, rows: int, length: int) -> float:
    """Multiply-adds x 2 of the transformer layers on a (rows, length) input: every Linear of a layer (Q, K,
    V, output: 4 H², the FFN: 2 H I per position) and attention's two T x T products (4 T² H per row).
    Embeddings, LayerNorms, softmax and a pooler on [CLS] are left out: they are a rounding error."""
    hidden = config.hidden_size
    inner = getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim", 4 * hidden)
    tokens = rows * length
    per_layer = 2 * tokens * (4 * hidden * hidden + 2 * hidden * inner) + 4 * rows * length * length * hidden
    return float(config.num_hidden_layers * per_layer)


def matmul_peak(dtype: torch.dtype, size: int = MATMUL_SIZE, repeats: int = 5, inner: int = 4) -> float:
    """GFLOP/s of a size² x size² matmul in `dtype` on this process's threads: the best of `repeats`.
    torch.qint8: torch's dynamic int8 Linear (int8 weights, the input quantized per call), as the torch int8
    runtimes multiply."""
    a = torch.randn(size, size)
    if dtype == torch.qint8:
        from torch.ao.quantization import quantize_dynamic

        linear = torch.nn.Sequential(torch.nn.Linear(size, size, bias=False))
        quantized = quantize_dynamic(linear, {torch.nn.Linear}, dtype=torch.qint8)

        def product():
            return quantized(a)
    else:
        a, b = a.to(dtype), torch.randn(size, size).to(dtype)

        def product():
            return a @ b

    with torch.inference_mode():
        for _ in range(2):
            product()  # warm-up: oneDNN / BLAS / fbgemm kernel choice, allocator
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(inner):
                product()
            best = min(best, (time.perf_counter() - start) / inner)
    return 2 * size**3 / best / 1e9


def encoder_summary(probe: TransformerProbe, config, peak_dtype: torch.dtype, words: int) -> dict:
    """The encoder's achieved GFLOP/s against this process's matmul peak, and how full its input was."""
    seconds = probe.stages.seconds[probe.name]
    flops = sum(transformer_flops(config, rows, length) for rows, length, _ in probe.shapes)
    padded = sum(rows * length for rows, length, _ in probe.shapes)
    real = sum(r for _, _, r in probe.shapes)
    peak = matmul_peak(peak_dtype)
    achieved = flops / seconds / 1e9 if seconds else 0.0
    return {
        "attention": getattr(config, "_attn_implementation", None),
        "calls": len(probe.shapes),
        "rows": sum(rows for rows, _, _ in probe.shapes),
        "padded_pieces": padded,
        "real_pieces": real,
        "real_over_padded": real / padded if padded else None,
        "real_pieces_per_word": real / words if words else None,
        "gflop": flops / 1e9,
        "gflops_per_s": achieved,
        "peak_dtype": str(peak_dtype).removeprefix("torch."),
        "peak_matmul_size": MATMUL_SIZE,
        "threads": torch.get_num_threads(),
        "peak_gflops_per_s": peak,
        "roofline_fraction": achieved / peak if peak else None,
    }


def profile_polyhead(nlp, texts: list[str], batch_size: int) -> dict:
    """One `nlp.pipe` pass over `texts` with every stage timed: spaCy's tokenizer; the encoder component's
    wordpieces, windows (plan_alignment), transformer and pooling; each head's forward, decode and
    set_annotations (Doc writing). A component's `rest` is its time outside those parts."""
    import polyhead.data.collate as collate
    import polyhead.export.runtimes as runtimes
    import polyhead.models.encoder as encoder_module
    from polyhead.export.quantize import TORCH_INT8

    component = nlp.get_pipe("encoder")
    runtime = component.runtime()  # built by the timed passes before
    heads = [name for name, pipe in nlp.pipeline if hasattr(pipe, "head")]
    with Stages() as stages:
        stages.wrap(nlp, "make_doc", "spaCy tokenizer")
        stages.wrap(component, "annotate", "encoder")
        stages.wrap(collate, "wordpieces", "encoder/wordpieces")
        stages.wrap(collate, "plan_alignment", "encoder/windows")
        stages.wrap(encoder_module, "word_outputs", "encoder/pooling")  # torch runtimes
        stages.wrap(runtimes, "word_outputs", "encoder/pooling")  # ONNX Runtime
        probe = TransformerProbe(stages, "encoder/transformer")
        onnx = hasattr(runtime, "session")
        if onnx:
            probe.attach_onnx(runtime.session)
        else:
            probe.attach(runtime.model)
        for name in heads:
            pipe = nlp.get_pipe(name)
            stages.wrap(pipe, "annotate", name)
            # the head that runs (an int8 copy beside an int8 encoder) and the one that writes the Docs
            runs = {id(h): h for h in (pipe.head, pipe.runtime(component.resolved_precision))}
            for head in runs.values():
                for attr, part in HEAD_PARTS.items():
                    stages.wrap(head, attr, f"{name}/{part}")
        with stages("pass"):
            words = sum(len(doc) for doc in nlp.pipe(texts, batch_size=batch_size))
    config = component.encoder.model.config if onnx else runtime.model.config
    # the matmul the encoder is held against: bf16 weights -> bf16, torch's int8 recipes -> its dynamic int8
    # Linear; anything else (fp32, ONNX Runtime's) -> fp32
    peak_dtype = {"bf16": torch.bfloat16}.get(component.resolved_precision, torch.float32)
    peak_dtype = torch.qint8 if component.resolved_precision in TORCH_INT8 else peak_dtype
    encoder = encoder_summary(probe, config, peak_dtype, words)
    encoder["attention"] = "ONNX Runtime" if onnx else encoder["attention"]
    groups = [("spaCy tokenizer", []), ("encoder", ENCODER_PARTS)]
    groups += [(name, list(HEAD_PARTS.values())) for name in heads]
    return profile_result(stages.seconds, "pass", groups, encoder, words)


def profile_hf(annotate, models: dict, words: int, dtype: torch.dtype) -> dict:
    """One pass of `annotate(stage)` (bench/hf_baseline.py's hf_annotate, timing its tokenizer, model and
    decode under `stage`), with every model's transformer (its base_model) timed inside `model`."""
    with Stages() as stages:
        probe = TransformerProbe(stages, "model/transformer")
        for _, model in models.values():
            probe.attach(model.base_model)
        with stages("pass"):
            annotate(stages)
    config = next(iter(models.values()))[1].config
    encoder = encoder_summary(probe, config, dtype, words)
    groups = [("HF tokenizer", []), ("model", ["transformer"]), ("decode", [])]
    return profile_result(stages.seconds, "pass", groups, encoder, words)


def stage_rows(seconds: dict[str, float], total: str, groups: list[tuple[str, list[str]]]) -> list:
    """(row, seconds) in order: each group's parts, then its `rest` (the group less its parts); a group
    with no parts is one row. Last, what the pass spent outside every group."""
    rows = []
    for group, parts in groups:
        rows += [(f"{group}: {part}", seconds.get(f"{group}/{part}", 0.0)) for part in parts]
        spent = sum(seconds.get(f"{group}/{part}", 0.0) for part in parts)
        rows.append((f"{group}: rest" if parts else group, seconds.get(group, 0.0) - spent))
    rows.append(("outside the stages above", seconds[total] - sum(seconds.get(g, 0.0) for g, _ in groups)))
    return rows


def profile_result(seconds: dict, total: str, groups: list, encoder: dict, words: int) -> dict:
    """What the JSON keeps: the pass's seconds, every row's seconds and share, the encoder's summary."""
    rows = stage_rows(seconds, total, groups)
    return {
        "seconds": seconds[total],
        "words": words,
        "stages": {name: {"seconds": s, "share": s / seconds[total]} for name, s in rows},
        "encoder": encoder,
    }


def format_profile(name: str, profile: dict) -> str:
    """One configuration's table: every stage's seconds and share, then the encoder's roofline and input."""
    enc = profile["encoder"]
    lines = [
        f"profile: {name} (one pass, {profile['words']:,} words, {profile['seconds']:.3f} s)",
        f"  {'stage':<44} {'seconds':>8} {'share':>7}",
    ]
    for stage, row in profile["stages"].items():
        lines.append(f"  {stage:<44} {row['seconds']:>8.3f} {100 * row['share']:>6.1f}%")
    lines.append(
        f"  encoder: {enc['gflop']:.1f} GFLOP at {enc['gflops_per_s']:.1f} GFLOP/s; {enc['peak_dtype']} "
        f"matmul peak ({enc['peak_matmul_size']}², {enc['threads']} threads) {enc['peak_gflops_per_s']:.1f} "
        f"GFLOP/s: roofline {_num(enc['roofline_fraction'], '.2f')}"
    )
    lines.append(
        f"  encoder input: {enc['rows']:,} rows in {enc['calls']} calls, real/padded pieces "
        f"{_num(enc['real_over_padded'], '.3f')}, real pieces/word "
        f"{_num(enc['real_pieces_per_word'], '.2f')}, attention {enc['attention']}"
    )
    return "\n".join(lines)


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)
