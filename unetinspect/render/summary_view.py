"""The summary: one row per module call with shapes, parameters, FLOPs and skips; as a table, tree or for scripts.

Works from the plain data of a Summary (rows of shapes and numbers); imports nothing of torch. The columns are
declared once below; `formats` makes the table, CSV and Markdown from them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.text import Text
from rich.tree import Tree

from unetinspect.render.formats import CSV, TABLE, Column, Line, View, heading_text, shapes_text, totals_grid
from unetinspect.render.names import namer, names_data
from unetinspect.render.units import human_bytes, human_count, human_flops, shape_str, share
from unetinspect.weights.safetensors import ITEM_SIZES

if TYPE_CHECKING:
    from unetinspect.engine.trace import Trace
    from unetinspect.views.summary import Row, Summary


def _skips_text(row: Row, shown: Callable[[str], str] = str) -> str:
    """Which earlier blocks' feature maps this call concatenates, compactly: "conv_in, down_blocks 0,0" (in
    another naming each by its name: "IN00, IN01, IN02")."""
    groups: dict[str, list[str]] = {}
    for name, _ in row.skips:
        if shown(name) != name:
            groups.setdefault(shown(name), [])
            continue
        stem, _, index = name.rpartition(".")
        if stem and index.isdigit():
            groups.setdefault(stem, []).append(index)
        else:
            groups.setdefault(name, [])
    return ", ".join(f"{stem} {','.join(indices)}" if indices else stem for stem, indices in groups.items())


def _io_text(shapes: list[tuple[int, ...]]) -> str:
    """The main tensor (the feature map in, the feature map out); the rest are in the JSON and CSV."""
    return shape_str(shapes[0]) if shapes else ""


def _indented_name(line: Line[Row, Trace]) -> Text:
    """Blocks by their full path; their layers indented under them by the part of the path that is theirs (in
    another naming, by their whole name: `input_blocks.4.1` shares no stem with its block's `input_blocks.4-6`)."""
    row, name = line.row, line.shown(line.row.path)
    if row.depth == 1:
        return Text(name, style="bold cyan")
    if name != row.path:
        return Text("  " * (row.depth - 1) + name)
    parts = row.path.split(".")
    own = ".".join(parts[-2:]) if len(parts) > 1 and parts[-1].split("#")[0].isdigit() else parts[-1]
    return Text("  " * (row.depth - 1) + own)


# Priority: what a narrow terminal loses first (highest first): the shares, the input (the row above's output),
# the skips, the type, the output. The module, its parameters and its FLOPs always stay.
COLUMNS = (
    Column("path", "module", _indented_name, value=lambda l: l.shown(l.row.path),
           markdown=lambda l: f"`{l.shown(l.row.path)}`", style="cyan", fold=True, min_width=24),
    Column("type", "type", lambda l: l.row.type, style="magenta", priority=2),
    Column("depth", "depth", lambda l: l.row.depth, formats=frozenset({CSV})),
    Column("inputs", "input", lambda l: _io_text(l.row.inputs), value=lambda l: shapes_text(l.row.inputs),
           priority=4),
    Column("outputs", "output", lambda l: _io_text(l.row.outputs), value=lambda l: shapes_text(l.row.outputs),
           priority=1),
    Column("params", "params", lambda l: human_count(l.row.params) if l.row.params else "–",
           value=lambda l: l.row.params, markdown=lambda l: f"{l.row.params:,}", justify="right"),
    Column("params_share", "%", lambda l: share(l.row.params, l.whole.total_params), justify="right",
           style="dim", priority=5, formats=frozenset({TABLE})),
    Column("flops", "FLOPs", lambda l: human_flops(l.row.flops), value=lambda l: l.row.flops, justify="right"),
    Column("flops_share", "%", lambda l: share(l.row.flops, l.whole.flops), justify="right", style="dim",
           priority=5, formats=frozenset({TABLE})),
    Column("skips", "skips in ←", lambda l: _skips_text(l.row, l.shown), style="green", priority=3, fold=True),
)


class SummaryView(View["Summary"]):
    """Every module call down to `depth` (1 = blocks)."""

    kind = "summary"
    columns = COLUMNS

    def __init__(self, depth: int = 1, *, names: str = "diffusers") -> None:
        self.depth, self.names = depth, names

    def rows(self, summary: Summary) -> list[Line[Row, Trace]]:
        shown = namer(summary.setup, self.names)
        return [Line(row, summary.trace, shown) for row in summary.rows(self.depth)]

    def totals(self, summary: Summary) -> list[tuple[str, str]]:
        trace = summary.trace
        return [
            ("parameters", f"{trace.total_params:,} ({human_count(trace.total_params)}), "
                           f"trainable {trace.trainable_params:,}"),
            ("weights", _weights_size(summary)),
            ("FLOPs", f"{trace.flops:,} ({human_count(trace.flops, 'FLOPs')}) per forward pass "
                      f"= {human_count(trace.flops // 2, 'MACs')}; attention matmuls included"),
            ("activations", f"largest tensor {human_bytes(summary.peak_activation_bytes)}, all layer outputs "
                            f"{human_bytes(summary.activation_bytes)} (kept for backward in training)"),
        ]

    def tree(self, summary: Summary) -> RenderableType:
        tree = Tree(heading_text(self.heading(summary)))
        shown = namer(summary.setup, self.names)
        nodes = {0: tree}
        for record in summary.trace.records[1:]:
            if record.depth > self.depth:
                continue
            label = Text.assemble(
                (record.name if self.names == "diffusers" else shown(record.path), "cyan"), " ",
                (record.type, "magenta"), "  ",
                (_io_text([t.shape for t in record.inputs]) + " → " + _io_text([t.shape for t in record.outputs]), ""),
                ("  " + human_count(record.params) + " params" if record.params else "", "dim"),
                ("  " + human_count(record.flops, "FLOPs") if record.flops else "", "dim"),
            )
            nodes[record.index] = nodes[record.parent or 0].add(label)  # only the root has no parent
        return Group(tree, totals_grid(self.totals(summary)))

    def data(self, summary: Summary) -> dict[str, Any]:
        """The documented JSON interface (docs/cli.md): the config and inputs, the totals, the modules."""
        trace = summary.trace
        return {
            "config": summary.config.to_dict() if summary.config is not None else None,
            "inputs": {name: list(shape) for name, shape in summary.inputs.items()},
            "totals": {
                "params": trace.total_params,
                "trainable_params": trace.trainable_params,
                "param_bytes": trace.param_bytes,
                "flops": trace.flops,
                "macs": trace.flops // 2,
                "activation_bytes": summary.activation_bytes,
                "peak_activation_bytes": summary.peak_activation_bytes,
            },
            "depth": self.depth,
            "modules": [
                {
                    "path": row.path, **names_data(summary.setup, row.path), "type": row.type, "depth": row.depth,
                    "inputs": [list(s) for s in row.inputs], "outputs": [list(s) for s in row.outputs],
                    "params": row.params, "flops": row.flops,
                    "skips": [{"from": name, "shape": list(shape)} for name, shape in row.skips],
                }
                for row in summary.rows(self.depth)
            ],
        }


def _weights_size(summary: Summary) -> str:
    """The weights' size as stored where a checkpoint says (fp16 files are half the fp32 model), else as run."""
    stored = summary.setup.weight_dtypes
    if len(stored) == 1 and stored[0] in ITEM_SIZES:
        size = summary.trace.total_params * ITEM_SIZES[stored[0]]
        text = f"{human_bytes(size)} stored as {stored[0]}"
        if summary.setup.device != "meta":
            text += f", {human_bytes(summary.trace.param_bytes)} in {summary.setup.dtype} as run"
        return text
    return f"{human_bytes(summary.trace.param_bytes)} in {summary.setup.dtype}"
