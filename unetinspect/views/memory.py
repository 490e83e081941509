"""The memory view: what running — or fine-tuning — a UNet will cost, measured on the meta device before anyone
rents the GPU.

Inference: the weights plus the most tensor bytes alive at once during one step (`peak_live_bytes`).
Training (`train=True`): one forward with grad enabled under saved-tensor hooks gives, per block, the bytes
autograd keeps for backward (`engine.memory.measure_saved`); the training choices (`Training`) change what is
measured the way the real thing does — checkpointing runs `torch.utils.checkpoint` on the modules diffusers'
`enable_gradient_checkpointing()` wraps, LoRA adds adapters and freezes the base, `--frozen` freezes parts, mixed
precision runs the forward in half — and the totals add what the optimizer keeps. The rules are in
docs/measuring.md, "Training memory".
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unetinspect.engine.memory import (
    SavedCall,
    lora_adapters,
    lora_targets,
    measure_saved,
    optimizer_state_bytes,
    peak_live_bytes,
)
from unetinspect.errors import OptionsError, RunError
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.live import left_as_found
from unetinspect.sources.open import open_session
from unetinspect.sources.resolve import Source
from unetinspect.sources.session import Session, Setup
from unetinspect.views.profile import parse_sweep

OPTIMIZERS = ("adamw", "adamw-8bit", "sgd", "adafactor")
MIXED = {"fp16": "float16", "bf16": "bfloat16"}
DEFAULT_LORA_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")  # diffusers' train_*_lora.py scripts
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
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    frozen: tuple[str, ...] = ()  # module path prefixes whose parameters get no gradient

    def check(self) -> None:
        """Refuse a choice that names nothing real, in one line with what to give instead."""
        if self.optimizer not in OPTIMIZERS:
            raise RunError(f"unknown --optimizer {self.optimizer!r}", f"use one of {', '.join(OPTIMIZERS)}")
        if self.mixed is not None and self.mixed not in MIXED:
            raise RunError(f"unknown --mixed {self.mixed!r}", f"use {' or '.join(MIXED)}")
        if self.lora_rank is not None and (isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int)
                                           or self.lora_rank < 1):
            raise RunError(f"--lora-rank {self.lora_rank!r} is not a positive integer", "e.g. --lora-rank 32")
        if self.lora_rank is not None and not [t for t in self.lora_targets if t.strip()]:
            raise RunError("--lora-targets names no module", "e.g. --lora-targets to_k,to_q,to_v,to_out.0")

    def describe(self) -> list[str]:
        """The choices as sentences under the table."""
        lines = [{"adamw": "AdamW: exp_avg and exp_avg_sq like each trainable parameter, and a step",
                  "adamw-8bit": "8-bit AdamW (bitsandbytes): 2 bytes a parameter + one fp32 absmax per 2048 "
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
        if self.lora_rank:
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

    def rows(self, depth: int = 1) -> list[SavedCall]:
        """The calls down to `depth` (1 = blocks), in call order."""
        return [call for call in self.calls[1:] if call.depth <= depth]


def memory(
    source: str | Path | Source | Session | None = None,
    spec: InputSpec = InputSpec(),
    *,
    train: bool = False,
    training: Training = Training(),
    device: str = "meta",
    dtype: str | torch.dtype | None = None,
    **source_options: Any,
) -> Memory:
    """Open the source (on the meta device by default) and measure one inference or training step's memory.

    With `training.mixed` the forward runs in that half dtype (an explicit different `dtype` is refused)."""
    session = _open(source, spec, train, training, device, dtype, source_options)
    return memory_of(session, training if train else None)


def _open(source: Any, spec: InputSpec, train: bool, training: Training, device: str,
          dtype: str | torch.dtype | None, source_options: dict[str, Any]) -> Session:
    """The session a memory measurement runs on: in the half dtype of `--mixed`, after the choices are checked
    (a bad option fails before the model is built)."""
    if train:
        training.check()
        if training.mixed is not None:
            named = None if dtype is None else str(dtype).removeprefix("torch.")
            if named not in (None, "fp32", "float32", training.mixed, MIXED[training.mixed]):
                raise RunError(f"--mixed {training.mixed} runs the forward in {training.mixed}, not --dtype "
                               f"{dtype}", "leave out --dtype")
            dtype = training.mixed
    return open_session(source, spec, device=device, dtype=dtype, **source_options)


def memory_of(session: Session, training: Training | None) -> Memory:
    """The memory of an opened session: inference when `training` is None."""
    model = session.model
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with left_as_found(model):
        if training is None:
            activations = peak_live_bytes(model.eval(), session.inputs)
            totals = MemoryTotals(weight_bytes, activation_bytes=activations, peak_bytes=weight_bytes + activations)
            return Memory(session.setup, None, [], totals, ["attention as the math kernel runs it: flash or "
                                                            "memory-efficient kernels keep no attention matrix"])
        model.train()
        with _trainable(model, training) as extra:
            saved = measure_saved(model, session.inputs, extra_params=extra,
                                  checkpointed=diffusers_checkpointed if training.checkpointing else None)
            trainable = [p for p in model.parameters() if p.requires_grad] + [p for ps in extra.values()
                                                                                for p in ps]
    master = MASTER_ITEMSIZE if training.mixed else None
    states = optimizer_state_bytes(training.optimizer,
                                   [(p.shape, master or p.element_size()) for p in trainable])
    extra_weights = sum(p.numel() * p.element_size() for ps in extra.values() for p in ps)
    totals = MemoryTotals(
        weight_bytes=weight_bytes + extra_weights,
        master_weight_bytes=sum(p.numel() for p in trainable) * master if master else 0,
        gradient_bytes=sum(p.numel() * p.element_size() for p in trainable),
        optimizer_bytes=states,
        activation_bytes=saved.total_bytes,
        recompute_bytes=max((nbytes for _, _, nbytes in saved.segments), default=0),
        trainable_params=sum(p.numel() for p in trainable),
        peak_bytes=0,
    )
    held = totals.weight_bytes + totals.master_weight_bytes + totals.optimizer_bytes
    peak = max(held + saved.backward_peak(), held + totals.gradient_bytes)
    notes = ["attention as the math kernel runs it (on meta and the CPU): flash or memory-efficient kernels on a "
             "GPU save no attention matrix"]
    return Memory(session.setup, training, saved.calls, dataclasses.replace(totals, peak_bytes=peak), notes)


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
    found = lora_targets(model, targets)
    if not found:
        raise RunError(f"--lora-targets {','.join(targets)!r} match no module of the model",
                       "give module names as PEFT's target_modules, e.g. to_k,to_q,to_v,to_out.0")
    linears = [(path, m) for path, m in found if isinstance(m, nn.Linear)]
    not_linear = next(((path, m) for path, m in found if not isinstance(m, nn.Linear)), None)
    if not_linear is not None:
        raise RunError(f"--lora-targets picks {not_linear[0]!r}, a {type(not_linear[1]).__name__}",
                       "LoRA is measured on Linear layers: name Linear modules, e.g. to_k,to_q,to_v,to_out.0")
    with lora_adapters(model, linears, training.lora_rank) as adapters:
        yield adapters


# ---- over sizes, against a budget ------------------------------------------------------------------------------

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """"24GiB", "24 GB", "80e9" → bytes (GiB binary, GB decimal, as GPU makers and nvidia-smi differ)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
    if match is None or match.group(2) not in UNITS or float(match.group(1)) <= 0:
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
    source: str | Path | Source | Session | None,
    specs: Sequence[tuple[str, InputSpec]] | str,
    *,
    spec: InputSpec = InputSpec(),
    budget: int | str | None = None,
    train: bool = False,
    training: Training = Training(),
    device: str = "meta",
    dtype: str | torch.dtype | None = None,
    **source_options: Any,
) -> MemorySweep:
    """`memory` at each of `specs` (see `views.profile.parse_sweep`), the model opened once. `specs` and `budget`
    may be given as the command line writes them ("batch=1,2,4" around `spec`, "24GiB")."""
    if isinstance(specs, str):
        specs = parse_sweep(specs, spec)
    if isinstance(budget, str):
        budget = parse_bytes(budget)
    session = _open(source, specs[0][1], train, training, device, dtype, source_options)
    chosen = training if train else None
    points = [(label, memory_of(session.resized(spec) if index else session, chosen).totals)
              for index, (label, spec) in enumerate(specs)]
    return MemorySweep(session.setup, chosen, points, budget)
