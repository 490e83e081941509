"""Attention maps of any module's attention layers: softmax(QKᵀ·scale) recomputed beside the real call.

The layers are found by what they hold, not by class: a `to_q` projection, keys (`to_k`, or IF's added
`add_k_proj`) and a `heads` count — ours and diffusers' `Attention` alike. A forward hook reads each call's own
inputs (`hidden_states`, `encoder_hidden_states`, `attention_mask`) and projects them again through the module's
own `to_q`/`to_k`, after the same `group_norm` and `norm_cross`: the layer itself still runs its fused SDPA kernel
untouched, so the model's output is the same with maps on or off, and layers no map is asked of carry no hook.

What a map is:
- cross (`encoder_hidden_states` given): for every text token, how much each pixel of that layer attends to it,
  `[batch, tokens, h, w]`. In IF's added-KV attention one softmax runs over the text keys *and* the image keys;
  the cross map is the text part of that softmax (it sums to less than 1 per pixel: the rest went to pixels).
- self (no `encoder_hidden_states`; in added-KV layers, the image part of their softmax): for one query pixel,
  how much it attends to every pixel, `[batch, 1, h, w]`; the query is given in latent coordinates.
Heads are averaged unless asked to be kept (`[batch, heads, tokens, h, w]`). A layer's tokens are its h*w pixels;
h and w come from a 4-d input, else from the latent size of the root call and the layer's token count.

Every call of the root module is one step: its maps are added to running sums (memory does not grow with the
steps), and kept one by one only for the steps asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from unetinspect.engine.trace import named_arguments
from unetinspect.errors import RunError
from unetinspect.models.attention import attention_bias

Kind = Literal["cross", "self"]
Batch = Literal["auto", "all", "cond", "uncond"]
KINDS = ("cross", "self")
BATCHES = ("auto", "all", "cond", "uncond")
AGGREGATIONS = ("mean", "daam")


@dataclass(frozen=True)
class TokenLabels:
    """A name for every token position of the context; `special` marks start, end and padding tokens."""

    labels: tuple[str, ...]
    special: tuple[bool, ...]

    def words(self) -> list[int]:
        """The positions of the prompt's own tokens (not start, end or padding)."""
        return [i for i, flag in enumerate(self.special) if not flag]


@dataclass(frozen=True)
class AttentionOptions:
    """What to capture: `kind` cross or self; `blocks`, path prefixes of the layers kept (all when empty);
    `heads` kept apart; `query` (y, x) in latent coordinates for self maps; `batch`, the rows kept — `auto` the
    conditional half of a classifier-free-guidance batch (recognised by its two equal halves of `sample`), all
    rows otherwise; `keep_steps`, True for every step or the indices of the steps kept one by one."""

    kind: Kind = "cross"
    blocks: tuple[str, ...] = ()
    heads: bool = False
    query: tuple[int, int] | None = None
    batch: Batch = "auto"
    keep_steps: bool | Iterable[int] = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RunError(f"unknown attention kind {self.kind!r}", "use cross or self")
        if self.batch not in BATCHES:
            raise RunError(f"unknown batch choice {self.batch!r}", f"use one of {', '.join(BATCHES)}")
        if not isinstance(self.keep_steps, bool):  # any iterable of step indices, held as a set
            object.__setattr__(self, "keep_steps", frozenset(int(step) for step in self.keep_steps))
        if self.kind == "self" and self.query is None:
            raise RunError("a self-attention map is the map of one query pixel, and none was given",
                           "give query=(y, x) in latent coordinates (--query 32,32)")
        if self.kind == "cross" and self.query is not None:
            raise RunError("a query pixel picks the map of a self-attention; cross-attention maps are one per token",
                           "add --self (kind='self'), or leave out --query")
        if self.query is not None and not _is_pixel(self.query):
            raise RunError(f"query={self.query!r} is not a pixel", "give query=(y, x): two whole numbers ≥ 0 in "
                           "latent coordinates")


def _is_pixel(query: object) -> bool:
    """(y, x): two non-negative ints (a bool is an int to Python, not a coordinate to us)."""
    return (isinstance(query, (tuple, list)) and len(query) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in query))


