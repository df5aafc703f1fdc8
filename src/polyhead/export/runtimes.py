"""How the exported encoder runs at inference: torch (fp32, bf16 weights, int8) or ONNX Runtime.

Every runtime maps an `Alignment` to the same `EncoderOutput` through the same pooling code as training
(`word_outputs`); only the transformer's forward pass differs. `auto` is resolved on the machine that loads
the pipeline (`resolve_precision`): bf16 weights on a CPU with native bf16, int8-keep on other x86 CPUs
(fp32 for an encoder whose layers it cannot name), torch fp32 elsewhere. ONNX Runtime (`onnx` and its int8
kinds; the optional `polyhead[onnx]` extra) is selectable, as are the int8 recipes of
`polyhead.export.quantize` (per-tensor, per-channel, some layers kept fp32, static). The heads follow the
encoder's precision in `PolyheadHead`: bf16 autocast beside bf16, an int8 copy beside int8 where the head
kind names wide products (`quantize.quantize_head`: the parser).

ONNX Runtime runs an ONNX export of the encoder's `hidden()` (transformer + scalar mix), written once per
machine to a cache keyed by the weights' hash: `$POLYHEAD_CACHE`, else `$XDG_CACHE_HOME/polyhead`, else
`~/.cache/polyhead`. The package never ships a second copy of the weights. A cache folder or file another
user owns, or others may write to, is refused (polyhead.cache), never handed to ONNX Runtime. An int8
file is derived from that export once, beside it, named by its recipe.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from polyhead.cache import cache_dir, cached_file, private_dir, write_private
from polyhead.errors import UserError
from polyhead.export.quantize import TORCH_INT8, kept_linears, onnx_quantizer, quantize_linears
from polyhead.hardware import INT8_AUTO, Hardware, detect, inference_precision
from polyhead.models.encoder import Encoder, EncoderOutput, word_outputs
from polyhead.tokens.alignment import Alignment

log = logging.getLogger(__name__)


def build_runtime(encoder: Encoder, precision: str):
    """A callable Alignment -> EncoderOutput for `precision` (one of INFERENCE_PRECISIONS), and the precision
    it resolved to on this machine."""
    resolved = resolve_precision(precision, encoder)
    if resolved.startswith("onnx"):
        return OnnxEncoder(encoder, resolved), resolved
    runtime = copy.deepcopy(encoder).eval()
    runtime.model.set_attn_implementation("sdpa")  # no backward pass at inference: the fused kernel wins
    if resolved == "bf16":
        runtime.to(torch.bfloat16)
    elif resolved in TORCH_INT8:
        runtime.model = quantize_linears(runtime.model, resolved)
    return runtime, resolved


def resolve_precision(precision: str, encoder: Encoder, hw: Hardware | None = None) -> str:
    """What `precision` runs as for `encoder` on `hw` (None: this machine): `inference_precision`, except
    that `auto`'s int8-keep needs the Linear layers it keeps in fp32 (KEEP_FP32, BERT-family names); an
    encoder without them (another family, a one-layer student) runs torch fp32 under `auto`."""
    resolved = inference_precision(precision, hw or detect())
    if precision != "auto" or resolved != INT8_AUTO:
        return resolved
    try:
        kept_linears(encoder.model)
    except (UserError, ValueError) as err:
        log.info("encoder precision auto: torch fp32, not %s (%s)", INT8_AUTO, err)
        return "fp32"
    return resolved


class _Hidden(nn.Module):
    """The traced graph: (input_ids, attention_mask) -> (N, T, H) wordpiece vectors."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder.hidden(input_ids, attention_mask)


def weights_key(encoder: Encoder) -> str:
    """A hash of the weights and of what changes the graph, so a retrained encoder gets its own export."""
    digest = hashlib.sha256(f"{torch.__version__}|{encoder.mix is not None}".encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def export_onnx(encoder: Encoder, path: Path) -> Path:
    """Trace the encoder to ONNX (dynamic batch and sequence axes) into a temporary file, then move it."""
    model = copy.deepcopy(encoder).float().eval()
    model.model.set_attn_implementation("sdpa")
    ids = torch.full((2, 8), 100, dtype=torch.long)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_path = Path(tmp) / path.name
        axes = {0: "windows", 1: "pieces"}
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter (needs no onnxscript) is deprecated, and its tracer warns about
            # branches on shapes that are constant for an encoder's inputs; tests check it against torch.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Hidden(model),
                (ids, mask),
                str(tmp_path),
                input_names=["input_ids", "attention_mask"],
                output_names=["hidden"],
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden": axes},
                opset_version=17,
                dynamo=False,
            )
        os.chmod(tmp_path, 0o600)  # whatever the umask: the cache refuses files others may write
        os.replace(tmp_path, path)
    return path


def onnx_model(encoder: Encoder, precision: str = "onnx") -> Path:
    """The cached ONNX file of these weights for `precision` (onnx or an int8 kind), made on first use."""
    key = weights_key(encoder)
    path = private_dir(cache_dir()) / f"encoder-{key}.onnx"
    if not cached_file(path):
        log.info("exporting the encoder to ONNX once: %s", path)
        export_onnx(encoder, path)
    if precision == "onnx":
        return path
    tag, quantize = onnx_quantizer(encoder, precision)
    qpath = path.with_name(f"encoder-{key}-{tag}.onnx")
    if not cached_file(qpath):
        log.info("quantizing the ONNX encoder once (%s): %s", precision, qpath)
        write_private(qpath, lambda tmp: quantize(str(path), str(tmp)))
    return qpath


class OnnxEncoder:
    """The encoder's transformer in ONNX Runtime; pooling into words stays polyhead's own torch code."""

    def __init__(self, encoder: Encoder, precision: str = "onnx"):
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError(
                "encoder precision 'onnx' needs ONNX Runtime: pip install onnxruntime onnx "
                "(or polyhead[onnx]); precision 'auto' or 'fp32' runs on torch alone"
            ) from err
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same threads torch would use
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = onnx_model(encoder, precision)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, alignment: Alignment) -> EncoderOutput:
        feed = {
            "input_ids": alignment.input_ids.numpy(),
            "attention_mask": alignment.attention_mask.numpy(),
        }
        hidden = torch.from_numpy(self.session.run(["hidden"], feed)[0])  # (N, T, H)
        return word_outputs(hidden, alignment)
