"""The one way a model is opened: SOURCE → config (+ weight files) → model on a device, in a dtype → inputs at
concrete sizes, with the setup header that every result carries.

`summarize`, `profile`, `sweep`, `diagram_graph` and `compare` all start from a `Session`, so a source is
resolved once, the device and dtype are parsed once and the sizes are fixed once. Each kind of source opens
itself: a path or preset here, the user's own object in `sources.live`, diffusers' twin in `sources.twin`; a new
kind is added beside them, and every view has it.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from unetinspect.errors import RunError
from unetinspect.sources.controlnet_step import with_controlnets
from unetinspect.sources.inputs import InputSpec, check_sizes, make_inputs, refuse_unused_frames
from unetinspect.sources.live import live_session, open_live
from unetinspect.sources.loading import load_model, parse_device, parse_dtype
from unetinspect.sources.motion_adapter import resolve_motion_adapter, with_motion_adapter
from unetinspect.sources.resolve import Source, SourceLike, is_source_like, resolve_source
from unetinspect.sources.session import (
    AUTO_DTYPE,
    Session,
    Setup,
    SourceOrModel,
    dtype_name,
    source_pixel_factor,
)
from unetinspect.sources.twin import IMPLS, as_diffusers
from unetinspect.weights.block_names import naming_of

DEFAULT_SPEC = InputSpec()


def open_session(
    source: SourceOrModel = None,
    spec: InputSpec = DEFAULT_SPEC,
    *,
    device: str | torch.device | None = "meta",
    dtype: str | torch.dtype | None = None,
    impl: str = "ours",
    controlnets: tuple[SourceLike, ...] = (),
    motion_adapter: str | os.PathLike[str] | None = None,
    inputs: dict[str, Any] | None = None,
    **source_options: Any,
) -> Session:
    """Open `source` once: resolve it, parse `device` and `dtype`, fix the sizes, build or load the model, make
    its inputs.

    `device=None` picks CUDA when available, else the CPU; `dtype=None` is float32 and `"auto"` fp16 on CUDA,
    float32 elsewhere. `impl="diffusers"` runs diffusers' own `UNet2DConditionModel` with the same weights
    (diffusers must be installed). `source_options` are `resolve_source`'s: variant, config, allow_pickle.
    `controlnets` (ControlNet sources) make the step "ControlNets, then the UNet with their summed residuals"
    (`ControlledUNet`), each fed a conditioning image at pixel size. `motion_adapter` (a MotionAdapter folder or
    file) makes an image UNet the AnimateDiff UNet it animates, as diffusers' `UNetMotionModel.from_unet2d`. A
    `Session` is returned as it is, so every entry point can take one.

    `source` may also be the user's own model: our UNet, diffusers' UNet, a pipeline (its `.unet`), or any other
    `nn.Module` with `inputs=` (the keyword arguments of one call) — see `sources.live`.
    """
    if isinstance(source, Session):
        return source
    if impl not in IMPLS:
        raise RunError(f"unknown --impl {impl!r}", f"use {' or '.join(IMPLS)}")
    live = open_live(source, inputs=inputs)
    if live is not None and (controlnets or motion_adapter is not None):
        added = "--controlnet builds the step" if controlnets else "--motion-adapter builds the AnimateDiff UNet"
        raise RunError(f"{added} from sources; a live model is used as it is",
                       "give the UNet's source (a folder or file) with the add-on, or join them yourself")
    if live is not None:
        return live_session(live, spec, device=device, dtype=dtype, impl=impl)
    assert is_source_like(source)  # open_live opened the user's own model, and refused what is neither
    src = resolve_source(source, **source_options)
    if motion_adapter is not None:
        adapter = resolve_motion_adapter(motion_adapter, variant=source_options.get("variant"),
                                         allow_pickle=source_options.get("allow_pickle", False))
        src = with_motion_adapter(src, adapter)
    torch_device = parse_device(device)
    torch_dtype = _resolve_dtype(dtype, torch_device)
    sizes = spec.resolve(src.config, source_pixel_factor(src), src.family)
    refuse_unused_frames(spec, sizes)
    check_sizes(src.config, sizes, torch_device, torch_dtype, src.family)  # before minutes of loading, not after
    model = load_model(src, torch_device, torch_dtype) if impl == "ours" else _diffusers_model(src, torch_device,
                                                                                                torch_dtype)
    inputs = make_inputs(src.config, sizes, device=torch_device, dtype=torch_dtype, family=src.family)
    label, notes = src.label, src.notes
    controls: tuple[Source, ...] = ()
    if controlnets:
        if impl != "ours":
            raise RunError("--controlnet runs our models; leave out --impl diffusers")
        controls = tuple(resolve_source(c, allow_pickle=source_options.get("allow_pickle", False))
                         for c in controlnets)
        model, inputs = with_controlnets(model, inputs, src, controls, sizes, torch_device, torch_dtype)
        label = " + ".join([label, *(f"controlnet {c.label}" for c in controls)])
        notes += ("one step: the ControlNets, then the UNet with their residuals",)
    setup = Setup(
        label=label, kind=src.kind, model_type=type(model).__name__, impl=impl, device=str(torch_device),
        dtype=dtype_name(torch_dtype), sizes=sizes, weights=_weights_text(src, torch_device),
        weight_dtypes=src.weight_dtypes, notes=notes, naming=naming_of(src.config),
    )
    return Session(setup, model, inputs, src.config, src, torch_device, torch_dtype, spec, controls)


def _resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype == AUTO_DTYPE:
        return torch.float16 if device.type == "cuda" else torch.float32
    return parse_dtype(dtype) or torch.float32


def _weights_text(source: Source, device: torch.device) -> str:
    if not source.has_weights:
        return "no weights needed" if device.type == "meta" else "random weights"
    stored = "/".join(source.weight_dtypes) or "pickled"
    return f"weights {stored} (headers checked, not read)" if device.type == "meta" else f"weights {stored}"


def _diffusers_model(source: Source, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """diffusers' own model of a source's config, with the source's weights (ours, loaded then handed over)."""
    return as_diffusers(load_model(source, device, dtype), source.family)
