"""The diagram as data: nodes, edges and clusters with stable ids, computed from a Trace. No Graphviz here.

Every edge is a tensor that really flowed: a node's input is connected to whichever shown call or op produced
that very tensor (by the trace's tensor keys), looking through view ops (`reshape`, `getitem`, ...) and through
calls that are not shown. Nothing is inferred from the config, so skips, conditioning and shapes are right for
any UNet, including ones the presets do not cover.

Three levels of detail:
- `blocks`: the direct children of the model (conv_in, each down block, mid_block, each up block, the output
  head, and the time/text conditioning);
- `layers`: the blocks of the U opened into their resnets, transformers and resamplers (one cluster per block);
- focus on one module path: that module opened down to its leaves, with the ops between them (`+`, `cat`).

At the two U levels every node on the sample's path gets a `side` (down, bottom, up) and a `level` (equal for
nodes that face each other across the U) so a renderer can draw the U, and each edge a kind: `data` (the main
path), `skip` (a tensor handed from one block to a later one besides the main path: the down side's residuals)
or `condition` (the time embedding, the text: tensors from outside the path).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from unetinspect.configs.block_types import BLOCK_TYPES
from unetinspect.errors import UnetInspectError
from unetinspect.families import DiagramKind, diagram_kinds

if TYPE_CHECKING:
    from unetinspect.engine.trace import CallRecord, OpRecord, TensorMeta, Trace
    from unetinspect.sources.inputs import InputSpec
    from unetinspect.sources.session import Setup, SourceOrModel

Level = Literal["blocks", "layers"]
LEVELS: tuple[Level, ...] = ("blocks", "layers")

# Ops that only reshape, slice or retype a tensor: edges are drawn through them, they are not nodes.
VIEW_OPS = frozenset({
    "view", "reshape", "permute", "transpose", "contiguous", "getitem", "unsqueeze", "squeeze", "flatten",
    "expand", "chunk", "split", "to", "float", "half", "bfloat16", "type", "clone", "detach",
})
# Ops that read only their input's shape, dtype and device, never its values: no edge into them (SVD's
# `sample.new_zeros(batch, 0)` does not make the time embedding depend on the latent).
SHAPE_ONLY_OPS = frozenset({
    "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor", "zeros_like", "ones_like", "empty_like",
    "full_like", "rand_like", "randn_like", "randint_like",
})
# Ops that join tensors: with a single input that holds any elements they hand it on unchanged (SVD concatenates
# its time ids' embedding to an empty text embedding), so edges are drawn through them like through a view.
_JOINS = frozenset({"cat", "concat", "concatenate", "hstack", "vstack"})

# Colour families: a block type by the catalogue's kind (block_types.py); any other module by the first fragment of
# its class name that matches (each family's own kinds first, `families.diagram_kinds`: a ControlNet's class names
# hold "Block" too).
_LAYER_KINDS: tuple[tuple[str, str], ...] = (
    ("Resnet", "resnet"), ("DualTransformer", "dual_attention"),
    ("Transformer", "attention"), ("Attention", "attention"), ("Downsample", "resample"), ("Upsample", "resample"),
    ("Conv", "conv"), ("Norm", "norm"), ("Timestep", "embedding"), ("Embedding", "embedding"),
    ("Fourier", "embedding"), ("Projection", "embedding"), ("GEGLU", "feedforward"), ("FeedForward", "feedforward"),
    ("Linear", "linear"), ("SiLU", "act"), ("Mish", "act"), ("GELU", "act"), ("ReLU", "act"), ("Sigmoid", "act"),
    ("Tanh", "act"),
)

# The kinds that are whole blocks of the U (drawn with a heavier frame).
BLOCK_KINDS = frozenset(block.diagram_kind for block in BLOCK_TYPES.values())

# What the kinds of blocks and of their layers are, for a diagram's legend (in this order; the families' own kinds
# after the middle block's, see `kind_labels`).
_BLOCK_LABELS: dict[str, str] = {
    "res_block": "resnets",
    "attn_block": "resnets + transformers (self- and cross-attention)",
    "simple_attn_block": "resnets + simple cross-attention (text keys beside the pixels')",
    "self_attn_block": "resnets + self-attention",
    "resample_block": "resnets, resampling with a resnet",
    "k_block": "k-diffusion resnets (norms read the time embedding)",
    "k_attn_block": "k-diffusion resnets + attention",
    "mid_block": "middle: resnets + cross-attention",
    "mid_plain_block": "middle: resnets (+ self-attention)",
}
_LAYER_LABELS: dict[str, str] = {
    "resnet": "resnet",
    "attention": "transformer / attention",
    "dual_attention": "two transformers, one per text",
    "resample": "down- / upsampler",
}


def kind_labels() -> dict[str, str]:
    """Every kind a legend may show, with its text: the blocks', every registered family's own, the layers'."""
    return {**_BLOCK_LABELS, **{k.kind: k.legend for k in diagram_kinds()}, **_LAYER_LABELS}


