"""Graphviz diagrams of a `Graph`: the U as people draw it, in DOT, SVG, PNG or PDF.

At the two whole-model levels the down path runs down one side and the up path back up the other (its edges
are declared backwards with `dir=back`, so that dot ranks it upwards) and nodes that face each other across the
U share a rank: each down level and the up level it feeds at the blocks level, each skip's two ends at the
layers level, so skips run straight across. The time embedding and the text feed almost every block: as edges
they would cross everything, so each block carries small coloured tags (`temb`, `text`) instead, and the node
that makes the tensor carries the same tag with the number of blocks it feeds.

Colours tell kinds apart and step in lightness too (blocks with attention are darker than those without), so a
grayscale print keeps them apart; node ids are the module paths, so the DOT of two configs diffs line by line.
Everything but DOT needs Graphviz's `dot` program.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from html import escape
from typing import Literal

import graphviz

from unetinspect.errors import OutputError
from unetinspect.families import diagram_kinds
from unetinspect.render.diagram_formats import Format
from unetinspect.render.header import setup_line
from unetinspect.render.units import human_count, shape_str
from unetinspect.views.graph import BLOCK_KINDS, Edge, Graph, Node, kind_labels

INSTALL_HINT = "install Graphviz (apt-get install graphviz, or brew install graphviz) and run again"
FONT = "Helvetica"
PNG_DPI = 150  # sharp enough to print at column width; SVG and PDF are vector anyway


@dataclass(frozen=True)
class Style:
    """What the reader asked to see."""

    direction: Literal["TB", "LR"] = "TB"
    shapes: bool = True
    params: bool = True
    theme: Literal["light", "dark"] = "light"


@dataclass(frozen=True)
class Palette:
    """Colours of one theme; `fills` by node kind (see `views.graph.kind_of`)."""

    background: str
    text: str
    muted: str
    edge: str
    skip: str
    control: str  # a ControlNet's residual edges
    frame: str
    fills: dict[str, str]
    tags: tuple[str, ...]  # one per conditioning tensor (time embedding, text, ...)


# The fill of each node kind as (light, dark), declared once for both themes; a family's own kinds bring theirs
# (`Family.diagram_kinds`). Gray levels of the light theme's fills (0-255): io/op/act 255, embedding 238,
# conv/linear 232, norm 232, resample 221, resnet and plain blocks 209, attention and cross-attention blocks 168,
# mid block 136. The block kinds of the other UNets (IF, Kandinsky, unCLIP, k-diffusion) get hues of their own,
# named in the legend.
FILLS: dict[str, tuple[str, str]] = {
    "input": ("#ffffff", "#16181d"), "output": ("#ffffff", "#16181d"), "op": ("#ffffff", "#16181d"),
    "act": ("#ffffff", "#24272e"), "other": ("#f0f0f0", "#2e3138"), "norm": ("#e8e8e8", "#33363d"),
    "conv": ("#dcebf7", "#243b50"), "linear": ("#dcebf7", "#243b50"), "embedding": ("#fbf0c4", "#4d4418"),
    "resample": ("#cfe8c9", "#2c4a2a"), "res_block": ("#b9d7f0", "#2f5f8a"), "resnet": ("#b9d7f0", "#2f5f8a"),
    "feedforward": ("#f6c89a", "#7a5230"), "attention": ("#e8965a", "#9c5c28"), "attn_block": ("#e8965a", "#9c5c28"),
    "mid_block": ("#a985b5", "#6e4a7a"), "simple_attn_block": ("#e58a8a", "#8e3e3e"),
    "self_attn_block": ("#f2c46b", "#8a6a20"), "dual_attention": ("#d9a05a", "#7e5a22"),
    "resample_block": ("#9fd0c0", "#2a6658"), "k_block": ("#c2c8ee", "#3e4680"),
    "k_attn_block": ("#e7a0c8", "#86406a"), "mid_plain_block": ("#cdb8d8", "#57485f"),
}
# Everything of a theme but the fills.
_THEMES = {
    "light": Palette(background="white", text="#1a1a1a", muted="#404040", edge="#303030", skip="#2160a8",
                     control="#b0307e", frame="#9a9a9a", fills={}, tags=("#f2d64b", "#a8e0a8", "#fdb0c0", "#beaed4")),
    "dark": Palette(background="#16181d", text="#eeeeee", muted="#b4b4b4", edge="#c8c8c8", skip="#7fb2ff",
                    control="#f08cc8", frame="#6a6a6a", fills={}, tags=("#d8bb2a", "#5fb35f", "#d0788a", "#9a8ac0")),
}


def palette(theme: Literal["light", "dark"]) -> Palette:
    """The colours of `theme`: the fills above and those of every registered family's own kinds."""
    dark = theme == "dark"
    fills = {kind: pair[dark] for kind, pair in FILLS.items()}
    fills |= {k.kind: k.dark if dark else k.light for k in diagram_kinds()}
    return replace(_THEMES[theme], fills=fills)

