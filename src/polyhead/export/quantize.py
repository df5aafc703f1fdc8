"""int8 recipes for the exported encoder: which Linear layers are quantized, how, and on what calibration.

torch (`quantize_linears`): `int8` is torch's dynamic quantization with one scale per weight matrix and
7-bit inputs; `int8-pc` one scale per output channel (a row of small weights no longer shares the scale of
the matrix's largest) and 8-bit inputs (FullRangeLinear); `int8-keep` is int8-pc with the Linear layers in
KEEP_FP32 left in fp32. On MiniLM's word vectors (EWT dev) 1 - cosine to fp32 fell from 0.078 (int8) to
0.012 (int8-pc), 0.009 (int8-keep); ONNX Runtime's from 0.049 (onnx-int8) to 0.012, 0.009, 0.009 (static).
ONNX Runtime
(`onnx_quantizer`): `onnx-int8` is its default dynamic quantization (per-tensor weights, and the embedding
Gathers too); `onnx-int8-pc`, `onnx-int8-keep` and `onnx-int8-static` quantize only the Linear layers'
MatMuls, as torch does, per channel, with 7-bit weights (`reduce_range`: MLAS's u8 x s8 kernels on x86
without VNNI add pairs of 8-bit products into int16, which 255 * 127 * 2 overflows and 255 * 63 * 2 does not).

`onnx-int8-static` (KEEP_FP32 kept in fp32 too) fixes each quantized activation's range in advance, from
real text: the file $POLYHEAD_CALIBRATION names (UTF-8, one text per line, words split on whitespace, the
first CALIBRATION_TEXTS used), texts like those the pipeline will annotate, e.g. a few hundred of its
training texts. Without it the precision stops with a UserError naming the variable. Calibrating on the
first batch the pipeline happens to annotate would make the model depend on which texts came first on this
machine (a single short text would fix ranges that clip every longer one); synthetic windows are not text;
and shipping calibration texts in the package would copy training data into it. The export step stores
nothing extra; the calibrated file is cached under the weights' key plus a hash of the calibration windows.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch
import torch.ao.nn.quantized.dynamic as nnqd
from torch import nn
from torch.ao.quantization import QConfig, default_dynamic_qconfig, quantize_dynamic
from torch.ao.quantization.observer import PerChannelMinMaxObserver

from polyhead.data.collate import Collator
from polyhead.errors import UserError
from polyhead.models.encoder import Encoder, layer_stack
from polyhead.tokens.wordpieces import load_tokenizer

TORCH_INT8 = ("int8", "int8-pc", "int8-keep")
ONNX_INT8 = ("onnx-int8", "onnx-int8-pc", "onnx-int8-keep", "onnx-int8-static")
# Linear layers int8-keep, onnx-int8-keep and onnx-int8-static leave in fp32: (index in the transformer's
# layer stack, negative from the top; name inside the layer, BERT-family naming). The FFN output projection
# reads the GELU output, the widest-ranging input in a BERT layer (Bondarenko et al. 2021), and a low
# layer's error is carried through every layer above it. Measured on all-MiniLM-L6-v2's word vectors over
# 300 EWT dev sentences (int8-pc: 1 - cosine to fp32 0.0116): keeping layer 0's output.dense alone gave
# 0.0095, the best single choice by far; a second Linear 0.0083-0.0096, layer 1's output.dense 0.0086, the
# last layer's 0.0093. Each FFN Linear kept costs 1/18 of MiniLM's Linear arithmetic in fp32.
KEEP_FP32 = ((0, "output.dense"), (1, "output.dense"))
CALIBRATION = "POLYHEAD_CALIBRATION"
CALIBRATION_TEXTS = 500
CALIBRATION_BATCH = 64  # the encoder component's default batch size: the same windows and padding


def kept_linears(model: nn.Module, keep=KEEP_FP32) -> list[str]:
    """Module names (in `model`, a transformer) of the Linear layers `keep` lists, each once."""
    stack = layer_stack(model)
    prefix = next(name for name, module in model.named_modules() if module is stack)
    modules = dict(model.named_modules())
    names: list[str] = []
    for index, sub in keep:
        layer = index if index >= 0 else len(stack) + index
        name = f"{prefix}.{layer}.{sub}"
        if not 0 <= layer < len(stack) or not isinstance(modules.get(name), nn.Linear):
            raise UserError(
                f"int8 keeps layer {index}'s {sub!r} in fp32, but {type(model).__name__} has no Linear "
                f"{name}: choose precision int8-pc or onnx-int8-pc, or edit KEEP_FP32 in {__name__}"
            )
        names += [name] if name not in names else []
    return names


class FullRangeLinear(nnqd.Linear):
    """torch's dynamic int8 Linear with its input quantized to all 8 bits. torch's own rounds it to 7
    (reduce_range), doubling the step of the per-tensor input scale, the larger error (on MiniLM, inputs
    alone rounded cost 1 - cosine 0.0100, 7-bit per-channel weights alone 0.0019), to keep sums of u8 x s8
    pairs inside int16 on CPUs without VNNI; here the weights give up that bit instead (WEIGHTS_7BIT)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params, reduce_range=False)
        return y.to(x.dtype)


