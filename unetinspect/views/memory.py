"""The memory view: what running — or fine-tuning — a UNet will cost, measured on the meta device before anyone
rents the GPU.

Inference: the weights plus the most tensor bytes alive at once during one step (`peak_live_bytes`).
Training (`train=True`): one forward with grad enabled under saved-tensor hooks gives, per block, the bytes
autograd keeps for backward (`engine.memory.measure_saved`); the training choices (`Training`) change what is
measured the way the real thing does — checkpointing runs `torch.utils.checkpoint` on the modules diffusers'
`enable_gradient_checkpointing()` wraps, LoRA adds adapters and freezes the base, `--frozen` freezes parts, mixed
precision runs the forward in half — and the totals add what the optimizer keeps and what its step allocates
(`engine.optimizer_step`, torch's own optimizer run on meta). Attention runs the kernel the trainer's machine
runs (`engine.sdpa`: on meta, a CUDA GPU's, through the CUDA ops' meta functions). The rules are in
docs/measuring.md, "Training memory".
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unetinspect.engine import sdpa
from unetinspect.engine.hardware import available_memory
from unetinspect.engine.memory import (
    LoraBase,
    SavedCall,
    kohya_targets,
    lora_adapters,
    lora_targets,
    measure_saved,
    optimizer_state_bytes,
    peak_live_bytes,
)
from unetinspect.engine.optimizer_step import FUSED, default_foreach, step_temporary_bytes
from unetinspect.errors import OptionsError, RunError
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.live import left_as_found, live_module
from unetinspect.sources.loading import parse_device
from unetinspect.sources.open import open_session
from unetinspect.sources.session import Session, Setup, SourceOrModel
from unetinspect.views.profile import parse_sweep

OPTIMIZERS = ("adamw", "adamw-8bit", "sgd", "adafactor")
MIXED = {"fp16": "float16", "bf16": "bfloat16"}
DEFAULT_LORA_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")  # diffusers' train_*_lora.py scripts
KOHYA, LOCON = "kohya", "locon"  # --lora-targets naming kohya's sd-scripts selections (LoCon: the convs too)
MASTER_ITEMSIZE = 4  # mixed precision keeps fp32 master weights for the optimizer

# What diffusers' enable_gradient_checkpointing() runs through torch.utils.checkpoint: every resnet of the down,
# mid and up blocks (the mid block's first resnet excepted: its forward calls it before the checkpointed loop)
# and every transformer block inside a Transformer2DModel.
CHECKPOINTED = re.compile(r"(down_blocks|up_blocks)\.\d+\.resnets\.\d+|mid_block\.resnets\.[1-9]\d*"
                          r"|.+\.transformer_blocks\.\d+")


def diffusers_checkpointed(path: str, module: nn.Module) -> bool:  # noqa: ARG001  (measure_saved's signature)
    """Whether diffusers' gradient checkpointing wraps the module at `path`."""
    return CHECKPOINTED.fullmatch(path) is not None


