"""The model the user already holds — `pipe.unet`, a fine-tune in a training script, any `nn.Module` — as a source,
and diffusers' own class as a second implementation of any source (`--impl diffusers`).

A live object is never changed by looking at it: it is not moved, converted or re-initialised, and what a view
must change to time it (eval mode, hooks) is put back as it was found (`left_as_found`). A summary does not run it
at all when its class can be rebuilt from its config (ours, diffusers'): a copy is built on the meta device and
traced instead, so `summarize(pipe.unet)` costs no GPU time and no memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from unetinspect.engine.trace import Trace, trace_model
from unetinspect.errors import RunError
from unetinspect.families import Family, FamilyConfig, Sizes, family_of_object
from unetinspect.sources.inputs import InputSpec, infer_pixel_factor, make_inputs, refuse_unused_frames
from unetinspect.sources.loading import build_model, parse_device, parse_dtype
from unetinspect.sources.resolve import SOURCE_KINDS, is_source_like, not_a_source
from unetinspect.sources.session import AUTO_DTYPE, Session, Setup, dtype_name
from unetinspect.sources.twin import as_diffusers
from unetinspect.weights.block_names import naming_of

IMPLS = ("ours", "diffusers")
REBUILT_NOTE = "traced on a meta-device copy rebuilt from its config: your model was not run"


def live_module(obj: object) -> nn.Module | None:
    """The model a live source stands for: an `nn.Module` itself, or a pipeline's `.unet`; None for a source
    that `resolve_source` resolves (a preset, a path, a config dict, a `Source`)."""
    if is_source_like(obj):
        return None
    if isinstance(obj, nn.Module):
        return obj
    unet = getattr(obj, "unet", None)
    if isinstance(unet, nn.Module):
        return unet
    raise not_a_source(obj, accepted=(*SOURCE_KINDS, "an nn.Module (e.g. pipe.unet)", "a pipeline that has .unet"))


def config_of(module: nn.Module, family: Family[Any] | None = None) -> FamilyConfig | None:
    """The config of our model or of diffusers' own, as its family's config class (diffusers' `.config` read as
    its config.json is); None for any other module. `family`: the module's, when the caller has settled it."""
    family = family or family_of_object(module)
    return family.config_of(module) if family is not None else None