def kind_of(type_name: str, family_kinds: tuple[DiagramKind, ...] | None = None) -> str:
    """The colour family of a module class: diffusers' class names say what a block is. `family_kinds`: the
    registry's (`families.diagram_kinds`), when the caller has read them once for a whole graph."""
    kinds = diagram_kinds() if family_kinds is None else family_kinds
    family_kind = next((k.kind for k in kinds if k.fragment in type_name), None)
    if family_kind is not None:
        return family_kind
    if type_name in BLOCK_TYPES:
        return BLOCK_TYPES[type_name].diagram_kind
    return next((kind for part, kind in _LAYER_KINDS if part in type_name), "other")


@dataclass(frozen=True)
class Node:
    """One box: a module call, an op, or an input/output of the shown scope."""

    id: str  # stable across runs and configs: the module path ("down_blocks.1"), "input:sample", "mid_block/add#1"
    label: str  # what a reader calls it: the path, the input's name, the op's name
    type: str  # the module class, the op ("cat"), or "input" / "output"
    kind: str  # colour family (see kind_of), "op", "input" or "output"
    params: int = 0
    shape: tuple[int, ...] | None = None  # its first output (inputs and outputs: the tensor itself)
    cluster: str | None = None  # id of the innermost cluster holding it
    on_path: bool = False  # reached from the scope's first input (the latent), not conditioning
    side: Literal["down", "bottom", "up"] | None = None  # U levels only
    level: int | None = None  # U levels only: 0 at the bottom of the U, counting up on both sides


@dataclass(frozen=True)
class Edge:
    """One tensor flowing from `source` into input `name` of `target`."""

    source: str
    target: str
    name: str
    shape: tuple[int, ...]
    kind: Literal["data", "skip", "condition", "control"] = "data"

    @property
    def id(self) -> str:
        return f"{self.source}->{self.target}:{self.name}"


@dataclass(frozen=True)
class Cluster:
    """A module opened up to show its insides (a block at the layers level, any module in a focus view)."""

    id: str  # the module path
    label: str
    type: str
    kind: str
    params: int
    parent: str | None  # enclosing cluster, for nested clusters in focus views


@dataclass(frozen=True)
class Graph:
    """What a diagram shows, nodes in execution order (inputs first); `level` is "blocks", "layers" or "focus"."""

    name: str  # what was traced: a preset name, a file name
    scope: str  # the module path shown ("" for the whole model)
    type: str  # its class
    params: int  # its parameters
    level: str
    nodes: list[Node]
    edges: list[Edge]
    clusters: list[Cluster] = field(default_factory=list)
    setup: Setup | None = None  # what was opened, when the graph came from a session

    @property
    def is_u(self) -> bool:
        """Laid out as the U (down side, bottom, up side): the two whole-model levels."""
        return self.level in LEVELS

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def edges_of(self, kind: str) -> list[Edge]:
        return [e for e in self.edges if e.kind == kind]