WEIGHTS_7BIT = PerChannelMinMaxObserver.with_args(
    dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-64, quant_max=63
)

# int8-pc's recipe: torch's dynamic input quantization, weights per output channel in 7 bits
PER_CHANNEL = QConfig(activation=default_dynamic_qconfig.activation, weight=WEIGHTS_7BIT)


def quantize_linears(model: nn.Module, precision: str, keep=KEEP_FP32) -> nn.Module:
    """`model` with its Linear layers dynamically quantized for `precision` (one of TORCH_INT8): weights int8
    once, activations per call; int8-pc and int8-keep as FullRangeLinear, `keep` left fp32 by int8-keep."""
    if precision == "int8":
        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    spec: dict = {nn.Linear: PER_CHANNEL}
    if precision == "int8-keep":
        spec.update(dict.fromkeys(kept_linears(model, keep)))  # a module name mapped to None stays fp32
    return quantize_dynamic(model, spec, dtype=torch.qint8, mapping={nn.Linear: FullRangeLinear})


def onnx_nodes(encoder: Encoder, keep=KEEP_FP32) -> list[str]:
    """The MatMul nodes of KEEP_FP32's Linear layers in `export_onnx`'s graph: the TorchScript exporter joins
    module scopes with '/' and keeps a list item as 'layer.0' (/model/encoder/layer.0/output/dense/MatMul)."""
    names = [f"model/{name.replace('.', '/')}" for name in kept_linears(encoder.model, keep)]
    return ["/" + re.sub(r"/(\d+)(?=/)", r".\1", name) + "/MatMul" for name in names]


def linear_nodes(model, keep: list[str]) -> list[str]:
    """The MatMul nodes of an exported encoder (an onnx.ModelProto) that multiply by a weight (its Linear
    layers, not attention's two activations), less `keep`; a `keep` node not among them is an error."""
    weights = {tensor.name for tensor in model.graph.initializer}
    nodes = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    missing = sorted(set(keep) - set(nodes))
    if missing:
        raise RuntimeError(f"the ONNX encoder has no Linear MatMul {missing} to keep in fp32 (renamed?)")
    return [node for node in nodes if node not in keep]


