"""What this machine computes well, and the precision that follows: `auto` resolved where the run starts.

bf16 pays only where the hardware multiplies bf16 natively: a CUDA GPU with bf16, or a CPU with AMX tiles or
AVX512-BF16. Elsewhere torch emulates it (on a 2-core AMD EPYC with AVX2 only, bf16-mixed trained 9-28x
slower than fp32 in bench/train_throughput.py), so `auto` trains fp32 there, and the exported encoder runs
int8-keep on such x86 CPUs (`inference_precision`). The resolution functions are pure: they take a
`Hardware` record, so every CPU class is testable on any machine.
"""

from __future__ import annotations

import functools
import logging
import platform
from dataclasses import dataclass

log = logging.getLogger(__name__)

BF16_TRAIN = ("bf16-mixed", "bf16-true", "bf16")
# What the encoder component runs as: fp32 | bf16 (a bf16 copy of the weights) | int8 (dynamic quantization)
# | onnx, onnx-int8 (ONNX Runtime; optional `onnxruntime`) | the int8 recipes of polyhead.export.quantize:
# int8-pc, int8-keep (torch), onnx-int8-pc, onnx-int8-keep, onnx-int8-static (ONNX Runtime).
INFERENCE_PRECISIONS = (
    *("auto", "fp32", "bf16", "int8", "onnx", "onnx-int8"),
    *("int8-pc", "int8-keep", "onnx-int8-pc", "onnx-int8-keep", "onnx-int8-static"),
)

# `auto`'s encoder on x86 CPUs without native bf16, and the torch capabilities that name those CPUs (fbgemm's
# int8 kernels; int8-keep's 7-bit weights keep its u8 x s8 pair sums inside int16 where there is no VNNI).
INT8_AUTO = "int8-keep"
X86_INT8 = ("AVX2", "AVX512")


@dataclass(frozen=True)
class Hardware:
    cpu_model: str
    capability: str  # torch.backends.cpu.get_cpu_capability(): AVX2, AVX512, DEFAULT, SVE256, ...
    amx: bool = False  # AMX tiles (Sapphire Rapids and later): oneDNN's bf16 matmuls
    avx512_bf16: bool = False
    arm_bf16: bool = False  # aarch64 BF16 instructions (e.g. Graviton3, Neoverse V1/N2)
    threads: int = 1
    cuda: str | None = None  # device name of GPU 0
    cuda_bf16: bool = False

    @property
    def cpu_bf16(self) -> bool:
        """The CPU multiplies bf16 in hardware (not emulated through fp32)."""
        return self.amx or self.avx512_bf16 or self.arm_bf16

    def describe(self) -> str:
        feats = [f for f, on in (("AMX", self.amx), ("AVX512-BF16", self.avx512_bf16)) if on]
        feats += ["BF16"] if self.arm_bf16 else []
        cpu = f"{self.cpu_model} ({self.capability}{', ' + ', '.join(feats) if feats else ''}, "
        cpu += f"{self.threads} threads)"
        return cpu + (f" + {self.cuda}" if self.cuda else "")

    def tags(self) -> dict[str, str]:
        """MLflow tags / benchmark header fields."""
        return {
            "hw/cpu_model": self.cpu_model,
            "hw/cpu_capability": self.capability,
            "hw/cpu_native_bf16": str(self.cpu_bf16).lower(),
            "hw/threads": str(self.threads),
            "hw/device": self.cuda or "cpu",
        }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":")[0].strip() in ("model name", "Model", "cpu model"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _arm_bf16() -> bool:
    if platform.machine().lower() not in ("aarch64", "arm64"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("Features") and " bf16" in line for line in f)
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def detect() -> Hardware:
    """This machine, as torch reports it."""
    import torch

    cpu = torch.cpu
    cuda = torch.cuda.is_available()
    return Hardware(
        cpu_model=_cpu_model(),
        capability=torch.backends.cpu.get_cpu_capability(),
        amx=bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)()),
        avx512_bf16=bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()),
        arm_bf16=_arm_bf16(),
        threads=torch.get_num_threads(),
        cuda=torch.cuda.get_device_name(0) if cuda else None,
        cuda_bf16=bool(cuda and torch.cuda.is_bf16_supported()),
    )


def _uses_cuda(hw: Hardware, accelerator: str | None) -> bool:
    return hw.cuda is not None and str(accelerator or "auto") in ("auto", "gpu", "cuda")


def train_precision(requested: str | int | None, hw: Hardware, accelerator: str | None = "auto") -> str | int:
    """Lightning's `precision` for this machine: `auto` -> bf16-mixed where bf16 is native (CUDA with bf16,
    a CPU with AMX or AVX512-BF16), 16-mixed on an older GPU, 32-true elsewhere. Any other value is returned
    as given (Lightning validates it); an explicit bf16 on a CPU that emulates it logs what it costs."""
    if requested is None or str(requested) != "auto":
        if str(requested) in BF16_TRAIN and not _uses_cuda(hw, accelerator) and not hw.cpu_bf16:
            log.warning(
                "trainer.precision=%s on a CPU without native bf16 (%s): torch emulates bf16 matrix "
                "multiplies here, which trains ~9x slower than fp32 on an AVX2-only CPU (bf16 matmul ~17x "
                "slower). trainer.precision=auto picks 32-true on this CPU.",
                requested,
                hw.describe(),
            )
        return requested
    if _uses_cuda(hw, accelerator):
        return "bf16-mixed" if hw.cuda_bf16 else "16-mixed"
    return "bf16-mixed" if hw.cpu_bf16 else "32-true"


def inference_precision(requested: str, hw: Hardware) -> str:
    """How the exported encoder runs on this machine. `auto`: bf16 weights where the CPU computes bf16
    natively; on other x86 CPUs (torch capability AVX2 or AVX512) int8-keep, the one runtime that passed
    issue 9's rule there (>= 1.3x torch fp32, UPOS, entity F1 and genre within 0.3 points; on a 2-core
    AVX2-only AMD EPYC every head within 0.17, 1.26-1.65x in three bench/inference.py runs, 1.37x for the
    encoder alone in bench/encoder_runtimes.py; AVX-512 without bf16 is unmeasured); elsewhere torch fp32.
    `polyhead.export.runtimes.resolve_precision` falls back to fp32 for an encoder int8-keep cannot
    quantize. Explicit values are kept; bf16 on an emulating CPU warns."""
    if requested not in INFERENCE_PRECISIONS:
        raise ValueError(f"encoder precision must be one of {INFERENCE_PRECISIONS}, got {requested!r}")
    if requested == "bf16" and not hw.cpu_bf16:
        log.warning(
            "encoder precision bf16 on a CPU without native bf16 (%s): torch emulates bf16 here, many times "
            "slower than fp32; precision 'auto' picks the fastest path within 0.3 points for this CPU.",
            hw.describe(),
        )
    if requested != "auto":
        return requested
    if hw.cpu_bf16:
        return "bf16"
    return INT8_AUTO if hw.capability in X86_INT8 else "fp32"


def resolve_trainer_precision(trainer_cfg) -> str | int:
    """`trainer.precision` of a composed config, resolved on this machine (what Trainer(precision=) gets)."""
    return train_precision(trainer_cfg.get("precision"), detect(), trainer_cfg.get("accelerator"))


def run_tags(precision: str | int) -> dict[str, str]:
    """Hardware tags for an MLflow run, plus the precision it actually trains in."""
    return {**detect().tags(), "hw/precision": str(precision)}