# How ops and conditioning inputs read in a figure.
_OP_LABELS = {"add": "+", "mul": "×", "div": "÷", "sub": "−", "cat": "concat",
              "scaled_dot_product_attention": "softmax(QKᵀ/√d)·V"}
_TAG_LABELS = {"encoder_hidden_states": "text", "image_only_indicator": "image-only flag"}
# What the blocks attend to when `encoder_hid_proj` makes it: Kandinsky's context is image tokens, not text.
_CONTEXT_LABELS = {"ImageProjection": "image", "TextImageProjection": "text+image"}
_TAG_TEXT = "#1a1a1a"  # tags are light in both themes


def to_dot(graph: Graph, style: Style = Style(), dpi: int | None = None) -> str:
    """The Graphviz source of a graph: the same graph and style always give the same text."""
    return _Drawing(graph, style, dpi).source()


def render(graph: Graph, fmt: Format, style: Style = Style()) -> bytes:
    """The diagram as bytes in `fmt`; everything but "dot" runs Graphviz's `dot`."""
    if fmt == "dot":
        return to_dot(graph, style).encode()
    if shutil.which("dot") is None:
        raise OutputError("Graphviz's dot program is not installed", INSTALL_HINT)
    source = to_dot(graph, style, dpi=PNG_DPI if fmt == "png" else None)
    try:
        return graphviz.Source(source).pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound:
        raise OutputError("Graphviz's dot program is not installed", INSTALL_HINT) from None
    except graphviz.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise OutputError(f"dot failed to render {fmt}: {detail[-1] if detail else exc}") from None


