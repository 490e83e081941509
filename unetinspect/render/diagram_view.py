"""The diagram as a view of the one output layer: its formats are files, drawn by Graphviz (render/graph.py).

Kept apart from the drawing so that the command line can offer the formats without importing Graphviz.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from unetinspect.errors import OutputError
from unetinspect.render.diagram_formats import FORMATS, Format
from unetinspect.render.export import check_output_path, write_output
from unetinspect.render.formats import FileView
from unetinspect.render.names import namer

if TYPE_CHECKING:
    from unetinspect.render.graph import Style
    from unetinspect.sources.session import Setup
    from unetinspect.views.graph import Graph


def format_of(path: Path, fmt: str | None = None) -> Format:
    """The output format: `fmt` if given, else the file's suffix."""
    name = (fmt or path.suffix.lstrip(".") or "svg").lower()
    if name not in FORMATS:
        raise OutputError(f"unknown diagram format {name!r}",
                          f"use one of {', '.join(FORMATS)}, by --format or the file's suffix")
    return name  # type: ignore[return-value]


def write_diagram(graph: Graph, path: Path, fmt: str | None = None, style: Style | None = None,
                  inputs: tuple[str | Path, ...] = ()) -> Path:
    """Render to `path`, whole or not at all.

    Without `dot` the DOT source is written beside it (`x.svg` → `x.dot`), so the reader still has the diagram,
    and an `OutputError` says so and how to install Graphviz; an existing `x.dot`, which the user did not name,
    is left as it is.
    """
    from unetinspect.render.graph import INSTALL_HINT, Style, render, to_dot

    style = style or Style()
    path = check_output_path(Path(path), inputs)
    kind = format_of(path, fmt)
    if kind != "dot" and shutil.which("dot") is None:
        fallback = path.with_suffix(".dot")
        try:
            done = f"wrote {write_output(fallback, to_dot(graph, style), inputs, replace=False)} instead"
        except OutputError as exc:
            done = f"the DOT source was not written either ({exc.message})"
        raise OutputError(f"cannot render {kind}: Graphviz's dot program is not installed; {done}", INSTALL_HINT)
    return write_output(path, render(graph, kind, style), inputs)


class DiagramView(FileView["Graph"]):
    """svg, png, pdf or dot, written whole or not at all; without Graphviz's `dot`, the .dot beside it."""

    kind = "diagram"
    file_formats = FORMATS

    def __init__(self, style: Style | None = None, *, names: str = "diffusers") -> None:
        self.style = style  # None: the default one
        self.names = names  # the boxes' names: diffusers', the original LDM paths or LoRA Block Weight IDs

    @classmethod
    def chosen_format(cls, fmt: str | None, output: Path | None = None) -> str:
        """`fmt`, else the file's suffix (an unknown one refused), else svg."""
        return format_of(output or Path("unet.svg"), fmt)

    def write(self, graph: Graph, fmt: str, path: Path, inputs: Sequence[str | Path]) -> Path:
        return write_diagram(named(graph, self.names), path, fmt, self.style, tuple(inputs))


def named(graph: Graph, names: str, setup: Setup | None = None) -> Graph:
    """The graph with its modules' boxes and clusters labelled in `names` (ids stay diffusers' paths, so the
    .dot files of two configs still diff line by line and the report finds its blocks); `setup` names the model
    where the graph does not carry it (the report's, built from a trace)."""
    shown = namer(setup or graph.setup, names)
    if names == "diffusers":
        return graph
    return replace(graph, nodes=[replace(node, label=shown(node.label)) for node in graph.nodes],
                   clusters=[replace(cluster, label=shown(cluster.label)) for cluster in graph.clusters])
