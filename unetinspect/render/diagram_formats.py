"""The diagram's file formats: a leaf that the drawing (`render.graph`, which imports Graphviz) and the view
(`render.diagram_view`, which the command line imports without Graphviz) both read, so that neither imports the
other to name them."""

from __future__ import annotations

from typing import Literal

Format = Literal["svg", "png", "pdf", "dot"]
FORMATS: tuple[Format, ...] = ("svg", "png", "pdf", "dot")