def placement(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where the module's weights live and in what dtype (the first floating tensor's); CPU/fp32 without any."""
    tensors = [*module.parameters(), *module.buffers()]
    floating = next((t for t in tensors if t.is_floating_point()), None)
    device = tensors[0].device if tensors else torch.device("cpu")
    return device, floating.dtype if floating is not None else torch.float32


@dataclass
class LiveModel:
    """A live module opened as a source: the object itself, its family and config where it has them (settled
    once, when it is opened), and where it lives."""

    module: nn.Module
    family: Family[Any] | None  # None: a module of no family of ours (it brings its own inputs=)
    config: FamilyConfig | None  # its family's config
    label: str
    device: torch.device
    dtype: torch.dtype
    user_inputs: dict[str, Any] | None = None

    def inputs(self, spec: InputSpec | Sizes, device: torch.device | None = None) -> dict[str, Any]:
        """The user's own `inputs=` (as they are; as meta tensors for the meta device), else inputs made from the
        config, on the module's device (or `device`) and in its dtype."""
        if self.user_inputs is not None:
            return _on_meta(self.user_inputs) if device is not None and device.type == "meta" else self.user_inputs
        return make_inputs(self._config(), spec, device=device or self.device, dtype=self.dtype, family=self.family)

    def sizes(self, spec: InputSpec) -> Sizes:
        """The sizes of one pass: resolved from the config, or read off the user's `inputs=` (no pixel size)."""
        if self.user_inputs is None:
            config = self._config()
            return spec.resolve(config, infer_pixel_factor(config), self.family)
        return sizes_of_call(self.user_inputs)

    def _config(self) -> FamilyConfig:
        """The config inputs are made from; a module of no family of ours has none, and must bring its own."""
        if self.config is None:
            raise RunError(f"a {type(self.module).__name__} has no UNet config to make inputs from",
                           "pass inputs={...}: the keyword arguments of one forward call")
        return self.config

    def meta_copy(self) -> nn.Module | None:
        """The same model rebuilt from its config on the meta device (no memory), when its class can be rebuilt
        and the copy has the very parameters of the object (an adapter injected after loading would not be)."""
        if self.config is None:
            return None
        if not self.is_diffusers:
            copy = build_model(self.config, self.dtype, family=self.family)
        else:
            # diffusers' own class (is_diffusers): its `from_config` is diffusers' ConfigMixin's, which nothing
            # here imports to type it
            diffusers_class: Any = type(self.module)
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                copy = diffusers_class.from_config(self.module.config).eval()
            # not diffusers' own .to, which logs about fp32 modules; the device too, since a few of diffusers'
            # parameters are made with the legacy torch.Tensor([...]), which ignores the meta context (SVD's mixers)
            nn.Module.to(copy, torch.device("meta"), self.dtype)
        return copy if _shapes(copy) == _shapes(self.module) else None

    @property
    def is_diffusers(self) -> bool:
        """Whether the object is diffusers' own model of one of our families."""
        return self.family is not None and self.family.is_diffusers_object(self.module)

    @property
    def impl(self) -> str:
        """How a setup names the implementation the object is: ours, diffusers', or the user's own class."""
        return "user" if self.family is None else "diffusers" if self.is_diffusers else "ours"

    def structure_trace(self, spec: InputSpec | Sizes) -> Trace:
        """The call tree, parameters and FLOPs of one pass: traced on the meta copy when there is one (the object
        is not run), else on the object itself under `no_grad`, where it is, in eval mode (restored after)."""
        copy = self.meta_copy()
        if copy is not None:
            trace = trace_model(copy, self.inputs(spec, torch.device("meta")))
            trace.model_type = type(self.module).__name__
            return trace
        with left_as_found(self.module):
            self.module.eval()
            return trace_model(self.module, self.inputs(spec))


def open_live(obj: object, *, inputs: dict[str, Any] | None = None) -> LiveModel | None:
    """A `LiveModel` for a live source; None for a source named by text or path."""
    module = live_module(obj)
    if inputs is not None and not (isinstance(inputs, Mapping) and all(isinstance(k, str) for k in inputs)):
        raise RunError(f"inputs= is a {type(inputs).__name__}, not the keyword arguments of one forward call",
                       "pass a dict such as {'sample': ..., 'timestep': ..., 'encoder_hidden_states': ...}")
    if module is None:
        if inputs is not None:
            raise RunError("inputs= is for a live module", "a preset or a file makes its inputs from its config")
        return None
    device, dtype = placement(module)
    name = type(module).__name__ + (f" of {type(obj).__name__}" if obj is not module else "")
    family = family_of_object(module)  # the one time a live source's family is asked for
    return LiveModel(module, family, config_of(module, family), f"{name} (your object)", device, dtype, inputs)


def live_session(live: LiveModel, spec: InputSpec, *, device: str | torch.device | None,
                 dtype: str | torch.dtype | None, impl: str) -> Session:
    """A session over the user's own object. On the meta device (a summary, a diagram) its meta copy, when it has
    one — else the object itself, where it is; on any other device the object itself, which is never moved or
    converted: a device or dtype other than its own is an error. `device`/`dtype` None or "auto" mean its own."""
    want_meta = device is not None and device != "auto" and parse_device(device).type == "meta"
    if not want_meta:
        _refuse_moving(live, device, dtype)
    elif dtype not in (None, AUTO_DTYPE) and parse_dtype(dtype) != live.dtype:
        _refuse_moving(live, None, dtype)
    if impl == "diffusers":
        live = as_diffusers_model(live)
    model, notes = live.module, ()
    if want_meta:
        copy = live.meta_copy()
        if copy is not None:
            model, notes = copy, (REBUILT_NOTE,)
        else:
            notes = (f"traced the object itself on {live.device}",)
    run_device = torch.device("meta") if model is not live.module else live.device
    sizes = live.sizes(spec)
    if live.user_inputs is None:  # the user's own call has its sizes, whatever spec says
        refuse_unused_frames(spec, sizes)
    setup = Setup(label=live.label, kind="module", model_type=type(live.module).__name__, impl=live.impl,
                  device=str(run_device), dtype=dtype_name(live.dtype), sizes=sizes, weights="its own weights",
                  notes=notes, naming=naming_of(live.config))
    return Session(setup, model, live.inputs(sizes, run_device), live.config, None, run_device, live.dtype, spec,
                   live=live)


