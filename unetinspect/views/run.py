"""`run_pipeline`: one real generation of a local diffusers pipeline, watched block by block.

Every other view answers what a UNet costs on made-up inputs; this one runs the user's own pipeline folder once,
as diffusers runs it — their text encoder, scheduler, VAE and classifier-free guidance — with the UNet under
`watch`: every block timed in every step, and the cross-attention maps of the real prompt averaged over the
steps (the conditional half of the guidance batch), labelled by the pipeline's own tokenizer(s). What comes
back is the image and those measurements; `render/run_view.py` writes them as a table, JSON, the image or a page.

The times are taken with the block hooks in every call (no unhooked run to compare with: see watch), and the
pipeline call's wall time includes the text encoder, the scheduler and the VAE.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unetinspect.engine.attention import AttentionOptions
from unetinspect.engine.cache import check_threshold, uniform_plan
from unetinspect.errors import OptionsError, PromptWarning, RunError
from unetinspect.sources.loading import parse_device, parse_dtype
from unetinspect.sources.pipeline import PIPELINES, load_pipeline, pipeline_class, prompt_tokens, quiet
from unetinspect.sources.session import Setup
from unetinspect.views.attention import AttentionResult, quoted_prompt, token_labels
from unetinspect.views.cache import CacheComparison, compare_cached
from unetinspect.views.drift import Drift
from unetinspect.views.profile import Profile
from unetinspect.views.watch import watch


@dataclass
class RunResult:
    """One generation: what ran, the image, and the UNet's blocks timed in every step with the prompt's maps."""

    setup: Setup
    pipeline: str  # the pipeline's class, e.g. StableDiffusionPipeline
    prompt: str
    steps: int
    seed: int
    guidance: float
    image: Any  # the first image the pipeline returned (a PIL image)
    seconds: float  # the whole pipeline call, text encoding and decoding included, with the hooks installed
    profile: Profile  # per-block statistics over the UNet calls, and the calls one by one (`profile.calls`)
    block_ms: dict[str, list[float]]  # block → its ms in each UNet call, in call order
    attention: AttentionResult  # the prompt's cross-attention maps, the mean over the steps
    drift: Drift  # each block's change from one step to the next
    cached: CacheComparison | None = None  # with a cache option: the same seed uncached and cached
    cached_image: Any = None  # the image the cached run made (a PIL image)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CacheOption:
    """A cache to apply and measure: DeepCache's uniform schedule (`interval`, `branch`) or, with `threshold`,
    Block Caching's plan from the drift this run measures."""

    interval: int | None = None
    branch: int = 0
    threshold: float | None = None


def parse_cache(text: str | None = None, threshold: float | None = None) -> CacheOption | None:
    """`--cache interval=3,branch=0` and `--cache-threshold δ` as a `CacheOption` (None: no cache); every value
    checked here, before anything is loaded."""
    if text is not None and threshold is not None:
        raise OptionsError("--cache and --cache-threshold are two schedules; one run applies one",
                           "give --cache interval=N,branch=K (DeepCache's) or --cache-threshold δ (from drift)")
    if threshold is not None:
        check_threshold(threshold)
        return CacheOption(threshold=float(threshold))
    if text is None:
        return None
    values: dict[str, int] = {}
    for part in text.split(","):
        key, equals, value = (piece.strip() for piece in part.partition("="))
        if key not in ("interval", "branch") or not equals or key in values:
            raise OptionsError(f"--cache {text!r}: {part.strip()!r} is not interval=N or branch=K (once each)",
                               "give e.g. --cache interval=3,branch=0")
        if not value.isdigit():
            raise OptionsError(f"--cache {text!r}: {key} must be a whole number ≥ {1 if key == 'interval' else 0}, "
                               f"not {value!r}", "give e.g. --cache interval=3,branch=0")
        values[key] = int(value)
    if "interval" not in values or values["interval"] < 1:
        raise OptionsError(f"--cache {text!r} has no interval ≥ 1", "give e.g. --cache interval=3,branch=0 "
                           "(every third step runs the whole UNet)")
    return CacheOption(interval=values["interval"], branch=values.get("branch", 0))


