"""What the model runs on: the device's name, its memory (total, and free now), and its peak dense FLOP/s for a
dtype where we know it.

The peaks are the vendors' datasheet figures for dense math (no 2:4 sparsity), which is what model FLOP
utilisation (MFU = achieved FLOP/s over peak) is measured against. For fp16/bf16 they are the tensor-core figures
with fp32 accumulation, which is what PyTorch asks for (GeForce cards run that at half their fp16-accumulate rate).
For fp32 they are the plain (non-tensor-core) figures: PyTorch's default matmul precision is full fp32, though
cuDNN may run fp32 convolutions as TF32 on tensor cores, so an fp32 block can show more than 100%.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

import torch

TERA = 1e12

# (pattern on the CUDA device name, {dtype: dense peak TFLOP/s}); the first match wins, so variants come first.
PEAK_TFLOPS: list[tuple[str, dict[torch.dtype, float]]] = [
    (r"\bH100\b.*\bNVL\b", {torch.float32: 60.0, torch.float16: 835.0, torch.bfloat16: 835.0}),
    (r"\bH100\b.*\bPCIe\b", {torch.float32: 51.2, torch.float16: 756.0, torch.bfloat16: 756.0}),
    (r"\bH100\b", {torch.float32: 67.0, torch.float16: 989.4, torch.bfloat16: 989.4}),  # SXM
    (r"\bH200\b.*\bNVL\b", {torch.float32: 60.0, torch.float16: 835.0, torch.bfloat16: 835.0}),
    (r"\bH200\b", {torch.float32: 67.0, torch.float16: 989.4, torch.bfloat16: 989.4}),  # SXM
    (r"\bA100\b", {torch.float32: 19.5, torch.float16: 312.0, torch.bfloat16: 312.0}),
    (r"\bL40S\b", {torch.float32: 91.6, torch.float16: 362.1, torch.bfloat16: 362.1}),
    (r"\bL4\b", {torch.float32: 30.3, torch.float16: 121.0, torch.bfloat16: 121.0}),
    (r"\bRTX 4090\b", {torch.float32: 82.6, torch.float16: 165.2, torch.bfloat16: 165.2}),
    (r"\bRTX 3090\b(?! Ti)", {torch.float32: 35.6, torch.float16: 71.0, torch.bfloat16: 71.0}),
    (r"\bA10G\b", {torch.float32: 35.0, torch.float16: 70.0, torch.bfloat16: 70.0}),
    (r"\bT4\b", {torch.float32: 8.1, torch.float16: 65.0}),
    (r"\bV100S\b", {torch.float32: 16.4, torch.float16: 130.0}),
    (r"\bV100\b.*\bPCIE\b", {torch.float32: 14.0, torch.float16: 112.0}),
    (r"\bV100\b", {torch.float32: 15.7, torch.float16: 125.0}),  # SXM2
]


def peak_flops(device_name: str, dtype: torch.dtype) -> float | None:
    """Dense peak FLOP/s of a GPU (by its CUDA name) for a dtype; None when the GPU or the dtype is not known."""
    for pattern, peaks in PEAK_TFLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            peak = peaks.get(dtype)
            return peak * TERA if peak is not None else None
    return None


@dataclass(frozen=True)
class DeviceInfo:
    """The device as a report names it."""

    type: str  # "cpu" or "cuda"
    name: str  # "NVIDIA H100 80GB HBM3"; for the CPU its model and the threads torch uses
    total_memory: int | None  # bytes, CUDA only
    peak_flops: float | None  # dense FLOP/s for the dtype being profiled, where known


def describe_device(device: torch.device, dtype: torch.dtype) -> DeviceInfo:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return DeviceInfo("cuda", props.name, props.total_memory, peak_flops(props.name, dtype))
    threads = torch.get_num_threads()
    return DeviceInfo(device.type, f"{cpu_name()} ({threads} thread{'s' * (threads != 1)})", None, None)


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo on Linux, else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "CPU"


def available_memory(device: torch.device) -> tuple[int, str] | None:
    """Bytes free for new tensors on `device` now, and where, in words: the GPU's free memory, or the memory the
    kernel says it can give without swapping (MemAvailable); None on meta, or where the system does not say."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free, f"{device}'s free memory"
    if device.type != "cpu":
        return None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text(errors="replace").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "this machine's available memory"
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine's available memory"
    except (ValueError, OSError, AttributeError):
        return None