def onnx_quantizer(encoder: Encoder, precision: str) -> tuple[str, Callable[[str, str], None]]:
    """(tag for the cached file's name, quantize(fp32 file, int8 file)) for one of ONNX_INT8."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if precision == "onnx-int8":
        return "int8", lambda src, dst: quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
    keep = [] if precision == "onnx-int8-pc" else onnx_nodes(encoder)
    digest = hashlib.sha256(repr(keep).encode())
    if precision != "onnx-int8-static":

        def dynamic(src: str, dst: str) -> None:
            import onnx

            nodes = linear_nodes(onnx.load(src), keep)
            quantize_dynamic(src, dst, nodes_to_quantize=nodes, per_channel=True, reduce_range=True)

        tag = "int8-pc" if precision == "onnx-int8-pc" else f"int8-keep-{digest.hexdigest()[:12]}"
        return tag, dynamic
    feed = calibration_feed(encoder)
    for batch in feed:
        digest.update(batch["input_ids"].tobytes() + batch["attention_mask"].tobytes())
    return f"int8-static-{digest.hexdigest()[:12]}", lambda src, dst: quantize_static(src, dst, feed, keep)


def quantize_static(src: str, dst: str, feed: list[dict], keep: list[str]) -> None:
    """ONNX Runtime's static quantization (QDQ, fused into MatMulIntegerToFloat when ORT loads it) of the
    Linear MatMuls but `keep`: each input's range the min and max it took over `feed`, the output fp32."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(feed)

        def get_next(self):
            return next(self.batches, None)

    model = onnx.load(src)
    nodes = linear_nodes(model, keep)
    private_inputs(model.graph, nodes)
    ort_quantize_static(
        model,
        dst,
        Batches(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,  # u8 x s8: the pair ORT fuses into MatMulIntegerToFloat on CPU
        op_types_to_quantize=["MatMul"],  # and calibrate: the attention mask's -inf has no int8 range
        nodes_to_quantize=nodes,
        per_channel=True,
        reduce_range=True,
        extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"]},
    )


def private_inputs(graph, nodes: list[str]) -> None:
    """Give each of `nodes` its own copy of its activation input (an Identity, which ORT removes on loading):
    the quantize-dequantize pair static quantization puts on a tensor is read by every consumer of that
    tensor, and the LayerNorm output a Linear reads also feeds the residual sum, which must stay fp32."""
    import onnx

    wanted, order = set(nodes), []
    for node in graph.node:
        if node.name in wanted:
            private = f"{node.name}/input"
            order.append(onnx.helper.make_node("Identity", [node.input[0]], [private], name=private))
            node.input[0] = private
        order.append(node)
    del graph.node[:]
    graph.node.extend(order)


def calibration_texts() -> list[list[str]]:
    """The words of up to CALIBRATION_TEXTS texts of the file $POLYHEAD_CALIBRATION names."""
    name = os.environ.get(CALIBRATION)
    if not name:
        raise UserError(
            f"encoder precision onnx-int8-static fixes its activation ranges on real text: set {CALIBRATION} "
            "to a UTF-8 file of texts like those the pipeline will annotate, one per line (a few hundred of "
            "its training texts), or choose onnx-int8-pc or onnx-int8-keep, which need none"
        )
    try:
        lines = Path(name).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{name} ({CALIBRATION}): cannot read the calibration texts: {err}") from err
    texts = [words for words in (line.split() for line in lines) if words][:CALIBRATION_TEXTS]
    if not texts:
        raise UserError(f"{name} ({CALIBRATION}): holds no text to calibrate on")
    return texts


def calibration_feed(encoder: Encoder) -> list[dict]:
    """The calibration texts as ONNX inputs, windowed by the encoder's own tokenizer and settings and batched,
    length-sorted, as the encoder component batches: [{"input_ids": (N, T), "attention_mask": (N, T)}]."""
    collate = Collator(load_tokenizer(encoder.name), encoder.windowing)
    texts = sorted(calibration_texts(), key=len)
    feed = []
    for start in range(0, len(texts), CALIBRATION_BATCH):
        alignment = collate.align(texts[start : start + CALIBRATION_BATCH])
        feed.append(
            {"input_ids": alignment.input_ids.numpy(), "attention_mask": alignment.attention_mask.numpy()}
        )
    return feed


def quantize_head(head: nn.Module) -> nn.Module:
    """The head to run beside an int8 encoder (as heads compute in bf16 beside a bf16 one): a copy with the
    layers its `as_linears` names int8 per output channel with full-range inputs (as int8-pc), or the head
    itself where it names none. A head kind opts in once measured: on a 2-core AVX2 EPYC (4-head EWT
    pipeline, 600 test texts, `bench/heads.py --second-fp32-head`) the parser's int8 copy annotated 1.15x
    as fast as the parser beside the same int8-keep encoder, LAS 79.26 against 79.27 on EWT test, while
    in a development trial int8 tagger, NER and textcat layers (17-50 outputs) ran 0.93-0.98x as fast:
    quantizing each input costs more than a narrow product saves."""
    if not hasattr(head, "as_linears"):
        return head
    int8 = copy.deepcopy(head)
    spec = dict.fromkeys(int8.as_linears(), PER_CHANNEL)
    return quantize_dynamic(int8, spec, dtype=torch.qint8, mapping={nn.Linear: FullRangeLinear}).eval()
