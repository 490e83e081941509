"""`unetinspect run`: one generation as a table (a row per block, its time in every step), JSON, the image itself
(PNG, through Pillow) or one self-contained HTML page — the image, the blocks' times step by step, and the prompt's
attention maps drawn over the image, hovered token by token.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
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
    """The page: the image and what ran, the blocks' times per step, the prompt's maps over the image."""
    from unetinspect.render.drift_view import heatmap_png
    from unetinspect.render.report import attention_data, attention_section, html_page

    uri = _data_uri(result.image)
    rows = block_rows(result)
    notes = "".join(f"<li>{escape(note)}</li>" for note in result.notes)
    header = (f"<h1>{escape(result.setup.label)}</h1><p class=\"heading\">{escape(run_line(result))}</p>"
              f"<p class=\"heading\">{escape(size_text(result.setup.sizes))} · {escape(result.setup.device)} · "
              f"{escape(result.setup.dtype)} · pipeline call {result.seconds:.2f} s</p>"
              + (f"<ul class=\"note\">{notes}</ul>" if notes else ""))
    body = f"""
<section id="image">
  <h2>The image</h2>
  <img src="{uri}" alt="the generated image" {_shown(result.image, 512)}>
</section>
<section id="times">
  <h2>Block times in every step</h2>
  <p class="note">Milliseconds of each block of the UNet in each of its calls (one per step, both guidance halves
  in one batch), timed with the block hooks in every call. Shading: the share of the longest cell.</p>
  {_series_table(result, {r.name: r.per_step for r in rows}, "{:.2f}", "241,105,19", total=True)}
</section>
<section id="drift">
  <h2>Drift: how much each block's output changed since the step before</h2>
  <p class="note">{escape(result.drift.conventions[0])}. Block Caching's Fig. 2b for this pipeline: blocks whose
  change stays low from step to step are what a cache could reuse.</p>
  <img src="data:image/png;base64,{base64.b64encode(heatmap_png(result.drift)).decode("ascii")}"
   alt="drift heatmap, blocks by steps">
  <details><summary>the numbers</summary>
  {_series_table(result, {b: result.drift.rel_l1[b] for b in result.drift.blocks}, "{:.3f}", "59,82,139")}
  </details>
</section>
{_cache_section(result, uri)}
{attention_section(result.attention.grid(), under=uri)}"""
    data = {"kind": "run", "attention": attention_data(result.attention.grid())}
    return html_page(f"{result.setup.label} · unetinspect run", header, body, data)


def _shown(image: Any, largest: int) -> str:
    """An image's size attributes and style: at least 256 px wide on the page (a tiny test pipeline's 32 px image
    is scaled up, its pixels kept sharp), at most `largest`."""
    width = max(256, min(largest, image.width))
    return (f'width="{image.width}" height="{image.height}" style="width:{width}px;height:auto;'
            'image-rendering:pixelated"')


def _data_uri(image: Any) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def _series_table(result: RunResult, series: Mapping[str, Sequence[float | None]], number: str, rgb: str,
                  total: bool = False) -> str:
    """Blocks × steps, each cell shaded by its share of the largest cell; `total` adds the UNet call's times."""
    calls = result.profile.calls
    top = max((v for values in series.values() for v in values if v is not None), default=0.0) or 1.0
    head = "".join(f'<th class="num">{c.index}<br><span class="note">t={_timestep(c.timestep)}</span></th>'
                   for c in calls)
    body = "".join(
        f"<tr><td>{escape(name)}</td>"
        + "".join('<td class="num">–</td>' if v is None else
                  f'<td class="num" style="background:rgba({rgb},{min(1.0, v / top):.2f})">{number.format(v)}</td>'
                  for v in values) + "</tr>"
        for name, values in series.items())
    if total:
        body += "<tr><td><b>UNet call</b></td>" + "".join(f'<td class="num"><b>{c.ms:.2f}</b></td>'
                                                          for c in calls) + "</tr>"
    return (f'<div class="tree-wrap"><table class="steps"><thead><tr><th>block</th>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _cache_section(result: RunResult, uri: str) -> str:
    """The cached image beside the uncached one, with what caching bought and cost."""
    if result.cached is None:
        return ""
    facts = "".join(f"<dt>{escape(label)}</dt><dd>{escape(text)}</dd>" for label, text in _cache_lines(result))
    size = _shown(result.image, 384)
    conventions = "".join(f"<li>{escape(c)}</li>" for c in result.cached.cache.conventions)
    return f"""
<section id="cache">
  <h2>Cached against uncached, same seed</h2>
  <div style="display:flex;gap:16px">
    <figure><img src="{uri}" alt="uncached" {size}><figcaption>uncached</figcaption></figure>
    <figure><img src="{_data_uri(result.cached_image)}" alt="cached" {size}><figcaption>cached</figcaption></figure>
  </div>
  <dl>{facts}</dl>
  <ul class="note">{conventions}</ul>
</section>"""


def _timestep(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"
