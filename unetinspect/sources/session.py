"""The one way a model is opened: SOURCE → config (+ weight files) → model on a device, in a dtype → inputs at
concrete sizes, with the setup header that every result carries.

`summarize`, `profile`, `sweep`, `diagram_graph` and `compare` all start from a `Session`, so a source is
resolved once, the device and dtype are parsed once and the sizes are fixed once; a new kind of source (or of
model: diffusers' own class) is added here, and every view has it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from unetinspect.sources.inputs import InputSpec, Sizes, check_sizes, infer_pixel_factor, make_inputs
from unetinspect.config import UNetConfig
from unetinspect.errors import RunError
from unetinspect.presets import PRESETS, pixel_factor
from unetinspect.sources.loading import load_model, parse_device, parse_dtype
from unetinspect.sources.resolve import Source, SourceLike, resolve_source

if TYPE_CHECKING:
    from unetinspect.sources.live import LiveModel

IMPLS = ("ours", "diffusers")
AUTO_DTYPE = "auto"  # fp16 on CUDA (how SD runs there), fp32 elsewhere (fp16 on a CPU is slow and partly missing)


@dataclass(frozen=True)
class Setup:
    """What was opened and how: the header every result carries and every view renders the same way."""

    label: str  # what was opened, as the user named it: "sdxl", "my-model/unet", "sdxl with config other.json"
    kind: str  # "preset" | "config" | "diffusers" | "single-file" | "module"
    model_type: str  # class name of the model that runs
    impl: str  # "ours" | "diffusers" | "user"
    device: str  # "meta", "cpu", "cuda:0"
    dtype: str  # the dtype the model runs in, e.g. "float32"
    sizes: Sizes
    weights: str  # "no weights needed" | "random weights" | "weights F16" | "weights F16 (headers checked)"
    weight_dtypes: tuple[str, ...] = ()  # what the weight files store, e.g. ("F16",); empty without files
    notes: tuple[str, ...] = ()


@dataclass
class Session:
    """An opened model, ready to run: itself, the inputs of one forward pass, and the setup header."""

    setup: Setup
    model: nn.Module
    inputs: dict[str, Any]  # keyword arguments: model(**inputs)
    config: UNetConfig | None
    source: Source | None
    device: torch.device
    dtype: torch.dtype
    spec: InputSpec
    controlnets: tuple[Source, ...] = ()  # the step is these ControlNets, then the UNet with their residuals
    live: LiveModel | None = None  # the user's own object, when that is what was opened (`model` may be its copy)

    @property
    def origin(self) -> object:
        """What to open again on another device or as another implementation: the source, or the user's object."""
        return self.live.module if self.live is not None else self.source

    def sizes_for(self, spec: InputSpec) -> Sizes:
        """What `spec` resolves to for this model (an error for a size it cannot take)."""
        factor = _pixel_factor(self.source) if self.source is not None else infer_pixel_factor(self.config)
        return spec.resolve(self.config, factor)

    def resized(self, spec: InputSpec) -> Session:
        """The same model at other sizes (a sweep's points): new inputs and sizes, nothing loaded again."""
        sizes = self.sizes_for(spec)
        inputs = make_inputs(self.config, sizes, device=self.device, dtype=self.dtype)
        if self.controlnets:  # one conditioning image per ControlNet, at the new pixel size
            inputs["controlnet_cond"] = [make_inputs(c.config, sizes, device=self.device, dtype=self.dtype)
                                         ["controlnet_cond"] for c in self.controlnets]
        return dataclasses.replace(self, setup=dataclasses.replace(self.setup, sizes=sizes), inputs=inputs,
                                   spec=spec)


