"""One command that measures what only a GPU can tell, and writes it to docs/gpu.md.

For SD 1.5 at 512² and SDXL at 1024² in fp16 (random weights: latency does not depend on their values):
`profile` of our model and of diffusers' own class holding the very same weight tensors (the step ratio, and
the largest output difference), the block hooks' overhead and coverage, peak memory and MFU; then `ui.watch` over
a 10-step loop of diffusers' UNet with classifier-free guidance (batch 2) and what the watch costs that loop.
On CUDA only: one real training step (forward, backward, AdamW step with torch's defaults, the second step
measured, attention on the kernel torch picks) against `memory --train`'s peak_bytes (its defaults: a CUDA GPU's
training kernel, foreach AdamW), for SD 1.5 at 512² and SDXL at
1024² with checkpointing. With `--tiny`, or without CUDA, it runs the `tiny` preset at small sizes in fp32 —
how the test suite keeps it
working. Fits in a few minutes on one GPU (the budget is 8).

    python benchmarks/gpu_check.py [--tiny] [--out docs/gpu.md]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from unetinspect.render.export import write_output
from unetinspect.render.formats import render as render_view
from unetinspect.render.profile_view import ProfileView, ms, percent
from unetinspect.render.units import human_bytes
from unetinspect.sources.inputs import InputSpec, make_inputs
from unetinspect.sources.live import as_diffusers
from unetinspect.sources.loading import load_unet
from unetinspect.views.profile import Profile, profile
from unetinspect.views.watch import watch

sys.path.insert(0, str(Path(__file__).parent))
from watch_overhead import loop_overhead  # noqa: E402  (a sibling script, not a package)

GPU_MODELS = [("sd15", 512), ("sdxl", 1024)]
TINY_MODELS = [("tiny", 64)]


@dataclass
class Sizes:
    """How much of everything: full runs on a GPU, a smoke run (`--tiny`) anywhere."""

    models: list[tuple[str, int]]
    dtype: torch.dtype
    warmup: int
    repeat: int
    steps: int
    rounds: int


def sizes_for(tiny: bool) -> Sizes:
    if tiny:
        return Sizes(TINY_MODELS, torch.float32, warmup=0, repeat=2, steps=2, rounds=1)
    return Sizes(GPU_MODELS, torch.float16, warmup=3, repeat=20, steps=10, rounds=3)


@dataclass
class ModelResult:
    preset: str
    pixels: int
    ours: Profile
    diffusers: Profile
    max_abs_diff: float


def check_model(preset: str, pixels: int, device: torch.device, sizes: Sizes) -> ModelResult:
    """`profile` with `impl` ours and diffusers (the same seeded weights), then both outputs on the same inputs."""
    spec = InputSpec(height=pixels, width=pixels)
    timing = dict(device=device, dtype=sizes.dtype, warmup=sizes.warmup, repeat=sizes.repeat)
    ours_profile = profile(preset, spec, **timing)
    release(device)
    theirs_profile = profile(preset, spec, impl="diffusers", **timing)
    release(device)
    ours = load_unet(preset, device=device, dtype=sizes.dtype)
    theirs = as_diffusers(ours)  # shares our weight tensors: no second copy in memory
    inputs = make_inputs(ours.config, spec, device=device, dtype=sizes.dtype)
    with torch.inference_mode():
        difference = (ours(**inputs) - theirs(**inputs).sample).abs().max().item()
    return ModelResult(preset, pixels, ours_profile, theirs_profile, difference)


@dataclass
class WatchResult:
    preset: str
    pixels: int
    report: Profile
    overhead: float


def check_watch(preset: str, pixels: int, device: torch.device, sizes: Sizes) -> WatchResult:
    """`watch` over a denoising loop of diffusers' UNet with guidance (batch 2), and what watching costs it."""
    model = as_diffusers(load_unet(preset, device=device, dtype=sizes.dtype))
    inputs = make_inputs(model.config, InputSpec(batch=2, height=pixels, width=pixels), device=device,
                         dtype=sizes.dtype)
    timesteps = torch.linspace(999, 1, sizes.steps).long().tolist()
    with torch.inference_mode():
        model(**inputs)  # warm-up
        with watch(model) as w:
            for t in timesteps:
                model(inputs["sample"], t, encoder_hidden_states=inputs["encoder_hidden_states"])
    overhead = loop_overhead(model, inputs, steps=sizes.steps, depth=1, rounds=sizes.rounds)
    return WatchResult(preset, pixels, w.report(), overhead)


TRAINING_CHECKS = [("sd15", 512, False), ("sdxl", 1024, True)]  # (preset, pixels, checkpointing), fp32, AdamW


