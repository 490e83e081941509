"""Caching, applied and measured: `with cache(pipe.unet, interval=3, branch=0) as c: pipe(...)`, then `c.result()`.

`cache` reuses blocks' outputs across the calls of the user's own model, by DeepCache's uniform schedule
(`interval`, `branch` as DeepCache numbers its branches) or by a per-block plan measured from drift
(`plan=w.cache_plan(threshold=δ)`, Block Caching's rule); the module is left exactly as found on leaving, also when
the loop raised. The result says what was reused, how much the calls of the model took (full calls against
cached ones, measured in the loop), and what the schedule should save, predicted two ways from the blocks' own
costs: from the times the blocks took when they ran (a cached call = a full call less the blocks it reuses) and
from their FLOPs on a meta-device copy of the model (for DeepCache's schedule, a skipped call costs exactly the
shallow branch `branch_costs` counts for that skip).

`compare_cached(run, module, ...)` runs the user's seeded generation once uncached and once cached and says what
caching bought and cost: the measured speedup of the whole call, and the largest absolute difference and the
PSNR of the decoded images.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unetinspect.engine.cache import BlockCache, CachePlan, uniform_plan
from unetinspect.engine.timing import clock_for
from unetinspect.engine.trace import named_arguments, trace_model
from unetinspect.errors import RunError
from unetinspect.sources.inputs import Sizes
from unetinspect.sources.live import open_live, placement, sizes_of_call

CACHE_CONVENTIONS = (
    "predicted by time: a cached call takes a full call's median time less the median times of the blocks it "
    "reuses, each measured when it ran in this loop",
    "predicted by FLOPs: a meta-device copy of the model traced at the first call's sizes; a cached call costs "
    "the full call less the FLOPs of the blocks it reuses",
    "images compared in [0, 1]: max |a − b| and PSNR = 10·log10(1 / MSE) dB (∞ for identical images)",
)


@dataclass(frozen=True)
class CachedBlock:
    """One planned block: how often it ran and how often it returned its stored output."""

    block: str
    ran: int
    reused: int
    ms: float | None  # its median time when it ran
    flops: int | None  # per call, from the meta trace


@dataclass
class CacheResult:
    """What one `cache` context did to the calls it saw, and what its schedule should save."""

    label: str
    schedule: str
    calls: int
    blocks: list[CachedBlock]
    full_call_ms: float | None  # median of the calls that reused nothing
    cached_call_ms: float | None  # median of the calls that reused something
    measured_speedup: float | None  # the model's calls in this loop: as if all were full, over what they took
    predicted_speedup_time: float | None
    predicted_speedup_flops: float | None
    skipped_flops: int | None  # FLOPs not run over all calls
    held_bytes: int  # the stored outputs held at the end
    conventions: tuple[str, ...] = field(default=CACHE_CONVENTIONS)

    @property
    def reused(self) -> int:
        """Block calls served from the cache, all blocks together."""
        return sum(b.reused for b in self.blocks)


class Cached:
    """The context `cache()` returns: applies the plan while open; `result()` after."""

    def __init__(self, module: nn.Module, plan: CachePlan) -> None:
        self.module, self.plan = module, plan
        self.device, _ = placement(module)
        self.clock = clock_for(self.device)
        self._cache = BlockCache(module, plan, self.clock)
        self._sizes: Sizes | None = None
        self._handle: Any = None
        self._open = self._used = False

    def __enter__(self) -> Cached:
        if self._used:
            raise RunError("this cache was already used", "use a new cache() for each with block")
        self._used = True
        self._cache.__enter__()
        try:
            self._handle = self.module.register_forward_pre_hook(self._first_call, with_kwargs=True)
        except BaseException:
            self._cache.__exit__(None, None, None)
            raise
        self._open = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._cache.__exit__(*exc)
        self._open = False

    def _first_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self._sizes is None:
            self._sizes = sizes_of_call(named_arguments(module, args, kwargs))

    def result(self) -> CacheResult:
        """What was reused and what it saved, read after the loop (the only wait for the device)."""
        if self._open:
            raise RunError("cache().result() is read after the with block", "call it once the loop has finished")
        done = [marks for marks in self._cache.call_marks if len(marks) == 2]
        if not done:
            raise RunError(f"no call of the cached {type(self.module).__name__} was recorded",
                           "run the model (or the pipeline that calls it) inside the with block")
        self.clock.wait()
        cache = self._cache
        calls = len(cache.call_marks)
        call_ms = [self.clock.elapsed_ms(*marks) if len(marks) == 2 else None for marks in cache.call_marks]
        block_ms = {path: [self.clock.elapsed_ms(*m) for m in marks] for path, marks in cache.block_marks.items()}
        flops = _block_flops(self.module, self._sizes, self.plan.blocks)
        blocks = [CachedBlock(path, ran=len(block_ms[path]), reused=len(cache.reused[path]),
                              ms=statistics.median(block_ms[path]) if block_ms[path] else None,
                              flops=flops.get(path) if flops else None) for path in self.plan.blocks]
        reused_at = [_outermost([p for p in self.plan.blocks if call in cache.reused[p]]) for call in range(calls)]
        full = [ms for ms, reused in zip(call_ms, reused_at) if ms is not None and not reused]
        cached = [ms for ms, reused in zip(call_ms, reused_at) if ms is not None and reused]
        full_ms = statistics.median(full) if full else None
        timed = [ms for ms in call_ms if ms is not None]
        by_name = {b.block: b for b in blocks}
        return CacheResult(
            label=f"{type(self.module).__name__} (cached)", schedule=self.plan.description, calls=calls,
            blocks=blocks, full_call_ms=full_ms, cached_call_ms=statistics.median(cached) if cached else None,
            measured_speedup=full_ms * len(timed) / sum(timed) if full_ms and sum(timed) else None,
            predicted_speedup_time=_predicted(full_ms, reused_at, {p: b.ms for p, b in by_name.items()}),
            predicted_speedup_flops=_predicted(flops.get("") if flops else None, reused_at, flops or {}),
            skipped_flops=sum(flops[p] for r in reused_at for p in r) if flops else None,
            held_bytes=cache.held,
        )


def cache(module: nn.Module, *, interval: int | None = None, branch: int = 0, plan: CachePlan | None = None) -> Cached:
    """Reuse blocks' outputs across the calls of `module` inside the `with` block:

        with cache(pipe.unet, interval=3, branch=0) as c:      # DeepCache's uniform schedule
            pipe("a photo of a cat", num_inference_steps=50)
        print(c.result().predicted_speedup_time)

        with watch(pipe.unet, drift=True) as w:
            pipe(prompt, generator=torch.Generator().manual_seed(0))
        with cache(pipe.unet, plan=w.cache_plan(threshold=0.1)):   # Block Caching's per-block schedule
            pipe(prompt, generator=torch.Generator().manual_seed(0))

    One `with` block is one generation: the schedule counts the calls of `module` from the block's start.
    """
    if not isinstance(module, nn.Module):
        raise RunError(f"cache() takes an nn.Module (e.g. pipe.unet), not {type(module).__name__}",
                       "pass the UNet itself: cache(pipe.unet, interval=3)")
    if (interval is None) == (plan is None):
        raise RunError("cache() needs one schedule: interval=N (DeepCache's) or plan=P (from measured drift)",
                       "e.g. cache(pipe.unet, interval=3, branch=0) or cache(pipe.unet, plan=w.cache_plan(0.1))")
    if plan is not None and not isinstance(plan, CachePlan):
        raise RunError(f"plan= takes a CachePlan, not {type(plan).__name__}", "make one with w.cache_plan(threshold)")
    return Cached(module, plan if plan is not None else uniform_plan(module, interval, branch))  # type: ignore[arg-type]


def _outermost(paths: list[str]) -> list[str]:
    return [p for p in paths if not any(p.startswith(f"{other}.") for other in paths)]


def _predicted(full: float | None, reused_at: list[list[str]], cost: dict[str, Any]) -> float | None:
    """Σ full / Σ (full − cost of what each call reused); None without a full cost or a block's cost."""
    if not full or any(cost.get(p) is None for reused in reused_at for p in reused):
        return None
    cached = sum(full - sum(cost[p] for p in reused) for reused in reused_at)
    return full * len(reused_at) / cached if cached > 0 else None


