"""What an opened model is: `Session` (the model, the inputs of one forward, the setup header) and `Setup`.

A leaf of `sources`: every kind of source opens itself into these types (`sources.open` for a path or preset,
`sources.live` for the user's own object), and every view reads them; nothing here opens anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from unetinspect.engine.trace import Trace
from unetinspect.errors import RunError
from unetinspect.families import Family, FamilyConfig, Sizes
from unetinspect.presets import PRESETS, pixel_factor
from unetinspect.sources.inputs import InputSpec, infer_pixel_factor, make_inputs
from unetinspect.sources.resolve import Source, SourceLike
from unetinspect.weights.block_names import Naming

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
    # the model's modules by their original (LDM) names and LoRA Block Weight IDs, for `--names`; None where the
    # family has no original layout (views refuse --names ldm|lbw then)
    naming: Naming | None = field(default=None, compare=False, repr=False)


class LiveSource(Protocol):
    """The user's own object behind a session, as the session and the views read it (`sources.live.LiveModel`
    is the one kind): declared here, so that the types of an opened model import nothing that opens one."""

    module: nn.Module
    family: Family[Any] | None  # settled once, when the object was opened

    def structure_trace(self, spec: InputSpec | Sizes) -> Trace: ...


@dataclass
class Session:
    """An opened model, ready to run: itself, the inputs of one forward pass, and the setup header."""

    setup: Setup
    model: nn.Module
    inputs: dict[str, Any]  # keyword arguments: model(**inputs)
    config: FamilyConfig | None
    source: Source | None
    device: torch.device
    dtype: torch.dtype
    spec: InputSpec
    controlnets: tuple[Source, ...] = ()  # the step is these ControlNets, then the UNet with their residuals
    live: LiveSource | None = None  # the user's own object, when that is what was opened (`model` may be its copy)

    @property
    def family(self) -> Family[Any] | None:
        """The family of the opened model, settled once when its source was opened (None for a module of no
        family of ours)."""
        return self.source.family if self.source is not None else self.live.family if self.live is not None else None

    @property
    def origin(self) -> Source | nn.Module | None:
        """What to open again on another device or as another implementation: the source, or the user's object."""
        return self.live.module if self.live is not None else self.source

    def sizes_for(self, spec: InputSpec) -> Sizes:
        """What `spec` resolves to for this model (an error for a size it cannot take)."""
        config = self._config_to_size()
        factor = source_pixel_factor(self.source) if self.source is not None else infer_pixel_factor(config)
        return spec.resolve(config, factor, self.family)

    def resized(self, spec: InputSpec) -> Session:
        """The same model at other sizes (a sweep's points): new inputs and sizes, nothing loaded again."""
        sizes = self.sizes_for(spec)
        inputs = make_inputs(self._config_to_size(), sizes, device=self.device, dtype=self.dtype, family=self.family)
        if self.controlnets:  # one conditioning image per ControlNet, at the new pixel size
            inputs["controlnet_cond"] = [make_inputs(c.config, sizes, device=self.device, dtype=self.dtype,
                                                     family=c.family)["controlnet_cond"] for c in self.controlnets]
        return dataclasses.replace(self, setup=dataclasses.replace(self.setup, sizes=sizes), inputs=inputs,
                                   spec=spec)

    def _config_to_size(self) -> FamilyConfig:
        """The config other sizes are resolved and made from. A live module of no family of ours has none: the
        `inputs=` it was opened with are the one size it has."""
        if self.config is None:
            raise RunError(f"a {self.setup.model_type} has no UNet config to make inputs of other sizes from: the "
                           "inputs= it was opened with are its one size",
                           "measure each size in a call of its own, with inputs= of that size")
        return self.config


# What `open_session` and every view open: a source (`SourceLike`: a preset, a path, a config, a `Source`), a
# `Session` already open (taken as it is), the user's own model (`sources.live`), or None (the default preset). A
# pipeline is taken too, for its `.unet`, but no type names it: a pipeline declares its parts at run time.
SourceOrModel = SourceLike | Session | nn.Module | None


def dtype_name(dtype: torch.dtype) -> str:
    """torch.float16 → "float16": how headings and JSON name a dtype."""
    return str(dtype).removeprefix("torch.")


def source_pixel_factor(source: Source | None) -> int | None:
    """A pipeline's VAE tells its factor and a preset knows its family's; anything else has it told from its
    channels, where they tell."""
    if source is None:
        return None
    if source.pixel_factor is not None:
        return source.pixel_factor
    if source.kind == "preset" and source.config_origin is None and source.spec in PRESETS:
        return pixel_factor(source.spec)
    return infer_pixel_factor(source.config)
