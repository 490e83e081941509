"""Device names → peak dense FLOP/s: the variants of a GPU must not be mistaken for one another."""

from __future__ import annotations

import pytest
import torch

from unetinspect.engine.hardware import describe_device, peak_flops


@pytest.mark.parametrize("name, dtype, tflops", [
    ("NVIDIA H100 80GB HBM3", torch.float16, 989.4),
    ("NVIDIA H100 PCIe", torch.bfloat16, 756.0),
    ("NVIDIA H100 NVL", torch.float16, 835.0),
    ("NVIDIA H200", torch.float16, 989.4),
    ("NVIDIA A100-SXM4-80GB", torch.float16, 312.0),
    ("NVIDIA A100 80GB PCIe", torch.float32, 19.5),
    ("NVIDIA A10G", torch.float16, 70.0),
    ("NVIDIA L4", torch.float16, 121.0),
    ("NVIDIA L40S", torch.float16, 362.1),
    ("NVIDIA GeForce RTX 4090", torch.float16, 165.2),
    ("NVIDIA GeForce RTX 3090", torch.float16, 71.0),
    ("Tesla T4", torch.float16, 65.0),
    ("Tesla V100-SXM2-16GB", torch.float16, 125.0),
    ("Tesla V100-PCIE-32GB", torch.float16, 112.0),
])
def test_known_gpus(name, dtype, tflops):
    assert peak_flops(name, dtype) == pytest.approx(tflops * 1e12)


@pytest.mark.parametrize("name, dtype", [
    ("Tesla T4", torch.bfloat16),  # no bf16 tensor cores
    ("NVIDIA GeForce RTX 3090 Ti", torch.float16),
    ("NVIDIA A10", torch.float16),
    ("NVIDIA B200", torch.float16),
])
def test_unknown_gpus_or_dtypes_have_no_peak(name, dtype):
    assert peak_flops(name, dtype) is None


def test_cpu_is_named_with_its_threads():
    info = describe_device(torch.device("cpu"), torch.float32)
    assert info.type == "cpu" and "thread" in info.name and info.peak_flops is None and info.total_memory is None