def _block_flops(module: nn.Module, sizes: Sizes | None, paths: list[str]) -> dict[str, int] | None:
    """FLOPs of one call of each planned block and of the whole call (key ""), on a meta-device copy of the model
    at the first call's sizes; None for a module we cannot rebuild (no config, or changed after loading). Out of
    inference mode, which a loop's result may be read in: FLOPs are not counted there."""
    with torch.inference_mode(False):
        return _meta_flops(module, sizes, paths)


def _meta_flops(module: nn.Module, sizes: Sizes | None, paths: list[str]) -> dict[str, int] | None:
    live = open_live(module)
    copy = live.meta_copy() if live is not None and sizes is not None else None
    if copy is None or live is None or sizes is None or sizes.latent == (0, 0):
        return None
    trace = trace_model(copy, live.inputs(sizes, torch.device("meta")))
    flops = {"": trace.flops}
    for path in paths:
        flops[path] = sum(r.flops for r in trace.records if r.path == path)
    return flops


# ---- cached against uncached ---------------------------------------------------------------------------------------


@dataclass
class CacheComparison:
    """One seeded generation uncached and cached: what caching bought (time) and cost (the image)."""

    cache: CacheResult
    uncached_s: float
    cached_s: float
    max_abs_diff: float
    psnr_db: float  # inf for identical images
    reference: torch.Tensor  # the uncached images, [N, H, W, C] in [0, 1]
    images: torch.Tensor  # the cached ones

    @property
    def speedup(self) -> float:
        return self.uncached_s / self.cached_s if self.cached_s else math.inf


