"""A LoRA report as a rich view or JSON; from the plain data of a LoraReport, nothing of torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from unetinspect.render.formats import View
from unetinspect.render.units import human_count
from unetinspect.render.weights_view import _plain

if TYPE_CHECKING:
    from unetinspect.views.lora import LoraReport

UNMATCHED_SHOWN = 8
BLOCKS_NOTE = ("block weight: the LoRA Block Weight ID (INnn / OUTnn = input_blocks / output_blocks nn of the "
               "original UNet, M00 = middle_block, BASE = the text encoders); norm: ‖scale · up @ down‖_F of the "
               "block's updates together\n")


class LoraView(View["LoraReport"]):
    """The file's facts, the blocks it touches, and the modules that do not fit the base; JSON for scripts."""

    kind = "lora"

    def table(self, report: LoraReport) -> RenderableType:
        parts: list[RenderableType] = [_facts(report), Text(), _blocks_table(report), Text(BLOCKS_NOTE, style="dim"),
                                       _block_weights(report)]
        if report.unmatched:
            parts.append(_unmatched_table(report))
        return Group(*parts)

    def data(self, report: LoraReport) -> dict[str, Any]:
        return report.to_dict()


def _facts(report: LoraReport) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    variants = ", ".join(f"{name} ×{count:,}" for name, count in report.variants.items())
    text = report.text_encoder_modules
    by_target = {t: sum(1 for m in text if m.target == t) for t in dict.fromkeys(m.target for m in text)}
    unet = len(report.unet_modules)
    fit = (f"{len(report.matched):,} of {unet:,} UNet modules match {report.base}"
           + (f", {len(report.unmatched):,} do not" if report.unmatched else ""))
    likely = (f"{report.likely_base} ({report.likely_base_matches:,} of {unet:,} modules fit)"
              if report.likely_base else "none of the presets")
    rows = [
        ("lora", _plain(report.source)),
        ("format", report.format),
        ("modules", f"{len(report.modules):,} ({variants}), {human_count(report.params)} parameters"),
        ("UNet", f"{unet:,} modules"),
        ("text encoders", ", ".join(f"{t}: {n:,} modules" for t, n in by_target.items()) or "none"),
        ("base", Text(fit, style="green" if not report.unmatched else "yellow")),
        ("likely base", likely + ("" if report.base_given else " — pass --base SOURCE to check another")),
    ]
    if report.unparsed:
        rows.append(("other keys", f"{len(report.unparsed):,}, e.g. {report.unparsed[0]}"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _blocks_table(report: LoraReport) -> Table:
    table = Table(title=f"UNet blocks touched (mapped onto {report.base})", title_justify="left", title_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("block", "block weight", "modules", "rank", "alpha", "params", "norm"):
        table.add_column(name, justify="left" if name.startswith("block") else "right",
                         style="cyan" if name == "block" else None)
    for block in report.blocks:
        ranks = ",".join(map(str, block.ranks)) or "–"
        alphas = ",".join(f"{a:g}" for a in block.alphas) or "–"
        norm = f"{block.norm:.4g}" if block.norm is not None else "–"
        table.add_row(block.block, block.block_weight or "–", f"{block.modules:,}", ranks, alphas,
                      human_count(block.params), norm)
    return table


def _block_weights(report: LoraReport) -> Table:
    """Strength per LoRA Block Weight ID, the vector that keeps exactly what the LoRA touches, and a preview."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    strengths = report.strength_by_id()
    table.add_row("norm by ID", "  ".join(f"{i} {'?' if v is None else f'{v:.3g}'}" for i, v in strengths.items()
                                           if v is None or v > 0) or "none")
    table.add_row("block weights", Text(report.block_weight_vector(), style="cyan"))
    table.add_row("", Text("(the LoRA Block Weight vector, in the extension's order, that keeps exactly the blocks "
                           "this LoRA touches)", style="dim"))
    if report.lbw is not None:
        preview = report.lbw
        scaled = ", ".join(f"{i} ×{preview.weights[i]:g} ({n} modules)" for i, n in preview.scaled.items())
        left = "?" if preview.norm_left is None else f"{100 * preview.norm_left:.1f}%"
        table.add_row("--lbw", f"{preview.vector}: scales {scaled or 'nothing'}; keeps {left} of the LoRA's norm")
    return table


def _unmatched_table(report: LoraReport) -> Table:
    missing = report.unmatched
    table = Table(title=f"{len(missing):,} UNet modules that do not fit {report.base}", title_justify="left",
                  title_style="bold yellow", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("module in the file", style="cyan", overflow="fold")
    table.add_column("reason")
    for module in missing[:UNMATCHED_SHOWN]:
        table.add_row(_plain(module.name), module.reason or "")
    if len(missing) > UNMATCHED_SHOWN:
        table.add_row(f"… and {len(missing) - UNMATCHED_SHOWN:,} more (-f json lists them all)", "")
    return table
