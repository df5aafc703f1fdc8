"""Precision resolution as a pure function of what the hardware reports: every CPU class, on any machine."""

import logging

import pytest

from polyhead.hardware import Hardware, detect, inference_precision, train_precision

AVX2 = Hardware("AMD EPYC", "AVX2", threads=2)
AMX = Hardware("Intel Xeon Platinum 8481C", "AVX512", amx=True, avx512_bf16=True, threads=2)
AVX512_BF16 = Hardware("AMD EPYC 9654", "AVX512", avx512_bf16=True, threads=8)
AVX512_ONLY = Hardware("Intel Xeon Gold 6148", "AVX512", threads=4)
GRAVITON3 = Hardware("Neoverse-V1", "SVE256", arm_bf16=True, threads=4)
NEOVERSE_N1 = Hardware("Neoverse-N1", "DEFAULT", threads=4)
OLD_X86 = Hardware("Intel Xeon E5-2670", "DEFAULT", threads=2)  # AVX only
CUDA_BF16 = Hardware("AMD EPYC", "AVX2", threads=2, cuda="NVIDIA A100", cuda_bf16=True)
CUDA_OLD = Hardware("Intel Xeon", "AVX2", threads=2, cuda="Tesla T4", cuda_bf16=False)


@pytest.mark.parametrize(
    "hw, accelerator, expected",
    [
        (AVX2, "auto", "32-true"),
        (AVX512_ONLY, "auto", "32-true"),
        (AMX, "auto", "bf16-mixed"),
        (AVX512_BF16, "cpu", "bf16-mixed"),
        (GRAVITON3, "auto", "bf16-mixed"),
        (CUDA_BF16, "auto", "bf16-mixed"),
        (CUDA_BF16, "gpu", "bf16-mixed"),
        (CUDA_BF16, "cpu", "32-true"),  # the GPU is there but the run is on the CPU
        (CUDA_OLD, "auto", "16-mixed"),
    ],
)
def test_hardware_train_precision_auto(hw, accelerator, expected):
    assert train_precision("auto", hw, accelerator) == expected


@pytest.mark.parametrize("explicit", ["32-true", "bf16-mixed", "16-mixed", "64-true", 32])
@pytest.mark.parametrize("hw", [AVX2, AMX, CUDA_BF16])
def test_hardware_explicit_train_precision_wins(hw, explicit):
    assert train_precision(explicit, hw) == explicit


def test_hardware_bf16_on_emulating_cpu_warns_once_with_cost_and_alternative(caplog):
    with caplog.at_level(logging.WARNING, logger="polyhead.hardware"):
        assert train_precision("bf16-mixed", AVX2) == "bf16-mixed"
    (record,) = caplog.records
    assert "AMD EPYC" in record.message and "9x slower" in record.message
    assert "precision=auto" in record.message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="polyhead.hardware"):
        train_precision("bf16-mixed", AMX)
        train_precision("32-true", AVX2)
        train_precision("bf16-mixed", CUDA_BF16)
    assert not caplog.records


@pytest.mark.parametrize(
    "hw, expected",
    [
        (AVX2, "int8-keep"),  # 1.26-1.65x torch fp32 within 0.2 points on an AVX2 EPYC (bench/inference.py)
        (AVX512_ONLY, "int8-keep"),  # x86 without native bf16: the same fbgemm int8 kernels
        (AMX, "bf16"),
        (AVX512_BF16, "bf16"),
        (GRAVITON3, "bf16"),
        (NEOVERSE_N1, "fp32"),  # no bf16, and int8-keep was measured on x86 only
        (OLD_X86, "fp32"),
        (CUDA_BF16, "int8-keep"),  # the exported encoder runs on the CPU
    ],
)
def test_hardware_inference_precision_auto(hw, expected):
    assert inference_precision("auto", hw) == expected


def test_hardware_inference_explicit_and_unknown(caplog):
    for value in ("fp32", "int8", "onnx", "onnx-int8"):
        assert inference_precision(value, AMX) == value
    with caplog.at_level(logging.WARNING, logger="polyhead.hardware"):
        assert inference_precision("bf16", AVX2) == "bf16"
    assert "without native bf16" in caplog.text
    with pytest.raises(ValueError, match="fp16"):
        inference_precision("fp16", AVX2)


def test_hardware_detect_reports_this_machine():
    import torch

    hw = detect()
    assert hw.capability == torch.backends.cpu.get_cpu_capability()
    assert hw.threads == torch.get_num_threads() and hw.cpu_model
    tags = hw.tags()
    assert set(tags) == {"hw/cpu_model", "hw/cpu_capability", "hw/cpu_native_bf16", "hw/threads", "hw/device"}
    assert hw.capability in hw.describe()
