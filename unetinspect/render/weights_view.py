"""What a checkpoint holds, as rich tables or JSON (through `formats`); from a WeightsReport's plain data, no torch."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from unetinspect.configs.unet import UNetConfig
from unetinspect.render.formats import View
from unetinspect.render.units import human_bytes, human_count, shape_str

if TYPE_CHECKING:
    from unetinspect.families import FamilyConfig
    from unetinspect.views.weights import Part, TensorEntry, WeightsReport


def weights_view(report: WeightsReport) -> Group:
    """The overview: what the file is, its parts, its config and nearest preset, parameters per block, metadata."""
    parts: list[RenderableType] = [kind_line(report), _facts(report), Text(),
                                   _parts_table("parts", report.components, with_bytes=True)]
    if report.blocks:
        model = "ControlNet" if report.kind.kind == "controlnet" else "UNet"
        title = ("parameters per motion module" if report.kind.kind == "motion adapter"
                 else f"{model} parameters per block")
        parts.append(_parts_table(title, report.blocks, with_bytes=False))
    if report.metadata:
        parts.append(_metadata_table(report.metadata))
    return Group(*parts)


def kind_line(report: WeightsReport) -> Text:
    """What the file is, before anything else, and the command that reads it."""
    line = Text.assemble(("kind ", "bold"), (report.kind.kind, "bold green"))
    command = report.kind.command_for(report.source)
    if command:
        line.append("  — read it with ")
        text = _plain(command)
        text.stylize("cyan")
        line.append_text(text)
    return line


def keys_table(report: WeightsReport, pattern: str | None) -> Table:
    """Every tensor matching the glob, with shape and dtype; LDM files show our name beside theirs.

    Sized to fit the longest SDXL names in 160 columns, so a piped listing keeps one tensor per line for grep.
    """
    entries = report.matching(pattern)
    renamed = report.layout == "ldm"
    matching = f" matching {pattern!r}" if pattern else ""
    title = _plain(f"{len(entries):,} of {len(report.tensors):,} tensors{matching}")
    prefixes = {entry.name.removesuffix(entry.short_name) for entry in entries} - {""}
    caption = f"(UNet tensors are under {', '.join(sorted(prefixes))} in the file)" if prefixes else None
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=caption, caption_justify="left")
    table.add_column("tensor in the file" if renamed else "tensor", style="cyan", overflow="fold")
    if renamed:
        table.add_column("our name (diffusers)", no_wrap=True)
    table.add_column("shape", no_wrap=True)
    table.add_column("dtype", no_wrap=True)
    for entry in entries:
        row = [_plain(entry.short_name)] + ([_our_name(entry)] if renamed else [])
        table.add_row(*row, shape_str(entry.shape), entry.dtype)
    return table


class WeightsView(View["WeightsReport"]):
    """The overview of a checkpoint, or (with `listing`) its tensors matching `pattern`; JSON for scripts."""

    kind = "weights"

    def __init__(self, pattern: str | None = None, listing: bool = False) -> None:
        self.pattern, self.listing = pattern, listing

    def table(self, report: WeightsReport) -> RenderableType:
        return keys_table(report, self.pattern) if self.listing else weights_view(report)

    def data(self, report: WeightsReport) -> dict[str, Any]:
        """The report for scripts; the tensor list only when it was asked for (--keys or a pattern)."""
        data: dict[str, Any] = {
            "source": report.source, "file_kind": report.kind.kind, "read_with": report.kind.command_for(report.source),
            "layout": report.layout, "format": report.format,
            "files": [{"path": path, "bytes": size} for path, size in report.files],
            "disk_bytes": report.disk_bytes, "memory_bytes": report.memory_bytes,
            "tensor_count": len(report.tensors), "dtypes": report.dtypes,
            "components": [dataclasses.asdict(p) for p in report.components],
            "config_origin": report.config_origin or None, "config_note": report.config_note,
            "config_mismatch": report.config_mismatch,
            "nearest_preset": (None if report.nearest_preset is None else
                               {"name": report.nearest_preset.name, "exact": report.nearest_preset.exact,
                                "differences": list(report.nearest_preset.differences)}),
            "blocks": [dataclasses.asdict(p) for p in report.blocks],
            "metadata": report.metadata,
            "config": report.config.to_dict() if report.config is not None else None,
        }
        if self.listing:
            data["tensors"] = [dict(t._asdict(), shape=list(t.shape)) for t in report.matching(self.pattern)]
        return data


def _plain(value: str, limit: int | None = None) -> Text:
    """A string from the file as inert text: no rich markup, no terminal control sequences, bounded length.

    Names and metadata come from strangers' files; an escape sequence in them must not reach the terminal.
    """
    if limit is not None and len(value) > limit:
        value = value[:limit] + f"… ({len(value):,} characters)"
    return Text("".join(c if c.isprintable() else repr(c)[1:-1] for c in value))


def _our_name(entry: TensorEntry) -> Text:
    return _plain(entry.ours) if entry.ours else Text(entry.component, style="dim")


def _facts(report: WeightsReport) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    dtypes = ", ".join(f"{name} ×{count:,}" for name, count in report.dtypes.items())
    rows = [
        ("checkpoint", _plain(report.source)),
        ("format", report.format),
        ("tensors", f"{len(report.tensors):,} ({dtypes})" if dtypes else "none"),
        ("on disk", human_bytes(report.disk_bytes) + (f" in {len(report.files)} files" if len(report.files) > 1
                                                      else "")),
        ("in memory", f"{human_bytes(report.memory_bytes)} as stored"),
        *_config_rows(report),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _parts_table(title: str, parts: list[Part], with_bytes: bool) -> Table:
    total = sum(p.params for p in parts)
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", style="cyan")
    table.add_column("tensors", justify="right")
    table.add_column("parameters", justify="right")
    table.add_column("", justify="right", style="dim")
    table.add_column("%", justify="right", style="dim")
    if with_bytes:
        table.add_column("bytes", justify="right")
    for part in parts:
        name = f"{part.name} (e.g. {', '.join(part.examples)})" if part.examples else part.name
        row = [_plain(name, 120), f"{part.tensors:,}", f"{part.params:,}", human_count(part.params),
               f"{100 * part.params / total:.1f}%" if total else "–"]
        table.add_row(*row, *([human_bytes(part.nbytes)] if with_bytes else []))
    return table


def _config_rows(report: WeightsReport) -> list[tuple[str, Text | str]]:
    """Where the config came from, which preset it is (or is nearest), and its structure in one line."""
    if report.config is None:
        return [("config", Text.assemble(("unknown: ", "yellow"), _plain(report.config_note or "")))]
    rows: list[tuple[str, Text | str]] = [("config", report.config_origin)]
    if report.config_mismatch:
        rows.append(("mismatch", Text.assemble(("the tensors do not fit this config: ", "yellow"),
                                               _plain(report.config_mismatch, 300))))
    match = report.nearest_preset
    if match is not None and match.exact:
        rows.append(("preset", Text(f"exactly the {match.name} preset", style="green")))
    elif match is not None:
        rows.append(("preset", Text(f"nearest {match.name}, differing in {', '.join(match.differences)}",
                                    style="yellow")))
    unet = _image_unet(report.config)
    if unet is not None:
        rows.append(("structure", _config_line(unet, report.config.to_dict())))
    return rows


def _image_unet(config: FamilyConfig) -> UNetConfig | None:
    """The image UNet's config a config is, or holds as `unet` (a ControlNet's, AnimateDiff's, SVD's: their
    blocks are structured alike); None for a family's config that holds none."""
    unet = config if isinstance(config, UNetConfig) else getattr(config, "unet", None)
    return unet if isinstance(unet, UNetConfig) else None


def _config_line(config: UNetConfig, stated: dict[str, Any]) -> str:
    """The structural facts that tell SD 1.x, 2.x, SDXL and their variants apart, on one line. How attention
    projects is said only where the family's config.json (`stated`) says it: SVD's states none, and its
    transformers project linearly whatever the image UNet half it holds says."""
    attention = "".join("A" if t.startswith("CrossAttn") else "·" for t in config.down_block_types)
    projection = stated.get("use_linear_projection")
    facts = [
        f"channels {config.block_out_channels}", f"attention {attention}", f"layers {config.layers_per_block}",
        f"in/out {config.in_channels}/{config.out_channels}", f"text {config.cross_attention_dim}",
        f"heads {config.heads_per_block}", f"depth {config.transformer_layers_per_block}",
        *([] if projection is None else ["linear proj" if projection else "conv proj"]),
    ]
    if config.addition_embed_type:
        facts.append(f"{config.addition_embed_type} ({config.projection_class_embeddings_input_dim})")
    return " · ".join(facts)


def _metadata_table(metadata: dict[str, str]) -> Table:
    table = Table(title="metadata", title_justify="left", title_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("key", style="cyan", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in metadata.items():
        table.add_row(_plain(key, 100), _plain(value, 300))
    return table
