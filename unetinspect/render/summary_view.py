"""The summary as a rich table or tree, and as JSON / CSV / Markdown for scripts and docs.

Works from the plain data of a Summary (rows of shapes and numbers); imports nothing of torch.
"""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from unetinspect.render.header import setup_dict, setup_line
from unetinspect.render.units import human_bytes, human_count, human_flops, shape_str
from unetinspect.weights.safetensors import ITEM_SIZES

if TYPE_CHECKING:
    from unetinspect.analysis.summary import Row, Summary

JSON_SCHEMA_VERSION = 1


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


def _skips_text(row: Row) -> str:
    """Which earlier blocks' feature maps this call concatenates, compactly: "conv_in, down_blocks 0,0"."""
    groups: dict[str, list[str]] = {}
    for name, _ in row.skips:
        stem, _, index = name.rpartition(".")
        if stem and index.isdigit():
            groups.setdefault(stem, []).append(index)
        else:
            groups.setdefault(name, [])
    return ", ".join(f"{stem} {','.join(indices)}" if indices else stem for stem, indices in groups.items())


def _io_text(shapes: list[tuple[int, ...]]) -> str:
    """The main tensor (the feature map in, the feature map out); the rest are in the JSON."""
    return shape_str(shapes[0]) if shapes else ""


def _indented_name(row: Row) -> Text:
    """Blocks by their full path; their layers indented under them by the part of the path that is theirs."""
    if row.depth == 1:
        return Text(row.path, style="bold cyan")
    parts = row.path.split(".")
    own = ".".join(parts[-2:]) if len(parts) > 1 and parts[-1].split("#")[0].isdigit() else parts[-1]
    return Text("  " * (row.depth - 1) + own)


def heading(summary: Summary) -> str:
    return setup_line(summary.setup)


def summary_table(summary: Summary, depth: int) -> Group:
    trace = summary.trace
    table = Table(title=heading(summary), title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    table.add_column("module", style="cyan", overflow="fold", min_width=14)
    table.add_column("type", style="magenta", no_wrap=True, max_width=24)
    table.add_column("input", no_wrap=True)
    table.add_column("output", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("%", justify="right", style="dim", no_wrap=True)
    table.add_column("FLOPs", justify="right", no_wrap=True)
    table.add_column("%", justify="right", style="dim", no_wrap=True)
    table.add_column("skips in ←", style="green", overflow="fold")
    for row in summary.rows(depth):
        table.add_row(
            _indented_name(row), row.type, _io_text(row.inputs), _io_text(row.outputs),
            human_count(row.params) if row.params else "–", _percent(row.params, trace.total_params),
            human_flops(row.flops), _percent(row.flops, trace.flops), _skips_text(row),
        )
    return Group(table, totals_text(summary))


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


def totals_text(summary: Summary) -> Text:
    trace = summary.trace
    lines = [
        ("parameters", f"{trace.total_params:,} ({human_count(trace.total_params)}), trainable {trace.trainable_params:,}"),
        ("weights", _weights_size(summary)),
        ("FLOPs", f"{trace.flops:,} ({human_count(trace.flops, 'FLOPs')}) per forward pass "
                  f"= {human_count(trace.flops // 2, 'MACs')}; attention matmuls included"),
        ("activations", f"largest tensor {human_bytes(summary.peak_activation_bytes)}, "
                        f"all layer outputs {human_bytes(summary.activation_bytes)} (kept for backward in training)"),
    ]
    text = Text()
    for label, value in lines:
        text.append(f"{label:>12}  ", style="bold")
        text.append(value + "\n")
    return text


def summary_tree(summary: Summary, depth: int) -> Group:
    trace = summary.trace
    tree = Tree(Text(heading(summary), style="bold"))
    nodes = {0: tree}
    for record in trace.records[1:]:
        if record.depth > depth:
            continue
        label = Text.assemble(
            (record.name, "cyan"), " ", (record.type, "magenta"), "  ",
            (_io_text([t.shape for t in record.inputs]) + " → " + _io_text([t.shape for t in record.outputs]), ""),
            ("  " + human_count(record.params) + " params" if record.params else "", "dim"),
            ("  " + human_count(record.flops, "FLOPs") if record.flops else "", "dim"),
        )
        nodes[record.index] = nodes[record.parent].add(label)
    return Group(tree, totals_text(summary))


# ---- machine-readable ---------------------------------------------------------------------------------------------


def summary_dict(summary: Summary, depth: int) -> dict[str, Any]:
    """The documented JSON interface (docs/cli.md); `schema` changes only when a field changes meaning."""
    trace = summary.trace
    return {
        "schema": JSON_SCHEMA_VERSION,
        "setup": setup_dict(summary.setup),
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
        "depth": depth,
        "modules": [
            {
                "path": row.path, "type": row.type, "depth": row.depth,
                "inputs": [list(s) for s in row.inputs], "outputs": [list(s) for s in row.outputs],
                "params": row.params, "flops": row.flops,
                "skips": [{"from": name, "shape": list(shape)} for name, shape in row.skips],
            }
            for row in summary.rows(depth)
        ],
    }


def summary_json(summary: Summary, depth: int) -> str:
    return json.dumps(summary_dict(summary, depth), indent=2) + "\n"


CSV_FIELDS = ["path", "type", "depth", "inputs", "outputs", "params", "flops", "skips"]


def summary_csv(summary: Summary, depth: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for row in summary.rows(depth):
        writer.writerow([
            row.path, row.type, row.depth, " ".join(shape_str(s) for s in row.inputs),
            " ".join(shape_str(s) for s in row.outputs), row.params, row.flops, _skips_text(row),
        ])
    return out.getvalue()


def summary_markdown(summary: Summary, depth: int) -> str:
    trace = summary.trace
    lines = [f"**{heading(summary)}**", "", "| module | type | input | output | params | FLOPs | skips in |",
             "| --- | --- | --- | --- | ---: | ---: | --- |"]
    for row in summary.rows(depth):
        lines.append(f"| `{row.path}` | {row.type} | {_io_text(row.inputs)} | {_io_text(row.outputs)} | "
                     f"{row.params:,} | {human_count(row.flops, 'FLOPs') if row.flops else '–'} | {_skips_text(row)} |")
    lines += ["", f"Total: {trace.total_params:,} parameters, {trace.flops:,} FLOPs "
                  f"({human_count(trace.flops, 'FLOPs')}) per forward pass.", ""]
    return "\n".join(lines)