def check_training(preset: str, pixels: int, checkpointed: bool, device: torch.device) -> list[str]:
    """A markdown row: `torch.cuda.max_memory_allocated()` over a steady training step against our peak_bytes."""
    from unetinspect.engine.memory import checkpointing
    from unetinspect.views.memory import Training, diffusers_checkpointed, memory

    spec = InputSpec(height=pixels, width=pixels)
    predicted = memory(preset, spec, train=True, training=Training(checkpointing=checkpointed)).totals.peak_bytes
    model = load_unet(preset, device=device).train()
    inputs = make_inputs(model.config, spec, device=device)
    optimizer = torch.optim.AdamW(model.parameters())
    with contextlib.ExitStack() as stack:
        if checkpointed:
            stack.enter_context(checkpointing(model, diffusers_checkpointed))
        for step in range(2):  # the first step creates the optimizer state; the second is the steady one
            if step:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            model(**inputs).float().mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    measured = torch.cuda.max_memory_allocated()
    del model, optimizer, inputs
    return [preset, f"{pixels}²", "yes" if checkpointed else "no", human_bytes(predicted), human_bytes(measured),
            f"{measured / predicted:.3f}"]


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def render(models: list[ModelResult], watched: WatchResult, device_name: str, seconds: float, tiny: bool,
           training: list[list[str]]) -> str:
    today = datetime.date.today().isoformat()
    versions = f"torch {torch.__version__}, diffusers {_diffusers_version()}, Python {platform.python_version()}"
    lines = [
        "# Measured on a GPU" if not tiny else "# GPU check (smoke run, tiny sizes)",
        "",
        f"`python benchmarks/gpu_check.py` on **{device_name}**, {today} ({versions}); the whole check took "
        f"{seconds:.0f} s. Random weights, the same seeded ones for our model and for "
        "diffusers' class (latency does not depend on their values). See docs/measuring.md for what each figure means.",
        "",
        "## Our model against diffusers' on the same weights",
        "",
    ]
    header = ["model", "size", "dtype", "ours ms", "diffusers ms", "ours / diffusers", "max |Δ| output",
              "hook overhead", "coverage", "peak memory", "MFU"]
    rows = []
    for r in models:
        t, d = r.ours.totals, r.diffusers.totals
        rows.append([r.preset, f"{r.pixels}²", r.ours.setup.dtype, ms(t.step.median), ms(d.step.median),
                     f"{t.step.median / d.step.median:.3f}", f"{r.max_abs_diff:.2e}",
                     f"×{t.overhead:.3f}" if t.overhead else "–", percent(t.coverage),
                     human_bytes(t.peak_memory) if t.peak_memory is not None else "–", percent(t.mfu)])
    lines += [markdown_table(header, rows), ""]
    w = watched.report
    batches = sorted({c.batch for c in w.calls})
    lines += [
        f"## `ui.watch` over a {len(w.calls)}-step loop of diffusers' UNet ({watched.preset}, {watched.pixels}², "
        "guidance: batch 2)",
        "",
        f"- calls recorded: {len(w.calls)} (batch {', '.join(map(str, batches))}); median call "
        f"{ms(w.totals.step.median)} ms; the blocks cover {percent(w.totals.coverage)} of each call",
        f"- the watched loop took ×{watched.overhead:.3f} the bare loop (median over rounds)",
        "",
        *(["## A training step against `memory --train` (fp32, AdamW as torch picks: foreach; attention as torch picks)", "",
           markdown_table(["model", "size", "checkpointing", "peak_bytes", "max_memory_allocated", "measured / ours"],
                          training), ""] if training else []),
        "## Per block: our model, first size",
        "",
        render_view(ProfileView(), "markdown", models[0].ours),
    ]
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub table, the first three columns (names) left-aligned and the figures right-aligned."""
    align = ["---" if i < 3 else "---:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |"
                     for line in [header, align, *rows])


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (also what runs without CUDA)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "docs" / "gpu.md")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    tiny = args.tiny or not cuda
    sizes = sizes_for(tiny)
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        print("no CUDA device: running the tiny check on the CPU", file=sys.stderr)
    start = time.perf_counter()
    models: list[ModelResult] = []
    for preset, pixels in sizes.models:
        print(f"profiling {preset} at {pixels}², ours and diffusers'", file=sys.stderr)
        models.append(check_model(preset, pixels, device, sizes))
        release(device)
    print("watching a denoising loop", file=sys.stderr)
    watched = check_watch(*sizes.models[0], device, sizes)
    training = []
    if not tiny:  # full-size training steps need the GPU's memory
        for preset, pixels, checkpointed in TRAINING_CHECKS:
            print(f"one training step of {preset} at {pixels}²", file=sys.stderr)
            training.append(check_training(preset, pixels, checkpointed, device))
            release(device)
    device_name = models[0].ours.device.name
    text = render(models, watched, device_name, time.perf_counter() - start, tiny, training)
    path = write_output(args.out, text)
    print(f"wrote {path}", file=sys.stderr)
    return path


if __name__ == "__main__":
    main()
