"""`unetinspect run`: one generation as a table (a row per block, its time in every step), JSON, the image itself
(PNG, through Pillow) or one self-contained HTML page — the image, the blocks' times step by step, and the prompt's
attention maps drawn over the image, hovered token by token.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from unetinspect.render.export import write_output
from unetinspect.render.formats import Column, View
from unetinspect.render.header import size_text
from unetinspect.render.report import attention_data, attention_section, html_page
from unetinspect.views.run import RunResult


@dataclass(frozen=True)
class BlockRow:
    """One block of the UNet: its median over the steps, its share of the UNet's time, its time in each step."""

    name: str
    type: str
    median_ms: float
    share: float
    per_step: list[float]


COLUMNS = (
    Column("block", "block", lambda r: r.name, style="cyan", fold=True, min_width=16),
    Column("type", "type", lambda r: r.type, priority=2),
    Column("median_ms", "median ms", lambda r: f"{r.median_ms:.2f}", value=lambda r: r.median_ms, justify="right"),
    Column("share", "share", lambda r: f"{100 * r.share:.1f}%", value=lambda r: r.share, justify="right"),
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
    return [BlockRow(b.name, b.type, b.latency.median, b.share, result.block_ms.get(b.name, []))
            for b in result.profile.blocks]


def png_bytes(image: Any) -> bytes:
    """The pipeline's PIL image as PNG bytes (Pillow writes it; nothing of ours touches the pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def run_html(result: RunResult) -> str:
    """The page: the image and what ran, the blocks' times per step, the prompt's maps over the image."""
    uri = "data:image/png;base64," + base64.b64encode(png_bytes(result.image)).decode("ascii")
    notes = "".join(f"<li>{escape(note)}</li>" for note in result.notes)
    header = (f"<h1>{escape(result.setup.label)}</h1><p class=\"heading\">{escape(run_line(result))}</p>"
              f"<p class=\"heading\">{escape(size_text(result.setup.sizes))} · {escape(result.setup.device)} · "
              f"{escape(result.setup.dtype)} · pipeline call {result.seconds:.2f} s</p>"
              + (f"<ul class=\"note\">{notes}</ul>" if notes else ""))
    body = f"""
<section id="image">
  <h2>The image</h2>
  <img src="{uri}" alt="the generated image" width="{result.image.width}" height="{result.image.height}"
   style="max-width:512px;height:auto;image-rendering:pixelated">
</section>
<section id="times">
  <h2>Block times in every step</h2>
  <p class="note">Milliseconds of each block of the UNet in each of its calls (one per step, both guidance halves
  in one batch), timed with the block hooks in every call. Shading: the share of the longest cell.</p>
  {_times_table(result)}
</section>
{attention_section(result.attention.grid(), under=uri)}"""
    data = {"kind": "run", "attention": attention_data(result.attention.grid())}
    return html_page(f"{result.setup.label} · unetinspect run", header, body, data)


def _times_table(result: RunResult) -> str:
    calls = result.profile.calls
    rows = block_rows(result)
    top = max((ms for r in rows for ms in r.per_step), default=0.0) or 1.0
    head = "".join(f'<th class="num">{c.index}<br><span class="note">t={_timestep(c.timestep)}</span></th>'
                   for c in calls)
    body = "".join(
        f"<tr><td>{escape(r.name)}</td>"
        + "".join(f'<td class="num" style="background:rgba(241,105,19,{ms / top:.2f})">{ms:.2f}</td>'
                  for ms in r.per_step) + "</tr>"
        for r in rows)
    total = "".join(f'<td class="num"><b>{c.ms:.2f}</b></td>' for c in calls)
    return (f'<div class="tree-wrap"><table id="step-times"><thead><tr><th>block</th>{head}</tr></thead>'
            f"<tbody>{body}<tr><td><b>UNet call</b></td>{total}</tr></tbody></table></div>")


def _timestep(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"
