"""`unetinspect run`: one generation as a table (a row per block, its time in every step), JSON, the image itself
(PNG, through Pillow) or one self-contained HTML page — the image, the blocks' times step by step, and the prompt's
attention maps drawn over the image, hovered token by token.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetinspect.render.export import write_output
from unetinspect.render.formats import Column, View
from unetinspect.render.header import size_text

if TYPE_CHECKING:  # the command line declares this view's formats before torch is imported
    from unetinspect.views.run import RunResult


@dataclass(frozen=True)
class BlockRow:
    """One block of the UNet: its median over the steps, its share of the UNet's time, its time in each step,
    and its mean relative L1 change from one step to the next (None where it never ran twice)."""

    name: str
    type: str
    median_ms: float
    share: float
    per_step: list[float]
    drift: float | None


COLUMNS = (
    Column("block", "block", lambda r: r.name, style="cyan", fold=True, min_width=16),
    Column("type", "type", lambda r: r.type, priority=2),
    Column("median_ms", "median ms", lambda r: f"{r.median_ms:.2f}", value=lambda r: r.median_ms, justify="right"),
    Column("share", "share", lambda r: f"{100 * r.share:.1f}%", value=lambda r: r.share, justify="right"),
    Column("drift", "mean drift", lambda r: "–" if r.drift is None else f"{r.drift:.3f}", value=lambda r: r.drift,
           justify="right"),
    Column("ms_per_step", "ms in each step", lambda r: " ".join(f"{ms:.1f}" for ms in r.per_step),
           value=lambda r: " ".join(f"{ms:.4f}" for ms in r.per_step), fold=True, priority=1),
)


class RunView(View):
    """The table and JSON of a run; `png` is the generated image, `html` the page."""

    kind = "run"
    columns = COLUMNS
    file_formats = ("html", "png")

    def rows(self, result: RunResult) -> list[BlockRow]:
        return block_rows(result)

    def heading(self, result: RunResult) -> list[str]:
        return [*super().heading(result), run_line(result)]

    def totals(self, result: RunResult) -> list[tuple[str, str]]:
        calls = result.profile.calls
        return [
            ("pipeline call", f"{result.seconds:.2f} s with the block hooks (text encoder, {len(calls)} UNet calls "
                              "and VAE decoding)"),
            ("UNet", f"{sum(c.ms for c in calls):.1f} ms in all, batch {calls[0].batch} per call"),
            ("attention", f"{result.attention.grid().title}, mean of {result.attention.steps} steps"),
            ("drift", "mean drift: a block's relative L1 change between consecutive steps, "
                      "‖o_t − o_{t−1}‖₁ / ‖o_{t−1}‖₁, averaged over the steps"),
            *_cache_lines(result),
            *(("note", note) for note in result.notes),
        ]

    def data(self, result: RunResult) -> dict[str, Any]:
        maps = result.attention
        return {
            "pipeline": result.pipeline, "prompt": result.prompt, "steps": result.steps, "seed": result.seed,
            "guidance": result.guidance, "image": {"width": result.image.width, "height": result.image.height},
            "seconds": result.seconds,
            "calls": [{"index": c.index, "timestep": c.timestep, "batch": c.batch, "ms": c.ms}
                      for c in result.profile.calls],
            "blocks": [{"name": r.name, "type": r.type, "median_ms": r.median_ms, "share": r.share,
                        "ms_per_step": r.per_step} for r in block_rows(result)],
            "drift": {"timesteps": result.drift.timesteps, "rel_l1": result.drift.rel_l1,
                      "cosine": result.drift.cosine, "held_bytes": result.drift.held_bytes,
                      "conventions": list(result.drift.conventions)},
            "cache": _cache_data(result),
            "attention": {"text": maps.text, "batch": maps.batch_note, "steps": maps.steps,
                          "tokens": list(maps.tokens.labels) if maps.tokens else None,
                          "layers": [{"path": r.path, "size": list(r.size), "peak": r.peak, "share": r.share}
                                     for r in maps.summary_rows()]},
            "notes": list(result.notes),
        }

    def write(self, result: RunResult, fmt: str, path: Path, inputs: Sequence[str | Path]) -> Path:
        content = png_bytes(result.image) if fmt == "png" else run_html(result)
        return write_output(path, content, inputs)


def run_line(result: RunResult) -> str:
    return (f"{result.pipeline}: {result.steps} steps, seed {result.seed}, guidance {result.guidance:g}, "
            f"{result.image.width}×{result.image.height} px, prompt {result.attention.text.removeprefix('the prompt ')}")


def block_rows(result: RunResult) -> list[BlockRow]:
    """The blocks as the watch timed them (depth 1), each with its series over the steps."""
    return [BlockRow(b.name, b.type, b.latency.median, b.share, result.block_ms.get(b.name, []),
                     _mean(result.drift.rel_l1.get(b.name, [])))
            for b in result.profile.blocks]


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _cache_lines(result: RunResult) -> list[tuple[str, str]]:
    compared = result.cached
    if compared is None:
        return []
    cache = compared.cache
    predicted = " · ".join(f"{how} {value:.2f}×" for how, value in (("by time", cache.predicted_speedup_time),
                                                                     ("by FLOPs", cache.predicted_speedup_flops))
                           if value is not None)
    return [
        ("cache", f"{cache.schedule}: {cache.reused} block calls reused in {cache.calls} UNet calls"),
        ("speedup", f"{compared.speedup:.2f}× measured on the whole pipeline call ({compared.uncached_s:.2f} s → "
                    f"{compared.cached_s:.2f} s)" + (f"; predicted {predicted}" if predicted else "")),
        ("image cost", f"max |difference| {compared.max_abs_diff:.4f}, PSNR {_psnr(compared.psnr_db)} "
                       "(images in [0, 1])"),
    ]


def _psnr(db: float) -> str:
    return "∞ (identical)" if db == float("inf") else f"{db:.2f} dB"


def _cache_data(result: RunResult) -> dict[str, Any] | None:
    compared = result.cached
    if compared is None:
        return None
    cache = compared.cache
    return {"schedule": cache.schedule, "calls": cache.calls, "reused": cache.reused,
            "blocks": [{"block": b.block, "ran": b.ran, "reused": b.reused, "ms": b.ms, "flops": b.flops}
                       for b in cache.blocks],
            "uncached_s": compared.uncached_s, "cached_s": compared.cached_s, "speedup": compared.speedup,
            "predicted_speedup_time": cache.predicted_speedup_time,
            "predicted_speedup_flops": cache.predicted_speedup_flops,
            "max_abs_diff": compared.max_abs_diff, "psnr_db": compared.psnr_db,
            "conventions": list(cache.conventions)}


def png_bytes(image: Any) -> bytes:
    """The pipeline's PIL image as PNG bytes (Pillow writes it; nothing of ours touches the pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def run_html(result: RunResult) -> str:
    """The page: the image and what ran, the blocks' times per step, the prompt's maps over the image. Only the
    values are computed here; templates/run.html lays them out and escapes them."""
    from unetinspect.render.drift_view import heatmap_png
    from unetinspect.render.report import attention_data, run_page

    uri = _png_uri(png_bytes(result.image))
    grid = result.attention.grid()
    return run_page(
        f"{result.setup.label} · unetinspect run", {"kind": "run", "attention": attention_data(grid)}, grid,
        label=result.setup.label, run=run_line(result),
        setup=f"{size_text(result.setup.sizes)} · {result.setup.device} · {result.setup.dtype} · "
              f"pipeline call {result.seconds:.2f} s",
        notes=result.notes, image=_picture(result.image, 512, uri),
        times=_series_table(result, {r.name: r.per_step for r in block_rows(result)}, "{:.2f}", "241,105,19",
                            total=True),
        drift={"convention": result.drift.conventions[0], "heatmap": _png_uri(heatmap_png(result.drift)),
               "table": _series_table(result, {b: result.drift.rel_l1[b] for b in result.drift.blocks}, "{:.3f}",
                                      "59,82,139")},
        cache=_cache_values(result, uri))