def build_graph(trace: Trace, level: Level = "blocks", focus: str | None = None, name: str = "",
                open_depth: int | None = None, root: str = "") -> Graph:
    """The graph of a trace at a level, or of one module (`focus`, a module path) opened to its leaves.

    `open_depth` opens a focused module only that many levels (1: its direct layers as nodes), for a view of
    one block that stays readable when its transformers hold ten layers each (SDXL).

    The trace must have been made with `record_ops=True` (see `trace_for_diagram`) for edges through the code
    between calls: an up block's skip concatenation, a resnet's residual add, SDXL's summed embeddings.

    `root` draws one module of the trace as the U (`unet` in a ControlNet step); inputs it is handed by modules
    outside it (a ControlNet's residuals) become edges from those modules instead of input nodes.
    """
    if focus is not None:
        scope = _find(trace, focus)
        expanded = {scope.index} | {r.index for r in trace.descendants(scope) if r.children
                                    and (open_depth is None or r.depth < scope.depth + open_depth)}
        nodes, edges, clusters = _Builder(trace, scope, expanded).build()
        return _with_path(Graph(name, scope.path, scope.type, scope.params, "focus", nodes, edges, clusters))
    if level not in LEVELS:
        raise UnetInspectError(f"unknown level {level!r}", f"use one of: {', '.join(LEVELS)}")
    root_call = _find(trace, root) if root else trace.root
    nodes, edges, _ = _Builder(trace, root_call, {root_call.index}).build()
    blocks = _with_path(Graph(name, root, root_call.type, root_call.params, "blocks", nodes, edges))
    if level == "layers":
        on_path = {n.id for n in blocks.nodes if n.on_path}
        opened = {root_call.index} | {r.index for r in trace.records
                                      if r.parent == root_call.index and r.children and r.name in on_path}
        nodes, edges, clusters = _Builder(trace, root_call, opened).build()
        graph = _with_path(replace(blocks, level="layers", nodes=nodes, edges=edges, clusters=clusters))
        return _shape_u(_from_outside(graph, trace, root_call), block_of=lambda n: n.cluster or n.id)
    return _shape_u(_from_outside(blocks, trace, root_call), block_of=lambda n: n.id)


def diagram_graph(source: SourceOrModel = None, spec: InputSpec | None = None, level: Level = "blocks",
                  focus: str | None = None, **source_options: Any) -> Graph:
    """The graph of a source (preset, config, folder, checkpoint or session), named after it: what `diagram`
    draws."""
    from unetinspect.sources.open import open_session

    session = open_session(source, spec or _default_spec(), device="meta", **source_options)
    root = "unet" if session.controlnets else ""  # a ControlledUNet: the U is its UNet, the ControlNets beside it
    if root and focus is not None and not focus.startswith(("unet", "controlnets")):
        focus = f"{root}.{focus}"
    return replace(build_graph(trace_for_diagram(session), level, focus, name=session.setup.label, root=root),
                   setup=session.setup)


def trace_for_diagram(source: SourceOrModel, spec: InputSpec | None = None) -> Trace:
    """A meta-device trace with its ops recorded: real shapes, no weights read, about a second for SDXL.

    The imports are here so that the graph model itself (and render/graph.py, which reads it) does not depend
    on torch: only running the model does.
    """
    from unetinspect.engine.trace import trace_model
    from unetinspect.sources.open import open_session

    session = open_session(source, spec or _default_spec(), device="meta")
    return trace_model(session.model, session.inputs, record_ops=True)


def _default_spec() -> InputSpec:
    from unetinspect.sources.inputs import InputSpec

    return InputSpec()


def _find(trace: Trace, path: str) -> CallRecord:
    try:
        return trace.find(path)
    except KeyError:
        blocks = ", ".join(r.path for r in trace.at_depth(1))
        raise UnetInspectError(f"no module {path!r} was called in this model",
                               f"give a module path such as down_blocks.1 or mid_block.attentions.0; "
                               f"the blocks are {blocks}") from None