def impl_of(module: nn.Module) -> str:
    """How a setup names the implementation a module is: ours, diffusers', or the user's own class."""
    family = family_of_object(module)
    return "user" if family is None else "diffusers" if family.is_diffusers_object(module) else "ours"


def _refuse_moving(live: LiveModel, device: str | torch.device | None, dtype: str | torch.dtype | None) -> None:
    """A live model runs where it is: asking for another device or dtype is an error, not a silent move."""
    wanted_device = live.device if device is None or device == "auto" else parse_device(device)
    wanted_dtype = live.dtype if dtype is None or dtype == AUTO_DTYPE else parse_dtype(dtype)
    same_device = (wanted_device.type, wanted_device.index or 0) == (live.device.type, live.device.index or 0)
    if not same_device or wanted_dtype != live.dtype:
        raise RunError(f"your model is on {live.device} in {dtype_name(live.dtype)}; it runs where it is, "
                       f"not on {wanted_device} in {dtype_name(wanted_dtype)}",
                       "move or convert it yourself (model.to(...)), or leave device and dtype unset")


def sizes_of_call(arguments: dict[str, Any]) -> Sizes:
    """The sizes a call was made at, read off its arguments by name: the batch and latent of `sample` (else of
    the first tensor; latent (0, 0) unless it is 4-D), the length of `encoder_hidden_states` (else 0)."""
    sample = arguments.get("sample")
    if not isinstance(sample, torch.Tensor):
        sample = next((v for v in arguments.values() if isinstance(v, torch.Tensor)), None)
    text = arguments.get("encoder_hidden_states")
    batch, latent = 0, (0, 0)
    if sample is not None and sample.dim() > 0:
        batch = sample.shape[0]
        if sample.dim() == 4:
            latent = (sample.shape[-2], sample.shape[-1])
    return Sizes(batch=batch, latent=latent, pixels=None,
                 text_len=text.shape[1] if isinstance(text, torch.Tensor) and text.dim() == 3 else 0)


def _on_meta(value: Any) -> Any:
    """The same nested arguments with every tensor an empty meta tensor of its shape and dtype."""
    if isinstance(value, torch.Tensor):
        return torch.empty_like(value, device="meta")
    if isinstance(value, dict):
        return {key: _on_meta(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_on_meta(item) for item in value)
    return value


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in module.state_dict(keep_vars=True).items()}


# ---- leaving the object as it was found ---------------------------------------------------------------------------

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_state_dict_hooks", "_load_state_dict_pre_hooks")


@contextlib.contextmanager
def left_as_found(module: nn.Module) -> Iterator[nn.Module]:
    """Whatever a view does to `module` inside (eval mode, hooks), its training flags, hooks and the grad flags
    of its parameters are as they were afterwards — also when the view raised."""
    modules = list(module.modules())
    training = [m.training for m in modules]
    grads = [(p, p.requires_grad) for p in module.parameters()]
    hooks = [(m, name, set(getattr(m, name))) for m in modules for name in _HOOK_DICTS if hasattr(m, name)]
    try:
        yield module
    finally:
        for m, mode in zip(modules, training):
            m.training = mode
        for p, flag in grads:
            if p.requires_grad != flag:
                p.requires_grad_(flag)
        for m, name, before in hooks:
            table = getattr(m, name)
            for key in [k for k in table if k not in before]:
                del table[key]


# ---- diffusers' own class ----------------------------------------------------------------------------------------


def as_diffusers_model(opened: LiveModel) -> LiveModel:
    """The same model as diffusers' own class (itself when it already is), for `--impl diffusers`."""
    if opened.is_diffusers:
        return opened
    return dataclasses.replace(opened, module=as_diffusers(opened.module, opened.family),
                               label=f"{opened.label} (diffusers)")