@dataclass(frozen=True)
class AttentionGrid:
    """What the picture shows, as plain numbers: one row per token (or the query pixel), one column per block
    and a last one for all layers, every cell a map at the latent size scaled to its column's maximum."""

    title: str
    rows: list[str]
    columns: list[str]
    cells: list[list[list[list[float]]]]  # [row][column] → H rows of W values
    column_max: list[float]  # the value drawn brightest in each column


@dataclass
class AttentionMaps:
    """One step's maps, or the mean of several: layer path → `[batch, tokens, h, w]` at the layer's own size
    (`[batch, heads, tokens, h, w]` with heads kept; tokens is 1 for self maps, the query pixel's map)."""

    layers: dict[str, torch.Tensor]
    latent: tuple[int, int]  # the sample's (H, W), the size `aggregate` upsamples to
    kind: Kind
    heads: bool
    steps: int  # how many steps are averaged in these maps
    batch_note: str  # which rows of the batch these are
    query: tuple[int, int] | None = None
    tokens: TokenLabels | None = None
    # a video UNet's maps frame by frame, `[batch, frames, ...]` per layer (`layers` are their mean over frames)
    frames: dict[str, torch.Tensor] | None = None

    def aggregate(self, method: str = "mean", *, normalise: bool = False) -> torch.Tensor:
        """All layers as one map `[batch, tokens, H, W]` at the latent size.

        `mean`: each layer's head-mean upsampled bilinearly (align_corners=False), then the mean over layers.
        `daam` (Tang et al. 2022, "What the DAAM"): every head's map upsampled bicubically and clamped at 0
        (bicubic overshoots), summed over heads, then the mean over layers — the paper's sum over heads, layers
        and steps divided by the constant numbers of layers and steps; with `normalise`, every pixel divided by
        its sum over the prompt's own tokens (start, end and padding left out), so the words share each pixel.
        """
        if method not in AGGREGATIONS:
            raise RunError(f"unknown aggregation {method!r}", f"use one of {', '.join(AGGREGATIONS)}")
        if method == "daam" and not self.heads:
            raise RunError("the DAAM aggregation upsamples every head's map, and the heads were averaged",
                           "capture with heads=True (the CLI does so for --aggregate daam)")
        maps = [self._upsampled(m, method) for m in self.layers.values()]  # each [batch, tokens, H, W]
        total = torch.stack(maps).mean(0)
        if normalise:
            words = self.tokens.words() if self.tokens is not None else list(range(total.shape[1]))
            total = total / (total[:, words].sum(1, keepdim=True) + 1e-6)
        return total

    def by_block(self) -> dict[str, torch.Tensor]:
        """The mean map of each block (`down_blocks.1`, `mid_block`), `[batch, tokens, H, W]` at the latent size."""
        groups: dict[str, list[torch.Tensor]] = {}
        for path, layer in self.layers.items():
            groups.setdefault(block_of(path), []).append(self._upsampled(layer, "mean"))
        return {block: torch.stack(maps).mean(0) for block, maps in groups.items()}

    def labelled(self, tokens: TokenLabels) -> AttentionMaps:
        """The same maps with a name for every token."""
        return replace(self, tokens=tokens)

    def _upsampled(self, layer: torch.Tensor, method: str) -> torch.Tensor:
        if method == "daam":  # [batch, heads, tokens, h, w] → heads summed after clamped bicubic upsampling
            batch, heads, tokens, h, w = layer.shape
            up = F.interpolate(layer.reshape(batch, heads * tokens, h, w), size=self.latent, mode="bicubic",
                               align_corners=False).clamp_(min=0)
            return up.view(batch, heads, tokens, *self.latent).sum(1)
        if self.heads:
            layer = layer.mean(1)
        return F.interpolate(layer, size=self.latent, mode="bilinear", align_corners=False)