class _Builder:
    """Connects the shown calls and ops of one scope by the tensors that flowed between them."""

    def __init__(self, trace: Trace, scope: CallRecord, expanded: set[int]) -> None:
        self.trace = trace
        self.scope = scope
        self.expanded = expanded
        self.nodes: dict[str, Node] = {}
        self.when: dict[str, tuple[int, int, int]] = {}  # node id → when it ran, as in `made`
        self.edges: list[Edge] = []
        # tensor key → [(execution order, node id or op index)], to find who made a tensor before a consumer
        self.made: dict[int | None, list[tuple[tuple[int, int, int], str | int]]] = defaultdict(list)
        self.op_ids: dict[int, str] = {}
        self.op_counts: dict[tuple[str, str], int] = defaultdict(int)
        self.family_kinds = diagram_kinds()  # read once for the whole graph

    def build(self) -> tuple[list[Node], list[Edge], list[Cluster]]:
        scope, trace = self.scope, self.trace
        shown = [r for r in trace.descendants(scope) if r.index not in self.expanded
                 and (r.parent in self.expanded)]
        for tensor in scope.inputs:
            node = Node(f"input:{tensor.name}", tensor.name, "input", "input", shape=tensor.shape)
            self._add(node, [], (-1, 0, 0))
            self.made[tensor.key].append(((-1, 0, 0), node.id))
        for op in trace.ops:
            if op.parent in self.expanded:
                for out in op.outputs:
                    self.made[out.key].append(((op.position, 0, op.index), op.index))
        for record in shown:
            for out in record.outputs:
                self.made[out.key].append(((record.index, 1, 0), record.name))
        for record in shown:
            node = Node(record.name, record.name, record.type, kind_of(record.type, self.family_kinds), record.params,
                        record.outputs[0].shape if record.outputs else None, self._home(record.parent))
            used = self._used_inside(record)
            when = (record.index, 1, 0)
            self._add(node, [(t, when) for t in record.inputs if used is None or t.key in used], when)
        end = (len(trace.records) + 1, 0, 0)  # after every op too: SVD's output is reshaped back to frames last
        for tensor in _distinct(scope.outputs):
            node = Node(f"output:{tensor.name}", tensor.name, "output", "output", shape=tensor.shape)
            self._add(node, [(tensor, end)], end)
        clusters = [self._cluster(trace.records[i]) for i in sorted(self.expanded) if i != scope.index]
        return sorted(self.nodes.values(), key=lambda n: self.when[n.id]), self.edges, clusters

    def _used_inside(self, record: CallRecord) -> set[int | None] | None:
        """Keys of the tensors the calls and ops inside `record` read; None for a leaf, which reads all it gets.

        A DownBlock2D is handed the text like every block but never reads it: no edge is drawn for that.
        """
        if not record.children:
            return None
        inside = {record.index} | {r.index for r in self.trace.descendants(record)}
        used = {t.key for i in inside - {record.index} for t in self.trace.records[i].inputs}
        return used | {t.key for op in self.trace.ops if op.parent in inside for t in op.inputs}

    def _add(self, node: Node, inputs: list[tuple], when: tuple[int, int, int]) -> None:
        self.nodes[node.id] = node
        self.when[node.id] = when
        for tensor, before in inputs:
            if 0 in tensor.shape:
                continue  # an empty tensor carries nothing
            source = self._source(tensor.key, before)
            if source is not None:
                self.edges.append(Edge(source, node.id, tensor.name, tensor.shape))

    def _source(self, key: int | None, before: tuple[int, int, int]) -> str | None:
        """The shown node that made tensor `key` last before `before`, looking through view ops."""
        made = [(order, who) for order, who in self.made.get(key, []) if order < before]
        if not made:
            return None
        order, who = max(made, key=lambda item: item[0])
        if isinstance(who, str):
            return who
        op = self.trace.ops[who]
        if op.name in VIEW_OPS or _passes_one_on(op):
            return next((s for s in (self._source(t.key, order) for t in _data_inputs(op)) if s is not None), None)
        return self._op_node(op, order)

    def _op_node(self, op: OpRecord, order: tuple[int, int, int]) -> str:
        """The node of a computing op (`add`, `cat`, ...), made on first use so that dead ops never show."""
        if op.index not in self.op_ids:
            parent = self.trace.records[op.parent]
            self.op_counts[(parent.name, op.name)] += 1
            node_id = f"{parent.name if parent.path else 'model'}/{op.name}#{self.op_counts[(parent.name, op.name)]}"
            self.op_ids[op.index] = node_id
            node = Node(node_id, op.name, op.name, "op", shape=op.outputs[0].shape, cluster=self._home(op.parent))
            self._add(node, [(t, order) for t in _data_inputs(op)], order)
        return self.op_ids[op.index]

    def _home(self, parent: int | None) -> str | None:
        """The cluster of whatever ran in call `parent`'s code: that call, unless it is the scope itself."""
        return self.trace.records[parent].name if parent is not None and parent != self.scope.index else None

    def _cluster(self, record: CallRecord) -> Cluster:
        return Cluster(record.name, record.name, record.type, kind_of(record.type, self.family_kinds), record.params,
                       self._home(record.parent))