def run_pipeline(
    folder: str | Path,
    prompt: str,
    *,
    steps: int = 20,
    seed: int = 0,
    guidance: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    cache: CacheOption | None = None,
) -> RunResult:
    """Generate one image from `prompt` with the pipeline saved in `folder` (`local_files_only`), its UNet
    watched: per-step block times, each block's drift and the prompt's attention maps. The pipelines run are
    `PIPELINES`.

    `height`/`width` in pixels default to the pipeline's own (the UNet's sample size times the VAE's factor);
    `seed` seeds a CPU generator, so a seed gives the same starting noise on any device. With `cache`
    (`parse_cache`), the same seed is generated again uncached and cached (`compare_cached`): the measured
    speedup of the whole pipeline call and what it cost in the image.
    """
    _check_options(prompt, steps, guidance, height, width)
    if cache is not None and cache.threshold is not None:
        check_threshold(cache.threshold)
    name = pipeline_class(folder)  # a wrong folder fails before diffusers is imported
    torch_device = parse_device(device)
    torch_dtype = parse_dtype(dtype) or torch.float32
    pipe = load_pipeline(folder, torch_device, torch_dtype)
    if cache is not None and cache.interval is not None:
        uniform_plan(pipe.unet, cache.interval, cache.branch)  # a branch this UNet has not fails before the run
    notes = [note for note in (prompt_tokens(pipe, prompt).note(),) if note]
    for note in notes:
        warnings.warn(note, PromptWarning, stacklevel=2)
    made: list[Any] = []  # the images of every generation, the last one last

    def generate() -> Any:
        """One generation from the seed's noise, as diffusers runs it."""
        try:
            with quiet(), torch.no_grad():
                output = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, height=height, width=width,
                              generator=torch.Generator("cpu").manual_seed(seed), output_type="pil")
        except ValueError as exc:  # diffusers' own checks of the arguments (a size the VAE cannot divide, ...)
            raise RunError(f"the {name} refused the run: {_first_line(exc)}",
                           "check --height/--width (SD and SDXL take multiples of 8) and the other options") from None
        made.append(output.images[0])
        return output

    with watch(pipe.unet, attention=AttentionOptions(batch="auto"), drift=True) as watched:
        start = time.perf_counter()
        generate()
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)  # after the loop: the wall time includes the GPU's work
        seconds = time.perf_counter() - start
    drift = watched.drift()
    cached = None
    if cache is not None:  # the watched run was the warm-up
        plan = drift.cache_plan(cache.threshold) if cache.threshold is not None else None
        cached = compare_cached(generate, pipe.unet, interval=cache.interval, branch=cache.branch, plan=plan,
                                warmup=False)
    profile = watched.report()
    maps = watched.attention.mean()
    labels = token_labels(pipe, prompt, next(iter(maps.layers.values())).shape[-3])
    attention = dataclasses.replace(AttentionResult.of(maps), tokens=labels, notes=list(notes),
                                    text=f"the prompt {quoted_prompt(prompt)}")
    image = made[0]
    sizes = dataclasses.replace(profile.setup.sizes, pixels=(image.height, image.width))  # the VAE's own factor
    setup = dataclasses.replace(profile.setup, label=f"{Path(folder).name} ({PIPELINES[name]})", kind="pipeline",
                                sizes=sizes, weights="the pipeline's weights")
    return RunResult(setup=setup, pipeline=name, prompt=prompt, steps=steps, seed=seed, guidance=guidance,
                     image=image, seconds=seconds, profile=profile, block_ms=watched.block_times(),
                     attention=attention, drift=drift, cached=cached, cached_image=made[-1] if cached else None,
                     notes=notes)


def _check_options(prompt: str, steps: int, guidance: float, height: int | None, width: int | None) -> None:
    """The run's numbers, refused in one line before anything is loaded."""
    if not isinstance(prompt, str):
        raise OptionsError(f"the prompt is a {type(prompt).__name__}, not text", "give --prompt TEXT")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise OptionsError(f"--steps {steps!r} is not a positive number of steps", "give --steps 1 or more, e.g. 20")
    if not isinstance(guidance, (int, float)) or not math.isfinite(guidance):
        raise OptionsError(f"--guidance {guidance!r} is not a finite number", "give e.g. --guidance 7.5")
    for option, value in (("--height", height), ("--width", width)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 8):
            raise OptionsError(f"{option} {value!r} is not an image size in pixels", f"give {option} 8 or more, "
                               "a multiple of 8, e.g. 512")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