def open_session(
    source: SourceLike | Session | None = None,
    spec: InputSpec = InputSpec(),
    *,
    device: str | torch.device | None = "meta",
    dtype: str | torch.dtype | None = None,
    impl: str = "ours",
    controlnets: tuple[SourceLike, ...] = (),
    inputs: dict[str, Any] | None = None,
    **source_options: Any,
) -> Session:
    """Open `source` once: resolve it, parse `device` and `dtype`, fix the sizes, build or load the model, make
    its inputs.

    `device=None` picks CUDA when available, else the CPU; `dtype=None` is float32 and `"auto"` fp16 on CUDA,
    float32 elsewhere. `impl="diffusers"` runs diffusers' own `UNet2DConditionModel` with the same weights
    (diffusers must be installed). `source_options` are `resolve_source`'s: variant, config, allow_pickle.
    `controlnets` (ControlNet sources) make the step "ControlNets, then the UNet with their summed residuals"
    (`ControlledUNet`), each fed a conditioning image at pixel size. A `Session` is returned as it is, so every
    entry point can take one.

    `source` may also be the user's own model: our UNet, diffusers' UNet, a pipeline (its `.unet`), or any other
    `nn.Module` with `inputs=` (the keyword arguments of one call) — see `sources.live`.
    """
    if isinstance(source, Session):
        return source
    if impl not in IMPLS:
        raise RunError(f"unknown --impl {impl!r}", f"use {' or '.join(IMPLS)}")
    from unetinspect.sources.live import live_session, open_live  # live.py builds on this module's types

    live = open_live(source, inputs=inputs)
    if live is not None and controlnets:
        raise RunError("--controlnet builds the step from sources; a live model brings no ControlNet of ours",
                       "give the UNet's source (a folder or file) with the ControlNets")
    if live is not None:
        return live_session(live, spec, device=device, dtype=dtype, impl=impl)
    src = resolve_source(source, **source_options)
    torch_device = parse_device(device)
    torch_dtype = _resolve_dtype(dtype, torch_device)
    sizes = spec.resolve(src.config, _pixel_factor(src))
    check_sizes(src.config, sizes, torch_device, torch_dtype)  # before minutes of loading, not after
    model = load_model(src, torch_device, torch_dtype) if impl == "ours" else _diffusers_model(src, torch_device,
                                                                                                torch_dtype)
    inputs = make_inputs(src.config, sizes, device=torch_device, dtype=torch_dtype)
    label, notes = src.label, ()
    controls: tuple[Source, ...] = ()
    if controlnets:
        if impl != "ours":
            raise RunError("--controlnet runs our models; leave out --impl diffusers")
        from unetinspect.sources.controlnet_step import with_controlnets

        controls = tuple(resolve_source(c, allow_pickle=source_options.get("allow_pickle", False))
                         for c in controlnets)
        model, inputs = with_controlnets(model, inputs, src.config, controls, sizes, torch_device, torch_dtype)
        label = " + ".join([label, *(f"controlnet {c.label}" for c in controls)])
        notes = ("one step: the ControlNets, then the UNet with their residuals",)
    setup = Setup(
        label=label, kind=src.kind, model_type=type(model).__name__, impl=impl, device=str(torch_device),
        dtype=dtype_name(torch_dtype), sizes=sizes, weights=_weights_text(src, torch_device),
        weight_dtypes=src.weight_dtypes, notes=notes,
    )
    return Session(setup, model, inputs, src.config, src, torch_device, torch_dtype, spec, controls)


def dtype_name(dtype: torch.dtype) -> str:
    """torch.float16 → "float16": how headings and JSON name a dtype."""
    return str(dtype).removeprefix("torch.")


def _resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype == AUTO_DTYPE:
        return torch.float16 if device.type == "cuda" else torch.float32
    return parse_dtype(dtype) or torch.float32


def _pixel_factor(source: Source | None) -> int | None:
    """A preset knows its family's factor; anything else has it told from its channels, where they tell."""
    if source is None:
        return None
    if source.kind == "preset" and source.config_origin is None and source.spec in PRESETS:
        return pixel_factor(source.spec)
    return infer_pixel_factor(source.config)


def _weights_text(source: Source, device: torch.device) -> str:
    if not source.has_weights:
        return "no weights needed" if device.type == "meta" else "random weights"
    stored = "/".join(source.weight_dtypes) or "pickled"
    return f"weights {stored} (headers checked, not read)" if device.type == "meta" else f"weights {stored}"


def _diffusers_model(source: Source, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """diffusers' own model of a source's config, with the source's weights (ours, loaded then handed over)."""
    from unetinspect.sources.live import as_diffusers

    return as_diffusers(load_model(source, device, dtype))