def _data_inputs(op: OpRecord) -> list[TensorMeta]:
    """The inputs whose values an op reads: none for `new_zeros` and its kin, no empty tensor."""
    if op.name in SHAPE_ONLY_OPS:
        return []
    return [t for t in op.inputs if 0 not in t.shape]


def _passes_one_on(op: OpRecord) -> bool:
    """A join of one tensor with empty ones: the output is that tensor's values."""
    return op.name in _JOINS and len(_data_inputs(op)) == 1


def _distinct(tensors: list[TensorMeta]) -> list[TensorMeta]:
    """One per tensor: a down block returns its output again as its last skip."""
    by_key: dict[int | None, TensorMeta] = {}
    for tensor in tensors:
        by_key.setdefault(tensor.key, tensor)
    return list(by_key.values())


def _with_path(graph: Graph) -> Graph:
    """Marks the nodes reached from the first input (the latent) and the edges into them from elsewhere."""
    start = graph.nodes[0].id if graph.nodes else None
    successors: dict[str, list[str]] = defaultdict(list)
    for edge in graph.edges:
        successors[edge.source].append(edge.target)
    reached, stack = set(), [start]
    while stack:
        node = stack.pop()
        if node is not None and node not in reached:
            reached.add(node)
            stack.extend(successors[node])
    nodes = [replace(n, on_path=n.id in reached) for n in graph.nodes]
    edges = [replace(e, kind="condition") if e.target in reached and e.source not in reached else e
             for e in graph.edges]
    return replace(graph, nodes=nodes, edges=edges)


def _from_outside(graph: Graph, trace: Trace, root: CallRecord) -> Graph:
    """Input nodes of a module that is not the whole model replaced by the sibling calls that made them.

    In a ControlNet step the UNet is handed each ControlNet's residuals (summed over the ControlNets by ops in
    the step's own code) and adds them to its skips and to the mid block's output. Those adds are found in the
    trace, not in the config, and folded away: one node per ControlNet, with a `control` edge into the block
    whose output each residual is added to, and the U drawn as without ControlNets.
    """
    if root.index == trace.root.index:
        return graph
    makers = {f"input:{t.name}": _makers(trace, t, root) for t in root.inputs}
    replaced = {node_id for node_id, made in makers.items() if made}
    if not replaced:
        return graph
    kinds = {n.id: n.kind for n in graph.nodes}
    into = {e.target: e.source for e in graph.edges if kinds[e.target] == "op" and e.source not in replaced}
    adds = {e.target for e in graph.edges if e.source in replaced and e.target in into}  # the rest: taken as is
    edges: list[Edge] = []
    for e in graph.edges:  # in their order: dot lays the U out by it
        if e.source in replaced:
            edges += [Edge(trace.records[m].name, into.get(e.target, e.target), e.source.removeprefix("input:"),
                           e.shape, "control") for m in sorted(makers[e.source])]
        elif e.source in adds:
            edges.append(replace(e, source=into[e.source]))  # the U as without ControlNets
        elif e.target not in adds:
            edges.append(e)
    senders = [Node(trace.records[m].name, trace.records[m].name, trace.records[m].type,
                    kind_of(trace.records[m].type), trace.records[m].params)
               for m in sorted(set().union(*makers.values()))]
    nodes = [n for n in graph.nodes if n.id not in replaced | adds]
    return replace(graph, nodes=nodes + senders, edges=edges)