def attention_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The modules that attend as ours and diffusers' `Attention` do, by path: a `to_q`, keys, `heads`."""
    return {path: m for path, m in model.named_modules()
            if isinstance(getattr(m, "to_q", None), nn.Linear) and isinstance(getattr(m, "heads", None), int)
            and (getattr(m, "to_k", None) is not None or getattr(m, "add_k_proj", None) is not None)}


def block_of(path: str) -> str:
    """The block a layer is in: `down_blocks.1` of `down_blocks.1.attentions.0...`, `mid_block` of `mid_block...`."""
    parts = path.split(".")
    return ".".join(parts[:2] if len(parts) > 1 and parts[1].isdigit() else parts[:1])


def layer_size(tokens: int, latent: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) of a layer with `tokens` pixels in a model whose sample is `latent`: the latent divided by a
    power of two (rounded up, as stride-2 convolutions round, or down), else the factorisation nearest its
    aspect ratio."""
    height, width = latent
    for factor in (2 ** i for i in range(8)):
        for h, w in ((-(-height // factor), -(-width // factor)), (height // factor, width // factor)):
            if h * w == tokens:
                return h, w
    ratio = height / width if width else 1.0
    h = min((d for d in range(1, tokens + 1) if tokens % d == 0),
            key=lambda d: abs(math.log(d * d / tokens / ratio)))
    return h, tokens // h


def attention_probabilities(module: nn.Module, hidden_states: torch.Tensor, context: torch.Tensor | None,
                            mask: torch.Tensor | None, kind: Kind, query_index: int | None = None) -> torch.Tensor:
    """softmax(QKᵀ·scale) of one call, in float32, restricted to the keys `kind` asks for:
    `[batch, heads, queries, keys]` (queries: every pixel, or the one at `query_index`)."""
    query, key, scale, n_text, pad_to = queries_and_keys(module, hidden_states, context, query_index)
    keys = slice(None) if n_text is None else slice(0, n_text) if kind == "cross" else slice(n_text, None)
    batch, heads = query.shape[:2]
    scores = query @ key.transpose(-1, -2) * scale  # [b, heads, queries, keys]
    if mask is not None:
        scores = scores + attention_bias(mask.float(), pad_to, batch, heads)
    return scores.softmax(-1)[..., keys]


def queries_and_keys(module: nn.Module, hidden_states: torch.Tensor, context: torch.Tensor | None,
                     query_index: int | None = None) -> tuple[torch.Tensor, torch.Tensor, float, int | None, int]:
    """One call's queries and keys projected again through the layer's own `to_q`/`to_k` (after its norms), in
    float32 as `[batch, heads, tokens, head_dim]`, with its logit scale. In added-KV layers the keys are the
    text's then the pixels': also returned is the number of text keys (None elsewhere) and the key length a
    mask is padded to."""
    if hidden_states.ndim == 4:  # (b, c, h, w) → (b, h*w, c)
        hidden_states = hidden_states.flatten(2).transpose(1, 2)
    # the layer's parts as `attention_layers` found them, each read once (nn.Module's attributes are untyped)
    to_q: nn.Module = module.get_submodule("to_q")
    to_k: nn.Module | None = getattr(module, "to_k", None)
    add_k_proj: nn.Module | None = getattr(module, "add_k_proj", None)
    norm_cross: nn.Module | None = getattr(module, "norm_cross", None)
    group_norm: nn.Module | None = getattr(module, "group_norm", None)
    heads: int = getattr(module, "heads", 0)  # an int in the layers attention_layers finds; none is refused below
    if context is not None and norm_cross is not None:
        context = _normalise(norm_cross, context)
    raw = hidden_states  # without a context, added-KV projects the image *before* its group norm as the "text"
    if group_norm is not None:
        hidden_states = _normalise(group_norm, hidden_states)
    text = context if context is not None else raw if add_k_proj is not None else hidden_states
    query = to_q(hidden_states)  # [b, pixels, inner]
    if query_index is not None:
        query = query[:, query_index:query_index + 1]
    n_text = None
    if add_k_proj is not None:
        key = add_k_proj(text)
        n_text = key.shape[1]
        if to_k is not None:
            key = torch.cat([key, to_k(hidden_states)], dim=1)  # [b, text + pixels, inner]
        pad_to = hidden_states.shape[1]
    else:
        assert to_k is not None  # attention_layers finds only layers with keys: to_k where add_k_proj is absent
        key = to_k(text)
        pad_to = key.shape[1]
    batch = query.shape[0]
    if heads < 1 or query.shape[-1] % heads:  # the module ran its own way; its maps cannot be split into heads
        raise RunError(f"a {type(module).__name__} has heads={heads}, which does not split its {query.shape[-1]} "
                       "query features into heads", "give the attention module a head count that divides its "
                       "to_q's out_features")
    head_dim = query.shape[-1] // heads
    query, key = (t.float().view(batch, -1, heads, head_dim).transpose(1, 2) for t in (query, key))
    return query, key, getattr(module, "scale", head_dim ** -0.5), n_text, pad_to


def _normalise(norm: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """A LayerNorm on the channels as they are; a GroupNorm on (b, channels, tokens)."""
    if isinstance(norm, nn.GroupNorm):
        return norm(tokens.transpose(1, 2)).transpose(1, 2)
    return norm(tokens)


class AttentionRecorder:
    """While open (`with`), hooks `model` and its attention layers; every call of `model` is one step.

    `mean()` is the mean over the steps, `at(step)` one kept step, `latest()` the last step; the running sums
    keep memory at one step's maps whatever the number of steps.
    """

    def __init__(self, model: nn.Module, options: AttentionOptions = AttentionOptions()) -> None:
        self.model, self.options = model, options
        layers = attention_layers(model)
        if options.blocks:
            unknown = [b for b in options.blocks if not any(_under(p, b) for p in layers)]
            if unknown:
                blocks = sorted({block_of(p) for p in layers})
                raise RunError(f"no attention layer under {', '.join(map(repr, unknown))}",
                               f"give blocks among {', '.join(blocks) or '(none: the model has no attention)'}")
            layers = {p: m for p, m in layers.items() if any(_under(p, b) for b in options.blocks)}
        self.layers = layers
        self.steps = 0
        self._sums: dict[str, torch.Tensor] = {}
        self._kept: dict[int, dict[str, torch.Tensor]] = {}
        self._latest: dict[str, torch.Tensor] = {}
        self._step: dict[str, torch.Tensor] = {}
        self._rows: slice | None = None  # the rows mapped in the open call of the model; None between calls
        self._latent: tuple[int, int] | None = None
        self._frames: int | None = None  # a video UNet's frames in the open call: its layers see batch × frames rows
        self._folded = 0  # the rows a spatial layer of the open call sees (batch, or batch × frames)
        self._batch_note = ""
        self._handles: list[Any] = []

    def __enter__(self) -> AttentionRecorder:
        self._handles = [self.model.register_forward_pre_hook(self._start, with_kwargs=True),
                         self.model.register_forward_hook(self._end)]
        self._handles += [m.register_forward_hook(self._hook(path), with_kwargs=True)
                          for path, m in self.layers.items()]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._rows = None

    # ---- the results --------------------------------------------------------------------------------------------

    def mean(self) -> AttentionMaps:
        """The maps averaged over every recorded step."""
        self._require_steps()
        return self._maps({p: s / self.steps for p, s in self._sums.items()}, self.steps)

    def latest(self) -> AttentionMaps:
        """The maps of the last step."""
        self._require_steps()
        return self._maps(self._latest, 1)

    def at(self, step: int) -> AttentionMaps:
        """The maps of one kept step (0 is the first call of the model)."""
        if step not in self._kept:
            kept = sorted(self._kept)
            raise RunError(f"step {step} was not kept (kept: {kept or 'none'})",
                           "keep it with keep_steps=True or keep_steps={...} when recording; mean() needs none")
        return self._maps(self._kept[step], 1)

    def _maps(self, layers: dict[str, torch.Tensor], steps: int) -> AttentionMaps:
        assert self._latent is not None  # a step was recorded (callers check), and every step's _start set it
        if self._frames is None:
            return AttentionMaps(dict(layers), self._latent, self.options.kind, self.options.heads, steps,
                                 self._batch_note, self.options.query)
        return AttentionMaps({p: m.mean(1) for p, m in layers.items()}, self._latent, self.options.kind,
                             self.options.heads, steps, f"{self._batch_note}, the mean of {self._frames} frames",
                             self.options.query, frames=dict(layers))

    def _require_steps(self) -> None:
        if not self.steps:
            raise RunError(f"no {self.options.kind}-attention map was recorded in {type(self.model).__name__}",
                           "its attention layers were not called with text (encoder_hidden_states): use the "
                           "self-attention maps instead (--self), or a model with cross-attention blocks"
                           if self.options.kind == "cross" else "run the model inside the with block")

    # ---- hooks --------------------------------------------------------------------------------------------------

    def _start(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        named = named_arguments(module, args, kwargs)
        sample = named.get("sample")
        if not isinstance(sample, torch.Tensor):
            sample = next((v for v in named.values() if isinstance(v, torch.Tensor) and v.ndim in (4, 5)), None)
        if sample is None or sample.ndim not in (4, 5):
            raise RunError(f"attention maps need the latent sample of {type(module).__name__}'s call, and it has "
                           "none", "call the model with its latent: (batch, channels, height, width), or a video "
                           "UNet's with its frames")
        frames = _frames_of(module, sample)
        latent = (sample.shape[-2], sample.shape[-1])
        if self._latent is not None and (latent, frames) != (self._latent, self._frames):
            raise RunError(f"maps at latent {latent[0]}x{latent[1]}{_frames_text(frames)} cannot be averaged with "
                           f"the earlier {self._latent[0]}x{self._latent[1]}{_frames_text(self._frames)}",
                           "record each size in its own with block")
        context = named.get("encoder_hidden_states")
        if frames and isinstance(context, torch.Tensor) and context.shape[0] == sample.shape[0] * frames:
            context = context[::frames]  # AnimateDiff's text, repeated for every frame: one row per video
        rows, self._batch_note = _mapped_rows(self.options.batch, sample, context)
        if frames:  # frames folded into the batch, each video's together: its rows' frames
            rows = slice(None if rows.start is None else rows.start * frames,
                         None if rows.stop is None else rows.stop * frames)
        self._frames, self._folded = frames, sample.shape[0] * (frames or 1)
        query = self.options.query
        if query is not None and not (0 <= query[0] < latent[0] and 0 <= query[1] < latent[1]):
            raise RunError(f"query pixel {query[0]},{query[1]} is outside the {latent[0]}x{latent[1]} latent",
                           f"give y in 0..{latent[0] - 1} and x in 0..{latent[1] - 1}")
        self._latent, self._rows, self._step = latent, rows, {}

    def _end(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self._rows is None:
            return
        self._rows = None
        if not self._step:
            return
        keep = self.options.keep_steps
        if keep is True or (keep and self.steps in keep):
            self._kept[self.steps] = self._step
        for path, layer in self._step.items():
            self._sums[path] = self._sums[path] + layer if path in self._sums else layer.clone()
        self._latest = self._step
        self.steps += 1

    def _hook(self, path: str):
        def capture(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if self._rows is not None:
                with torch.no_grad():
                    self._capture(path, module, named_arguments(module, args, kwargs))
        return capture

    def _capture(self, path: str, module: nn.Module, named: dict[str, Any]) -> None:
        hidden, context = named.get("hidden_states"), named.get("encoder_hidden_states")
        mask = named.get("attention_mask")
        cross = context is not None
        added = getattr(module, "add_k_proj", None) is not None
        if self.options.kind == "cross" and not cross:
            return
        if self.options.kind == "self" and cross and not (added and getattr(module, "to_k", None) is not None):
            return
        if not isinstance(hidden, torch.Tensor):  # found by its to_q/to_k/heads, called another way (LDM's x)
            raise RunError(f"the attention layer {path!r} ({type(module).__name__}) takes no hidden_states: maps "
                           "read the arguments of diffusers' Attention (hidden_states, encoder_hidden_states)",
                           "convert the model to diffusers' layout, or leave this layer's block out (--blocks)")
        if self._frames and hidden.shape[0] != self._folded:
            return  # a temporal layer (pixels in the batch, frames as its tokens): no map over the picture
        rows, latent = self._rows, self._latent
        assert latent is not None  # _start set it with the rows this call maps (the hook runs only while set)
        spatial = (hidden.shape[-2], hidden.shape[-1]) if hidden.ndim == 4 else layer_size(hidden.shape[1], latent)
        hidden = hidden[rows]
        context = context[rows] if cross else None
        if mask is not None and mask.shape[0] == named["hidden_states"].shape[0]:
            mask = mask[rows]
        query_index = None
        if self.options.kind == "self":
            query = self.options.query
            assert query is not None  # AttentionOptions refuses a self map without its query pixel
            y, x = (q * s // l for q, s, l in zip(query, spatial, latent))
            query_index = y * spatial[1] + x
        probs = attention_probabilities(module, hidden, context, mask, self.options.kind, query_index)
        batch, heads = probs.shape[:2]
        # cross: [b, heads, pixels, tokens] → [b, heads, tokens, h, w]; self: [b, heads, 1, pixels] → same, tokens 1
        maps = (probs.transpose(-1, -2) if self.options.kind == "cross" else probs).reshape(batch, heads, -1,
                                                                                              *spatial)
        maps = maps if self.options.heads else maps.mean(1)
        if self._frames:  # [videos × frames, ...] → [videos, frames, ...]
            maps = maps.reshape(-1, self._frames, *maps.shape[1:])
        self._step[path] = maps


def _frames_of(model: nn.Module, sample: torch.Tensor) -> int | None:
    """The frames of a video UNet's 5-d sample — SVD's (batch, frames, channels, h, w), AnimateDiff's (batch,
    channels, frames, h, w), told apart by the model's in_channels; None for a 4-d (image) sample."""
    if sample.ndim == 4:
        return None
    config = getattr(model, "config", None)
    channels = config.get("in_channels") if isinstance(config, dict) else getattr(config, "in_channels", None)
    if channels == sample.shape[2] and channels != sample.shape[1]:
        return sample.shape[1]
    if channels == sample.shape[1]:
        return sample.shape[2]
    raise RunError(f"cannot tell the frames of {type(model).__name__}'s 5-d sample {tuple(sample.shape)} "
                   f"(in_channels {channels})", "call a video UNet with its sample as diffusers' pipelines do")