@dataclass(frozen=True)
class Training:
    """How the model is fine-tuned; each choice changes the measurement as the real thing does."""

    optimizer: str = "adamw"
    checkpointing: bool = False
    mixed: str | None = None  # "fp16" | "bf16": half weights and activations, fp32 master weights
    lora_rank: int | None = None
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS  # PEFT's target_modules (Linear or Conv2d), or kohya/locon
    lora_conv_rank: int | None = None  # locon: the rank of 3×3 convolutions (kohya's conv_dim); None: lora_rank
    frozen: tuple[str, ...] = ()  # module path prefixes whose parameters get no gradient
    foreach: bool | None = None  # the optimizer's foreach implementation; None: torch's default on the device
    fused: bool = False  # the optimizer's fused kernel (AdamW, SGD)

    def check(self) -> None:
        """Refuse a choice that names nothing real, in one line with what to give instead."""
        if self.optimizer not in OPTIMIZERS:
            raise RunError(f"unknown --optimizer {self.optimizer!r}", f"use one of {', '.join(OPTIMIZERS)}")
        if self.mixed is not None and self.mixed not in MIXED:
            raise RunError(f"unknown --mixed {self.mixed!r}", f"use {' or '.join(MIXED)}")
        if self.lora_rank is not None and (isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int)
                                           or self.lora_rank < 1):
            raise RunError(f"--lora-rank {self.lora_rank!r} is not a positive integer", "e.g. --lora-rank 32")
        if self.fused and self.optimizer not in FUSED:
            raise RunError(f"--fused: torch has no fused {self.optimizer}", f"use it with {' or '.join(FUSED)}")
        if self.fused and self.foreach:
            raise RunError("--fused and --foreach are two implementations of the step", "give one of them")
        if self.lora_conv_rank is not None and (isinstance(self.lora_conv_rank, bool) or self.lora_conv_rank < 1
                                                or self.lora_targets != (LOCON,)):
            raise RunError(f"--lora-conv-rank {self.lora_conv_rank!r}: a positive rank, for --lora-targets locon",
                           "e.g. --lora-targets locon --lora-conv-rank 8")
        if self.lora_rank is not None and not [t for t in self.lora_targets if t.strip()]:
            raise RunError("--lora-targets names no module", "e.g. --lora-targets to_k,to_q,to_v,to_out.0")

    def step_impl(self, device_type: str) -> tuple[bool, str]:
        """Whether the step runs foreach, and how it runs, as a phrase (torch's default on the device when
        `foreach` is not given: foreach on CUDA, and on meta, which stands for it; a for-loop on the CPU)."""
        if self.optimizer not in FUSED + ("adafactor",):
            return False, "one kernel per parameter, in place"
        if self.fused:
            return False, "fused: in place, no temporaries"
        foreach = default_foreach(device_type) if self.foreach is None else self.foreach
        why = f" (torch's default on {'a CUDA GPU' if device_type == 'meta' else device_type})" \
            if self.foreach is None else ""
        return foreach, ("foreach: temporaries as large as all the trainable parameters" if foreach
                         else "for-loop: temporaries like one parameter or two") + why

    def describe(self) -> list[str]:
        """The choices as sentences under the table."""
        lines = [{"adamw": "AdamW: exp_avg and exp_avg_sq like each trainable parameter, and a step",
                  "adamw-8bit": "8-bit AdamW (bitsandbytes): 2 bytes a parameter + one fp32 absmax per 256 "
                                "per state; tensors under 4096 elements keep fp32 state",
                  "sgd": "SGD without momentum (torch's default): no state",
                  "adafactor": "Adafactor (torch.optim): row and column variances for ≥2-D parameters, "
                               "full ones below"}[self.optimizer]]
        if self.checkpointing:
            lines.append("gradient checkpointing as diffusers' enable_gradient_checkpointing(): resnets and "
                         "transformer blocks keep their inputs and are recomputed in backward")
        if self.mixed:
            lines.append(f"mixed precision {self.mixed}: weights and activations in {self.mixed}, fp32 master "
                         "weights and optimizer state")
        if self.lora_rank and self.lora_targets in ((KOHYA,), (LOCON,)):
            convs = (f"; LoCon: the resnets' and resamplers' layers too, 3×3 convolutions at rank "
                     f"{self.lora_conv_rank or self.lora_rank}") if self.lora_targets == (LOCON,) else ""
            lines.append(f"LoRA rank {self.lora_rank} as kohya's sd-scripts: the Linear and 1×1 Conv2d layers of "
                         f"the transformers{convs}; only the adapters are trained")
        elif self.lora_rank:
            lines.append(f"LoRA rank {self.lora_rank} on {', '.join(self.lora_targets)}: only the adapters "
                         "are trained")
        if self.frozen:
            lines.append(f"frozen: {', '.join(self.frozen)}")
        return lines


@dataclass(frozen=True)
class MemoryTotals:
    """Bytes of each part of a step; `peak_bytes` is the most alive at once (see docs/measuring.md)."""

    weight_bytes: int
    master_weight_bytes: int = 0
    gradient_bytes: int = 0
    optimizer_bytes: int = 0
    activation_bytes: int = 0  # training: saved for backward; inference: the most alive at once
    recompute_bytes: int = 0  # checkpointing: the largest segment's recompute, held during its backward
    step_bytes: int = 0  # the optimizer step's temporaries, measured on torch's own optimizer
    peak_bytes: int = 0
    trainable_params: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass
class Memory:
    """One source's memory at one size: per module call (training) and the totals."""

    setup: Setup
    training: Training | None  # None: inference
    calls: list[SavedCall]
    totals: MemoryTotals
    notes: list[str] = field(default_factory=list)
    attention: str = "math"  # the attention kernel measured
    peak_at: str = ""  # where the peak falls: "optimizer step", "backward at down_blocks.1.resnets.0", "forward"

    def rows(self, depth: int = 1) -> list[SavedCall]:
        """The calls down to `depth` (1 = blocks), in call order."""
        return [call for call in self.calls[1:] if call.depth <= depth]


def memory(
    source: SourceOrModel = None,
    spec: InputSpec = InputSpec(),
    *,
    train: bool = False,
    training: Training = Training(),
    attention: str | None = None,
    device: str = "meta",
    dtype: str | torch.dtype | None = None,
    **source_options: Any,
) -> Memory:
    """Open the source (on the meta device by default) and measure one inference or training step's memory.

    `attention` is the kernel attention runs ("flash", "efficient", "math"); None: the one torch runs for training
    on the device (on meta: a CUDA GPU's). With `training.mixed` the forward runs in that half dtype (an explicit
    different `dtype` is refused). Off the meta device the step is first measured on meta: one that will not fit in
    the device's free memory is refused with that prediction, before anything is allocated."""
    if _off_meta(source, device):
        predicted = memory(source, spec, train=train, training=training, attention=attention, device="meta",
                           dtype=dtype, **source_options).totals.peak_bytes
        _refuse_beyond_memory(predicted, device)
    session = _open(source, spec, train, training, device, dtype, source_options, attention)
    with _allocation_failure(session):
        return memory_of(session, training if train else None, attention)


def _open(source: SourceOrModel, spec: InputSpec, train: bool, training: Training, device: str,
          dtype: str | torch.dtype | None, source_options: dict[str, Any], attention: str | None = None
          ) -> Session:
    """The session a memory measurement runs on: in the half dtype of `--mixed`, after the choices are checked
    (a bad option fails before the model is built)."""
    if attention is not None:
        sdpa.check(attention, str(device).split(":")[0])
    training.check()
    if not train and training != Training():
        chosen = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(Training)
                  if getattr(training, f.name) != f.default]
        raise RunError(f"{', '.join(chosen)} {'is a choice' if len(chosen) == 1 else 'are choices'} of a training "
                       "step, and none is measured", "add --train (train=True)")
    if train:
        if training.mixed is not None:
            named = None if dtype is None else str(dtype).removeprefix("torch.")
            if named not in (None, "fp32", "float32", training.mixed, MIXED[training.mixed]):
                raise RunError(f"--mixed {training.mixed} runs the forward in {training.mixed}, not --dtype "
                               f"{dtype}", "leave out --dtype")
            dtype = training.mixed
    return open_session(source, spec, device=device, dtype=dtype, **source_options)