def _makers(trace: Trace, tensor: TensorMeta, root: CallRecord) -> set[int]:
    """The direct children of the model, other than `root`, whose outputs went into `tensor` (through ops)."""
    calls = {i for i in tensor.producers if trace.records[i].depth == 1 and i != root.index}
    if calls or tensor.op is None:
        return calls
    return set().union(*(_makers(trace, t, root) for t in trace.ops[tensor.op].inputs))


def _shape_u(graph: Graph, block_of) -> Graph:
    """Sides, levels and skip edges of the U, from which path blocks hand tensors to which.

    A node's first input from the block just before its own is the main path; every other input from another
    block is a skip (without a mid block, the last down block hands the first up block its output twice: once
    as the input, once as a skip). Blocks up to the last one a skip leaves from form the down side, blocks from
    the first one a skip enters the up side, and what lies between the bottom (level -1).
    """
    by_id = {n.id: n for n in graph.nodes}
    blocks: list[str] = []
    for node in graph.nodes:
        if node.on_path and block_of(node) not in blocks:
            blocks.append(block_of(node))
    position = {b: i for i, b in enumerate(blocks)}
    fed: set[str] = set()  # nodes that already have their main input from the block before theirs

    def is_skip(edge: Edge) -> bool:
        source, target = by_id[edge.source], by_id[edge.target]
        if edge.kind != "data" or not (source.on_path and target.on_path):
            return False
        gap = position[block_of(target)] - position[block_of(source)]
        if gap == 1 and target.id not in fed:
            fed.add(target.id)
            return False
        return gap > 0

    edges = [replace(e, kind="skip") if is_skip(e) else e for e in graph.edges]
    senders = [b for b in blocks if any(block_of(by_id[e.source]) == b for e in edges if e.kind == "skip")]
    receivers = [b for b in blocks if any(block_of(by_id[e.target]) == b for e in edges if e.kind == "skip")]
    last_down = position[senders[-1]] if senders else len(blocks) - 1
    first_up = position[receivers[0]] if receivers else len(blocks)
    down, up = blocks[: last_down + 1], blocks[first_up:]
    side = {b: "down" for b in down} | {b: "up" for b in up} | {b: "bottom" for b in blocks[last_down + 1:first_up]}
    level = _levels(down, up, senders, receivers) | {b: -1 for b in blocks[last_down + 1:first_up]}
    nodes = [replace(n, side=side[block_of(n)], level=level.get(block_of(n))) if n.on_path else n
             for n in graph.nodes]
    return replace(graph, nodes=nodes, edges=edges)


def _levels(down: list[str], up: list[str], senders: list[str], receivers: list[str]) -> dict[str, int]:
    """Heights in the U, so that equal levels can be drawn side by side.

    From the bottom, the k-th deepest block that sends skips pairs with the k-th deepest that receives them
    (down_blocks.3 with up_blocks.0, ...). Above the pairs, the rest of each side is aligned from the top, so
    the model's input and output, and conv_in and conv_out, face each other.
    """
    pairs = min(len(senders), len(receivers))
    level = {b: i for i, b in enumerate(senders[len(senders) - pairs:][::-1])}
    level |= {b: i for i, b in enumerate(receivers[:pairs])}
    down_top = down[: down.index(senders[len(senders) - pairs])] if pairs else down
    up_top = up[up.index(receivers[pairs - 1]) + 1:] if pairs else up
    top = pairs - 1 + max(len(down_top), len(up_top))
    level |= {b: top - j for j, b in enumerate(down_top)}
    level |= {b: top - j for j, b in enumerate(reversed(up_top))}
    return level