def _frames_text(frames: int | None) -> str:
    return f" × {frames} frames" if frames else ""


def _under(path: str, block: str) -> bool:
    return path == block or path.startswith(block + ".")


def _mapped_rows(choice: Batch, sample: torch.Tensor, context: Any) -> tuple[slice, str]:
    """The rows of the batch to map, and how to say which. A classifier-free-guidance batch (diffusers: the
    unconditional rows, then the conditional ones) is told by its two halves of `sample` being equal while the
    halves of the text differ; `auto` keeps its conditional half and every row of any other batch."""
    batch = sample.shape[0]
    half = batch // 2
    if choice == "all":
        return slice(None), _every_row(batch)
    cfg = batch % 2 == 0 and torch.equal(sample[:half], sample[half:]) and not (
        isinstance(context, torch.Tensor) and torch.equal(context[:half], context[half:]))
    if choice == "auto" and not cfg:
        return slice(None), f"{_every_row(batch)} (not a classifier-free-guidance batch)"
    if batch % 2:
        raise RunError(f"batch {batch} has no {choice} half: a classifier-free-guidance batch is even",
                       "use batch='all' (or 'auto')")
    if choice == "uncond":
        return slice(0, half), f"the unconditional half (rows 0..{half - 1}) of a classifier-free-guidance batch"
    return slice(half, None), f"the conditional half (rows {half}..{batch - 1}) of a classifier-free-guidance batch"


def _every_row(batch: int) -> str:
    return "the one row of the batch" if batch == 1 else f"all {batch} rows of the batch"