class _Drawing:
    """One graph drawn in one style: labels, edge styles, the U's rows."""

    def __init__(self, graph: Graph, style: Style, dpi: int | None) -> None:
        self.graph = graph
        self.style = style
        self.dpi = dpi
        self.colors = palette(style.theme)
        self.nodes = {n.id: n for n in graph.nodes}
        self.clusters = {c.id: c for c in graph.clusters}
        self.tags = self._tag_colors()
        self.rows = self._rows()
        self.row_of = {node_id: i for i, row in enumerate(self.rows) for node_id in row}

    def source(self) -> str:
        c = self.colors
        dot = graphviz.Digraph(name=svg_id(self.graph.name or "unet"))
        dot.attr("graph", rankdir=self.style.direction, bgcolor=c.background, fontname=FONT, fontcolor=c.text,
                 fontsize="12", nodesep="0.3" if self.style.direction == "TB" else "1.0", ranksep="0.4",
                 newrank="true", labelloc="t", labeljust="l",
                 pad="0.25", label=self._title(), **({"dpi": str(self.dpi)} if self.dpi else {}))
        dot.attr("node", fontname=FONT, fontcolor=c.text, fontsize="10", color=c.edge, penwidth="1.0",
                 shape="box", style="rounded,filled", margin="0.08,0.04")
        dot.attr("edge", fontname=FONT, fontcolor=c.muted, fontsize="8", color=c.edge, arrowsize="0.6",
                 penwidth="1.2")
        self._add_clusters(dot)  # one statement a line: DOT files diff line by line
        for edge in self.graph.edges:
            self._add_edge(dot, edge)
        for row in self.rows:
            same = graphviz.Digraph()
            same.attr(rank="same")
            for node_id in row:
                same.node(dot_name(node_id))
            dot.subgraph(same)
        return dot.source

    # ---- title and legend ---------------------------------------------------------------------------------------

    def _title(self) -> str:
        g = self.graph
        parts = [f"<B>{escape(g.name)}</B>"] if g.name else []
        parts += [escape(p) for p in (g.scope, g.type) if p]
        if self.style.params:
            parts.append(f"{human_count(g.params)} parameters")
        rows = [f'<TR><TD ALIGN="LEFT">{" · ".join(parts)}</TD></TR>']
        if g.setup is not None:  # the setup header, as every view gives it
            rows.append(f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="9">{escape(setup_line(g.setup))}</FONT></TD></TR>')
        if g.is_u:
            rows.append(f'<TR><TD ALIGN="LEFT">{self._legend()}</TD></TR>')
        return f'<<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="2">{"".join(rows)}</TABLE>>'

    def _legend(self) -> str:
        c = self.colors
        items = [f'<FONT COLOR="{c.muted}">solid: feature maps</FONT>',
                 f'<FONT COLOR="{c.skip}">dashed: skip connections, concatenated on the up path</FONT>']
        if self.graph.edges_of("control"):
            items.append(f'<FONT COLOR="{c.control}">dotted: ControlNet residuals, added to that output</FONT>')
        tags = "".join(self._tag_cell(color, name) for name, color in self._tag_names().items())
        cells = "".join(f'<TD>{item}</TD><TD WIDTH="12"></TD>' for item in items)
        if tags:
            cells += (f'<TD><TABLE BORDER="0" CELLSPACING="2" CELLPADDING="0"><TR>{tags}</TR></TABLE></TD>'
                      f'<TD><FONT COLOR="{c.muted}">conditioning a block reads; "→ n" where it is made</FONT></TD>')
        # Swatches as coloured glyphs in one text cell, three a line: a row wider than the one above would
        # stretch that row's table (Graphviz spreads a cell's spare width over a nested table's columns).
        swatches = [f'<FONT COLOR="{c.fills.get(kind, c.fills["other"])}">██</FONT>&nbsp;{escape(label)}'
                    for kind, label in self._kinds_shown().items()]
        kinds = '<BR ALIGN="LEFT"/>'.join("&nbsp;&nbsp;&nbsp;".join(swatches[i:i + 3])
                                          for i in range(0, len(swatches), 3))
        rows = [f'<TR><TD><TABLE BORDER="0" CELLSPACING="0" CELLPADDING="0"><TR>{cells}</TR></TABLE></TD></TR>']
        if kinds:
            rows.append(f'<TR><TD ALIGN="LEFT" BALIGN="LEFT"><FONT COLOR="{c.muted}">{kinds}</FONT></TD></TR>')
        return (f'<FONT POINT-SIZE="9"><TABLE BORDER="0" CELLSPACING="0" CELLPADDING="0">{"".join(rows)}</TABLE>'
                '</FONT>')

    def _kinds_shown(self) -> dict[str, str]:
        """The kinds of block (and, opened up, of layer) this diagram colours, with what each is."""
        present = {n.kind for n in self.graph.nodes} | {cl.kind for cl in self.graph.clusters}
        return {kind: label for kind, label in kind_labels().items() if kind in present}

    # ---- nodes and clusters -------------------------------------------------------------------------------------

    def _add_clusters(self, dot: graphviz.Digraph) -> None:
        """Every node, inside nested clusters; conditioning nodes of the U in a frame of their own."""
        members: dict[str | None, list[Node]] = {}
        for node in self.graph.nodes:
            home = node.cluster
            if home is None and self.graph.is_u and not node.on_path and node.kind != "controlnet":
                home = "conditioning"  # a ControlNet stands beside the down path, which it feeds
            members.setdefault(home, []).append(node)
        children: dict[str | None, list[str]] = {}
        for cluster in self.graph.clusters:
            children.setdefault(cluster.parent, []).append(cluster.id)
        if "conditioning" in members:
            children.setdefault(None, []).append("conditioning")

        def add(parent: graphviz.Digraph, cluster_id: str | None) -> None:
            for node in members.get(cluster_id, []):
                self._add_node(parent, node)
            for child in children.get(cluster_id, []):
                cluster = graphviz.Digraph(name=dot_name("cluster_" + child))
                cluster.attr(**self._cluster_attrs(child))
                add(cluster, child)
                parent.subgraph(cluster)

        add(dot, None)

    def _cluster_attrs(self, cluster_id: str) -> dict[str, str]:
        c = self.colors
        if cluster_id == "conditioning":
            return {"id": "cluster_conditioning", "label": "<<B>conditioning</B>>", "style": "rounded,dashed",
                    "color": c.frame, "fontsize": "10", "labeljust": "l"}
        cl = self.clusters[cluster_id]
        params = f" · {human_count(cl.params)}" if self.style.params and cl.params else ""
        name = escape(self._short(cl.label, cl.parent))
        fill = c.fills.get(cl.kind, c.fills["other"])
        return {"id": svg_id("cluster_" + cl.id),
                "label": f'<<B>{name}</B> <FONT POINT-SIZE="9">{escape(cl.type)}{params}</FONT>>',
                "style": "rounded,filled", "fillcolor": _mix(fill, c.background, 0.25), "color": fill,
                "penwidth": "1.4", "fontsize": "11", "labeljust": "l"}

    def _add_node(self, dot: graphviz.Digraph, node: Node) -> None:
        c = self.colors
        attrs: dict[str, str] = {"id": svg_id(node.id), "class": node.kind,
                                 "fillcolor": c.fills.get(node.kind, c.fills["other"])}
        if node.side in ("down", "up") and node.kind != "op":
            attrs["group"] = node.side  # dot keeps a group in a straight column where it can
        if node.kind in ("input", "output"):
            attrs.update(style="rounded,dashed,filled", label=self._label(node, [self._shape(node.shape)]))
        elif node.kind == "op" and node.id in self.tags:  # SDXL's summed embedding: the op and its tag
            attrs.update(label=self._label(replace(node, label=_OP_LABELS.get(node.type, node.type)), []))
        elif node.kind == "op":
            text = _OP_LABELS.get(node.type, node.type)
            attrs.update(shape="circle" if len(text) == 1 else "box", margin="0.03", width="0.28", height="0.28",
                         fixedsize="true" if len(text) == 1 else "false", label=graphviz.escape(text))
        else:
            lines = [f'<FONT POINT-SIZE="8">{escape(node.type)}</FONT>']
            if self.style.params and node.params:
                lines.append(f'<FONT POINT-SIZE="8" COLOR="{c.muted}">{human_count(node.params)} params</FONT>')
            attrs["label"] = self._label(node, lines)
            if node.kind in BLOCK_KINDS:
                attrs["penwidth"] = "1.6"
        dot.node(dot_name(node.id), **attrs)

    def _label(self, node: Node, lines: list[str]) -> str:
        """Name in bold, the given lines, and the conditioning tags, as an HTML-like label."""
        rows = [f"<B>{escape(self._short(node.label, node.cluster))}</B>", *[line for line in lines if line]]
        tags = self._tags_of(node)
        if tags:
            rows.append(f'<TABLE BORDER="0" CELLSPACING="2" CELLPADDING="0"><TR>{tags}</TR></TABLE>')
        cells = "".join(f"<TR><TD>{row}</TD></TR>" for row in rows)
        return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">{cells}</TABLE>>'

    def _shape(self, shape: tuple[int, ...] | None) -> str:
        if not self.style.shapes or shape is None:
            return ""
        return f'<FONT POINT-SIZE="8">{escape(shape_str(shape))}</FONT>'

    def _short(self, label: str, cluster: str | None) -> str:
        """A name inside its cluster (or the focused module), whose label already says the rest."""
        prefix = cluster or self.graph.scope
        return label[len(prefix) + 1:] if prefix and label.startswith(prefix + ".") else label

    # ---- conditioning tags --------------------------------------------------------------------------------------

    def _tag_colors(self) -> dict[str, str]:
        """A colour per node whose output conditions the path; only the U levels draw tags instead of edges."""
        if not self.graph.is_u:
            return {}
        sources = list(dict.fromkeys(e.source for e in self.graph.edges_of("condition")))
        return {s: self.colors.tags[i % len(self.colors.tags)] for i, s in enumerate(sources)}

    def _tag_names(self) -> dict[str, str]:
        """Tag text → colour, as the consuming blocks name the tensor (`temb`, `text`)."""
        return {self._tag_label(e): self.tags[e.source] for e in self.graph.edges_of("condition")
                if e.source in self.tags}

    def _tags_of(self, node: Node) -> str:
        """On a consumer the tensor's name, on its source what it feeds: `temb → 9 blocks`."""
        if not self.tags:
            return ""
        fed = self.graph.edges_of("condition")
        cells = [self._tag_cell(self.tags[e.source], self._tag_label(e)) for e in fed
                 if e.target == node.id]
        if node.id in self.tags:
            out = [e for e in fed if e.source == node.id]
            names = " / ".join(dict.fromkeys(self._tag_label(e) for e in out))
            targets = {e.target for e in out}
            types = {self.nodes[t].type for t in targets}
            what = types.pop() if len(types) == 1 else "blocks"
            cells.append(self._tag_cell(self.tags[node.id], f"{names} → {len(targets)} {what}"))
        return "".join(cells)

    def _tag_label(self, edge: Edge) -> str:
        """A conditioning tensor as a reader knows it: `temb`, `text`, or `image` where a projection of image
        embeddings stands in for the text."""
        name = edge.name.rpartition(".")[2]  # `frame_inputs.image_only_indicator`: a dict of inputs
        if name == "encoder_hidden_states" and self.nodes[edge.source].type in _CONTEXT_LABELS:
            return _CONTEXT_LABELS[self.nodes[edge.source].type]
        setup = self.graph.setup
        if name == "encoder_hidden_states" and setup is not None and setup.sizes.context != "text":
            return setup.sizes.context.split()[0]  # SVD's context is an image embedding
        return _TAG_LABELS.get(name, name)

    @staticmethod
    def _tag_cell(color: str, text: str) -> str:
        return (f'<TD BGCOLOR="{color}" BORDER="1" COLOR="{_TAG_TEXT}" CELLPADDING="1">'
                f'<FONT POINT-SIZE="7" COLOR="{_TAG_TEXT}">&nbsp;{escape(text)}&nbsp;</FONT></TD>')

    # ---- edges and the U ----------------------------------------------------------------------------------------

    def _add_edge(self, dot: graphviz.Digraph, edge: Edge) -> None:
        if edge.kind == "condition" and self.tags:
            return  # drawn as tags on both ends
        c = self.colors
        source, target = self.nodes[edge.source], self.nodes[edge.target]
        attrs: dict[str, str] = {"id": svg_id(edge.id.replace("->", "--")), "class": edge.kind}
        if self.style.shapes:
            attrs["label"] = f" {shape_str(edge.shape)} "
        if edge.kind == "skip":
            attrs.update(color=c.skip, fontcolor=c.skip, style="dashed", penwidth="1.1", constraint="false")
            if "label" in attrs and self.style.direction == "LR":  # parallel flat edges: place labels apart
                attrs["xlabel"] = attrs.pop("label")
        elif edge.kind == "condition":
            attrs.update(style="dashed", color=c.muted, penwidth="1.0")
        elif edge.kind == "control":
            attrs.update(style="dotted", color=c.control, fontcolor=c.control, penwidth="1.2", constraint="false")
        if source.kind == "input" and not source.on_path and not self.graph.is_u:
            attrs["weight"] = "0"  # a module's temb/text branch hangs beside where it is used, not at the top
        same_row = self.row_of.get(edge.source, -1) == self.row_of.get(edge.target, -2)
        upward = target.side == "up" and source.side in ("up", "bottom") and not same_row
        if upward and target.kind == "op" and source.cluster != target.cluster:
            attrs["weight"] = "0"  # an up block's concat may step left of the block below: no staircase
        if upward:  # the up path climbs: declare the edge backwards so that dot ranks it that way
            attrs["dir"] = "back"
            dot.edge(dot_name(edge.target), dot_name(edge.source), **attrs)
        else:
            dot.edge(dot_name(edge.source), dot_name(edge.target), **attrs)

    def _rows(self) -> list[list[str]]:
        """Nodes drawn side by side across the U.

        At the layers level: each skip's two ends, and the concat it enters beside the layer that concat feeds
        (every down layer sends one skip, so the rows never conflict). At the blocks level: each down level with
        the up level beside it. Unclustered nodes that no skip row holds are paired by level as well.
        """
        if not self.graph.is_u:
            return []
        rows = []
        if self.graph.level == "layers":
            rows = [[e.source, e.target, *self._fed_by_op(e.target)] for e in self.graph.edges_of("skip")]
        taken = {i for row in rows for i in row}
        levels: dict[int, list[str]] = {}
        for node in self.graph.nodes:
            if node.level is not None and node.level >= 0 and node.id not in taken and (
                    node.cluster is None or self.graph.level == "blocks"):
                levels.setdefault(node.level, []).append(node.id)
        rows += [ids for _, ids in sorted(levels.items())]
        return [row for row in rows if len(row) > 1]

    def _fed_by_op(self, node_id: str) -> list[str]:
        """The one node an op feeds, if `node_id` is an op."""
        if self.nodes[node_id].kind != "op":
            return []
        targets = [e.target for e in self.graph.edges if e.source == node_id]
        return targets if len(targets) == 1 else []


def _mix(color: str, background: str, amount: float) -> str:
    """`amount` of `color` over `background` (both #rrggbb, or a name for white): a cluster's faint fill."""
    def rgb(value: str) -> list[int]:
        value = "#ffffff" if not value.startswith("#") else value
        return [int(value[i:i + 2], 16) for i in (1, 3, 5)]

    mixed = [round(amount * a + (1 - amount) * b) for a, b in zip(rgb(color), rgb(background))]
    return "#" + "".join(f"{v:02x}" for v in mixed)


def dot_name(node_id: str) -> str:
    """A node id as a DOT node or cluster name: never read as an HTML label or a backslash escape, and with no
    colon, which graphviz's `edge()` reads as a port (`input:sample` → `input%3Asample`; xflr6/graphviz#53).
    The SVG element keeps the node id itself (its `id` attribute), which is what the report finds nodes by."""
    return graphviz.escape(node_id.replace("%", "%25").replace(":", "%3A"))


def svg_id(text: str) -> str:
    """An id for the SVG element: the node id with characters XML ids cannot hold replaced."""
    return "".join(ch if ch.isalnum() or ch in "._-:" else "_" for ch in text)