def compare_cached(run: Callable[[], Any], module: nn.Module, *, interval: int | None = None, branch: int = 0,
                   plan: CachePlan | None = None, warmup: bool = True) -> CacheComparison:
    """Run `run()` — the user's generation with a fixed seed, e.g. `lambda: pipe(prompt, generator=
    torch.Generator().manual_seed(0), output_type="np")` — uncached and then under `cache(module, ...)`, timing
    each whole call, and compare the images it returns (a pipeline output's `.images`, PIL images, arrays or
    tensors in [0, 1]). `warmup` runs it once before, untimed, so that the first timed run does not pay for
    lazy initialisation.
    """
    context = cache(module, interval=interval, branch=branch, plan=plan)  # bad values refused before any run
    if warmup:
        run()
    uncached_s, reference = _timed(run, module)
    with context:
        cached_s, images = _timed(run, module)
    if reference.shape != images.shape:
        raise RunError(f"the cached run returned images of shape {tuple(images.shape)}, the uncached "
                       f"{tuple(reference.shape)}", "run() must return the same images each time (fixed seed)")
    difference = (reference - images).abs()
    mse = float(difference.square().mean())
    return CacheComparison(cache=context.result(), uncached_s=uncached_s, cached_s=cached_s,
                           max_abs_diff=float(difference.max()) if difference.numel() else 0.0,
                           psnr_db=10 * math.log10(1 / mse) if mse else math.inf,
                           reference=reference, images=images)


def _timed(run: Callable[[], Any], module: nn.Module) -> tuple[float, torch.Tensor]:
    """The whole call's wall time (the device's work included: on CUDA, synchronised before and after the call,
    outside the loop) and its images."""
    device, _ = placement(module)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    output = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, images_of(output)


def images_of(output: Any) -> torch.Tensor:
    """A generation's images as one float64 tensor [N, H, W, C] in [0, 1]: from a pipeline output (`.images`),
    PIL images (8-bit, divided by 255), arrays or tensors already in [0, 1] ([N, C, H, W] tensors as diffusers'
    `output_type="pt"` gives them)."""
    images = getattr(output, "images", output)
    if isinstance(images, (list, tuple)):
        return torch.stack([images_of(image)[0] for image in images]) if images else torch.zeros(0)
    if hasattr(images, "convert") and hasattr(images, "tobytes"):  # a PIL image
        rgb = images.convert("RGB")
        pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
        return pixels.reshape(1, rgb.height, rgb.width, 3).double() / 255
    if isinstance(images, torch.Tensor):
        tensor = images.detach().cpu().double()
        if tensor.dim() == 4 and tensor.shape[1] in (1, 3, 4) and tensor.shape[-1] not in (1, 3, 4):
            tensor = tensor.permute(0, 2, 3, 1)
        return tensor if tensor.dim() == 4 else tensor.unsqueeze(0)
    try:
        raw = torch.as_tensor(images)
    except (TypeError, RuntimeError, ValueError):
        raise RunError(f"cannot read images from a {type(output).__name__}",
                       "run() should return the pipeline's output, PIL images, an array or a tensor") from None
    tensor = raw.double() / 255 if raw.dtype == torch.uint8 else raw.double()
    return tensor if tensor.dim() == 4 else tensor.unsqueeze(0)