def _picture(image: Any, largest: int, src: str) -> dict[str, Any]:
    """An image's data URI (`src`), its size, and the width it is shown at: at least 256 px on the page (a tiny test
    pipeline's 32 px image is scaled up, its pixels kept sharp), at most `largest`."""
    return {"src": src, "width": image.width, "height": image.height, "shown": max(256, min(largest, image.width))}


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _series_table(result: RunResult, series: Mapping[str, Sequence[float | None]], number: str, rgb: str,
                  total: bool = False) -> dict[str, Any]:
    """Blocks × steps, each cell shaded (`rgb` at an alpha) by its share of the largest cell (None: the block did
    not run then); `total` adds the UNet call's times."""
    calls = result.profile.calls
    top = max((v for values in series.values() for v in values if v is not None), default=0.0) or 1.0
    return {"rgb": rgb, "calls": [{"index": c.index, "timestep": _timestep(c.timestep)} for c in calls],
            "rows": [{"name": name, "cells": [None if v is None else
                                              {"text": number.format(v), "alpha": f"{min(1.0, v / top):.2f}"}
                                              for v in values]}
                     for name, values in series.items()],
            "total": [f"{c.ms:.2f}" for c in calls] if total else None}


def _cache_values(result: RunResult, uncached: str) -> dict[str, Any] | None:
    """The cached image beside the uncached one (`uncached`: its data URI), with what caching bought and cost."""
    if result.cached is None:
        return None
    cached = _png_uri(png_bytes(result.cached_image))
    return {"uncached": _picture(result.image, 384, uncached), "cached": _picture(result.cached_image, 384, cached),
            "facts": _cache_lines(result), "conventions": list(result.cached.cache.conventions)}


def _timestep(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"