def memory_of(session: Session, training: Training | None, attention: str | None = None) -> Memory:
    """The memory of an opened session: inference when `training` is None; attention as `attention` runs it
    (None: the kernel torch runs for training on the session's device)."""
    model = session.model
    device_type = session.device.type
    kernel, rule = sdpa.training_kernel(device_type, session.dtype)
    if attention is not None:
        kernel, rule = attention, "as asked"
    notes = [f"attention: {sdpa.describe(kernel, device_type)} — {rule}"]
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with left_as_found(model), sdpa.attention_kernel(kernel, device_type):
        if training is None:
            activations = peak_live_bytes(model.eval(), session.inputs)
            totals = MemoryTotals(weight_bytes, activation_bytes=activations, peak_bytes=weight_bytes + activations)
            return Memory(session.setup, None, [], totals, notes, kernel, "forward")
        model.train()
        with _trainable(model, training) as extra:
            saved = measure_saved(model, session.inputs, extra_params=extra,
                                  checkpointed=diffusers_checkpointed if training.checkpointing else None)
            trainable = [p for p in model.parameters() if p.requires_grad] + [p for ps in extra.values()
                                                                                for p in ps]
    master = MASTER_ITEMSIZE if training.mixed else None
    states = optimizer_state_bytes(training.optimizer,
                                   [(p.shape, master or p.element_size()) for p in trainable])
    foreach, step_note = training.step_impl(device_type)
    step_dtype = torch.float32 if master else None
    step = step_temporary_bytes(training.optimizer, [(p.shape, step_dtype or p.dtype) for p in trainable],
                                foreach=foreach, fused=training.fused)
    extra_weights = sum(p.numel() * p.element_size() for ps in extra.values() for p in ps)
    totals = MemoryTotals(
        weight_bytes=weight_bytes + extra_weights,
        master_weight_bytes=sum(p.numel() for p in trainable) * master if master else 0,
        gradient_bytes=sum(p.numel() * p.element_size() for p in trainable),
        optimizer_bytes=states,
        activation_bytes=saved.total_bytes,
        recompute_bytes=max((nbytes for _, _, nbytes in saved.segments), default=0),
        step_bytes=step,
        trainable_params=sum(p.numel() for p in trainable),
        peak_bytes=0,
    )
    held = totals.weight_bytes + totals.master_weight_bytes + totals.optimizer_bytes
    backward, tick = saved.backward_peak_at()
    in_step = held + totals.gradient_bytes + step
    peak_at = "optimizer step" if in_step >= held + backward else _backward_at(saved.calls, tick)
    notes.append(f"optimizer step: {step_note}")
    return Memory(session.setup, training, saved.calls,
                  dataclasses.replace(totals, peak_bytes=max(held + backward, in_step)), notes, kernel, peak_at)


def _backward_at(calls: Sequence[SavedCall], tick: int) -> str:
    """"backward at BLOCK": the block (depth 1) of the module call that began at `tick`."""
    if not 0 < tick <= len(calls):
        return "backward"
    call = calls[tick - 1]
    while call.depth > 1 and call.parent is not None:
        call = calls[call.parent]
    return f"backward at {call.path}" if call.path else "backward"


@contextlib.contextmanager
def _trainable(model: nn.Module, training: Training) -> Iterator[dict[str, list[nn.Parameter]]]:
    """The model's grad flags as the training choice sets them (restored by the caller's `left_as_found`), and
    the LoRA adapters by the path of the Linear they sit on."""
    for param in model.parameters():
        param.requires_grad_(training.lora_rank is None)
    for prefix in training.frozen:
        matched = [p for name, p in model.named_parameters() if name.startswith(prefix + ".")]
        if not matched:
            raise RunError(f"--frozen {prefix!r} names no module of the model", "give a module path prefix, "
                           "e.g. down_blocks.0 or conv_in (see `unetinspect summary --depth 2`)")
        for param in matched:
            param.requires_grad_(False)
    if training.lora_rank is None:
        yield {}
        return
    targets = [t.strip() for t in training.lora_targets if t.strip()]
    rank = training.lora_rank
    if targets in ([KOHYA], [LOCON]):
        conv_rank = (training.lora_conv_rank or rank) if targets == [LOCON] else None
        found = kohya_targets(model, rank, conv_rank)
    else:
        found = [(path, module, rank) for path, module in lora_targets(model, targets)]
    if not found:
        raise RunError(f"--lora-targets {','.join(targets)!r} match no module of the model",
                       "give module names as PEFT's target_modules, e.g. to_k,to_q,to_v,to_out.0, or kohya/locon")
    layers: list[tuple[str, LoraBase, int]] = []
    for path, module, layer_rank in found:
        if not isinstance(module, nn.Linear | nn.Conv2d):
            raise RunError(f"--lora-targets picks {path!r}, a {type(module).__name__}",
                           "LoRA is measured on Linear and Conv2d layers: name those, e.g. to_k,to_q,to_v,to_out.0")
        layers.append((path, module, layer_rank))
    with lora_adapters(model, layers) as adapters:
        yield adapters


# ---- over sizes, against a budget ------------------------------------------------------------------------------

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """"24GiB", "24 GB", "80e9" → bytes (GiB binary, GB decimal, as GPU makers and nvidia-smi differ)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
    # 1e400 reads as float infinity, which no int holds
    if match is None or match.group(2) not in UNITS or not 0 < float(match.group(1)) < math.inf:
        raise RunError(f"cannot read --budget {text!r}", "give a size such as 24GiB, 80GB or 16e9")
    return int(float(match.group(1)) * UNITS[match.group(2)])


@dataclass
class MemorySweep:
    """The totals over several sizes, and where the peak crosses the budget."""

    setup: Setup  # sized as the first point
    training: Training | None
    points: list[tuple[str, MemoryTotals]]
    budget: int | None

    @property
    def first_over(self) -> str | None:
        """The first point whose peak is over the budget."""
        if self.budget is None:
            return None
        return next((label for label, totals in self.points if totals.peak_bytes > self.budget), None)


def sweeping(sweep: str | None, budget: str | int | None) -> bool:
    """Whether `memory` measures over sizes (`--sweep`); a `--budget` is checked over sizes, so it needs one."""
    if budget is not None and sweep is None:
        raise OptionsError("--budget: a budget is checked over sizes", "add --sweep, e.g. --sweep batch=1,2,4")
    return sweep is not None


def memory_sweep(
    source: SourceOrModel,
    specs: Sequence[tuple[str, InputSpec]] | str,
    *,
    spec: InputSpec = InputSpec(),
    budget: int | str | None = None,
    train: bool = False,
    training: Training = Training(),
    attention: str | None = None,
    device: str = "meta",
    dtype: str | torch.dtype | None = None,
    **source_options: Any,
) -> MemorySweep:
    """`memory` at each of `specs` (see `views.profile.parse_sweep`), the model opened once; off meta, refused
    before allocating where the meta measurement of its largest point will not fit (as `memory`). `specs` and
    `budget` may be given as the command line writes them ("batch=1,2,4" around `spec`, "24GiB")."""
    if isinstance(specs, str):
        specs = parse_sweep(specs, spec)
    if isinstance(budget, str):
        budget = parse_bytes(budget)
    if _off_meta(source, device):
        predicted = memory_sweep(source, specs, train=train, training=training, attention=attention, device="meta",
                                 dtype=dtype, **source_options)
        _refuse_beyond_memory(max(totals.peak_bytes for _, totals in predicted.points), device)
    session = _open(source, specs[0][1], train, training, device, dtype, source_options, attention)
    chosen = training if train else None
    with _allocation_failure(session):
        points = [(label, memory_of(session.resized(spec) if index else session, chosen, attention).totals)
                  for index, (label, spec) in enumerate(specs)]
    return MemorySweep(session.setup, chosen, points, budget)


def _off_meta(source: Any, device: str | torch.device | None) -> bool:
    """Whether the measurement allocates real tensors on a device that a meta run can predict: a source we open
    (the user's own object is already where it is, and has no meta twin to run first)."""
    return (parse_device(device).type != "meta" and not isinstance(source, Session)
            and live_module(source) is None)


def _refuse_beyond_memory(predicted: int, device: str | torch.device | None) -> None:
    """Refuse a step whose measured peak exceeds the device's free memory: Linux would promise the memory and kill
    the process when it is touched (a CUDA device fails minutes later, mid-run)."""
    free = available_memory(parse_device(device))
    if free is not None and predicted > free[0]:
        raise RunError(f"this step needs {_gib(predicted)} at its peak (measured on the meta device), more than "
                       f"{free[1]} ({_gib(free[0])})", "lower --batch or the size, add --checkpointing or "
                       "--mixed, or measure on --device meta")


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.1f} GiB"


@contextlib.contextmanager
def _allocation_failure(session: Session) -> Iterator[None]:
    """A failed allocation (what the prediction did not foresee: another process took the memory) as a one-line
    `RunError`, not torch's RuntimeError."""
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc):  # the CPU's words
            raise RunError(f"out of memory measuring the step on {session.device}",
                           "lower --batch or the size, or measure on --device meta") from None
        raise
