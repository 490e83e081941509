"""Two UNets side by side: a row per pair of blocks (columns declared once, see `formats`), totals, JSON."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from unetinspect.errors import OutputError
from unetinspect.render.formats import CSV, MARKDOWN, TABLE, Column, View
from unetinspect.render.header import setup_dict, setup_line
from unetinspect.render.names import namer
from unetinspect.render.units import human_count, human_flops, shape_str

if TYPE_CHECKING:
    from unetinspect.views.compare import Comparison, Pair, Side
    from unetinspect.views.summary import Summary
    from unetinspect.views.weight_change import BlockChange

HUMAN = frozenset({TABLE, MARKDOWN})


def _ratio(a: int, b: int) -> str:
    if not a:
        return "new" if b else "–"
    return f"{b / a:.2f}×"


def _value(side: Side | None, attribute: str) -> int:
    return getattr(side, attribute) if side is not None else 0


def _blocks(pair: Pair) -> str:
    a, b = (pair.a.path if pair.a else "—"), (pair.b.path if pair.b else "—")
    return a if a == b else f"{a} / {b}"


def _stage(pair: Pair) -> str:
    """The stage where it says more than the block's own path (embeddings and conv_in are their own stage)."""
    return "" if pair.stage in {side.path for side in (pair.a, pair.b) if side is not None} else pair.stage


def _outputs(pair: Pair) -> Text:
    a = shape_str(pair.a.output) if pair.a else "—"
    b = shape_str(pair.b.output) if pair.b else "—"
    return Text(a) if a == b else Text.assemble(a, " → ", (b, "yellow"))


def _change(pair: Pair, attribute: str) -> Text:
    """B over A, yellow where they differ; "gone" where B lacks the block."""
    a, b = _value(pair.a, attribute), _value(pair.b, attribute)
    return Text("gone" if pair.b is None else _ratio(a, b), style="yellow" if a != b else "")


def _ms(side: Side | None) -> str:
    return "—" if side is None or side.latency_ms is None else f"{side.latency_ms:.3g}"


def _latency_ratio(pair: Pair) -> str:
    if pair.a is None or pair.b is None or not pair.a.latency_ms or pair.b.latency_ms is None:
        return "–"
    return f"{pair.b.latency_ms / pair.a.latency_ms:.2f}×"


def _weighed(comparison: Comparison) -> bool:
    return comparison.weight_change is not None


def _change_text(pair: Pair, text: Callable[[BlockChange], str]) -> Text:
    """One figure of a block's weight change, yellow where its weights differ; "–" for blocks without weights."""
    change = pair.weight_change
    if change is None:
        return Text("–")
    return Text(text(change), style="yellow" if change.differs else "")


def _by_stage(comparison: Comparison) -> bool:
    return comparison.aligned_by == "stage"


def _timed(comparison: Comparison) -> bool:
    return comparison.step_ms is not None


def _side_columns(letter: str) -> dict[str, Column]:
    """Parameters, FLOPs, latency and output of side A or B; "—" (empty in CSV) where it has no such block."""
    side = (lambda p: p.a) if letter == "A" else (lambda p: p.b)
    key = letter.lower()

    def number(attribute: str, text: Callable[[int], str]) -> Callable[[Pair], str]:
        return lambda p: text(getattr(side(p), attribute)) if side(p) is not None else "—"

    def raw(attribute: str) -> Callable[[Pair], Any]:
        return lambda p: getattr(side(p), attribute) if side(p) is not None else None

    return {
        "path": Column(f"{key}_path", f"block {letter}", raw("path"), formats=frozenset({CSV})),
        "params": Column(f"{key}_params", f"params\n{letter}", number("params", human_count), value=raw("params"),
                         markdown=number("params", "{:,}".format), justify="right"),
        "flops": Column(f"{key}_flops", f"FLOPs\n{letter}", number("flops", human_flops), value=raw("flops"),
                        justify="right"),
        "ms": Column(f"{key}_ms", f"ms\n{letter}", lambda p: _ms(side(p)), value=raw("latency_ms"),
                     justify="right", when=_timed),
        "output": Column(f"{key}_output", f"output {letter}", lambda p: shape_str(raw("output")(p)),
                         formats=frozenset({CSV})),
    }


A, B = _side_columns("A"), _side_columns("B")


# Priority: a narrow terminal loses the output shapes first, then the stage, then the ratios; the blocks and the
# parameters and FLOPs (and latencies) of both stay.
COLUMNS = (
    Column("stage", "stage", _stage, value=lambda p: p.stage, style="bold", priority=2, when=_by_stage),
    Column("block", "block", _blocks, style="cyan", fold=True, min_width=14, formats=HUMAN,
           when=lambda c: not _by_stage(c)),
    Column("blocks", "block A / B", _blocks, style="cyan", fold=True, min_width=14, formats=HUMAN, when=_by_stage),
    A["path"], B["path"],
    A["params"], B["params"],
    Column("params_ratio", "\nB/A", lambda p: _change(p, "params"), justify="right", priority=1, formats=HUMAN),
    A["flops"], B["flops"],
    Column("flops_ratio", "\nB/A", lambda p: _change(p, "flops"), justify="right", priority=1, formats=HUMAN),
    A["ms"], B["ms"],
    Column("ms_ratio", "\nB/A", _latency_ratio, justify="right", priority=1, formats=HUMAN, when=_timed),
    Column("weight_change", "weights\n‖B−A‖/‖A‖", lambda p: _change_text(p, lambda c: f"{c.relative:.3g}"),
           value=lambda p: p.weight_change.relative if p.weight_change else None, justify="right", when=_weighed),
    Column("cosine", "\ncosine", lambda p: _change_text(p, lambda c: "–" if c.cosine is None else f"{c.cosine:.6f}"),
           value=lambda p: p.weight_change.cosine if p.weight_change else None, justify="right", when=_weighed),
    Column("tensors_changed", "tensors\nchanged", lambda p: _change_text(p, lambda c: f"{c.changed}/{c.tensors}"),
           value=lambda p: p.weight_change.changed if p.weight_change else None, justify="right", when=_weighed),
    Column("outputs", "output\nA → B", _outputs, priority=3, formats=HUMAN),
    A["output"], B["output"],
    Column("differs", "differs", lambda p: p.differs, formats=frozenset({CSV})),
)


def _difference(delta: int, went: list[tuple[str, int, float]]) -> str:
    """Where the parameter difference lies. All one way: each stage's share of it. Some blocks grown and others
    shrunk: where it grew and where it shrank, apart (shares of a net difference would read "256% in up 1")."""
    net = f"B has {human_count(abs(delta))} {'more' if delta > 0 else 'fewer'} parameters"
    if all((d > 0) == (delta > 0) for _, d, _ in went):
        parts = ", ".join(f"{share:.0%} in {stage} ({human_count(abs(d))})" for stage, d, share in went)
        rest = 1 - sum(share for _, _, share in went)
        if abs(rest) >= 0.005:  # shares of the net difference: blocks B lacks count against it
            parts += f", {rest:+.0%} elsewhere"
        return f"{net}: {parts}"
    grew = [f"{stage} (+{human_count(d)})" for stage, d, _ in went if d > 0]
    shrank = [f"{stage} (−{human_count(-d)})" for stage, d, _ in went if d < 0]
    ways = [f"more in {', '.join(grew)}", f"fewer in {', '.join(shrank)}"]
    return f"{net} in all: {'; '.join(ways if delta > 0 else ways[::-1])}"


class CompareView(View["Comparison"]):
    """Block against block; the heading gives each side's setup, the totals say where the parameters went. As
    html (`-o diff.html`), the page with both diagrams side by side, which `compare(..., page=True)` draws."""

    kind = "compare"
    columns = COLUMNS
    file_formats = ("html",)

    def __init__(self, *, names: str = "diffusers") -> None:
        self.names = names

    def rows(self, comparison: Comparison) -> list[Pair]:
        """The pairs, each side's block named as `--names` asks (the JSON keeps diffusers' paths)."""
        if self.names == "diffusers":
            return comparison.pairs
        shown_a, shown_b = namer(comparison.a.setup, self.names), namer(comparison.b.setup, self.names)

        def named(side: Side | None, shown: Callable[[str], str]) -> Side | None:
            return None if side is None else dataclasses.replace(side, path=shown(side.path))

        return [dataclasses.replace(p, a=named(p.a, shown_a), b=named(p.b, shown_b)) for p in comparison.pairs]

    def heading(self, comparison: Comparison) -> list[str]:
        return [f"A = {setup_line(comparison.a.setup)}", f"B = {setup_line(comparison.b.setup)}",
                f"blocks paired by {comparison.aligned_by}"]

    def totals(self, comparison: Comparison) -> list[tuple[str, str]]:
        a, b = comparison.a.trace, comparison.b.trace
        lines = [
            ("parameters", f"{a.total_params:,} → {b.total_params:,} ({_ratio(a.total_params, b.total_params)})"),
            ("FLOPs", f"{human_count(a.flops, 'FLOPs')} → {human_count(b.flops, 'FLOPs')} "
                      f"({_ratio(a.flops, b.flops)}) per forward pass"),
        ]
        if comparison.step_ms is not None:
            step_a, step_b = comparison.step_ms
            lines.append(("step", f"{step_a:.1f} ms → {step_b:.1f} ms ({step_b / step_a:.2f}×) on "
                                  f"{comparison.profile_device}, no hooks; block rows are medians with hooks"))
        went = comparison.where_params_went()
        if went:
            lines.append(("difference", _difference(b.total_params - a.total_params, went)))
        if comparison.weight_change is not None and not any(p.differs for p in comparison.pairs):
            differ = comparison.weights_differ
            lines.append(("verdict", f"same structure, the weights of {len(differ)} "
                                     f"block{'s' if len(differ) != 1 else ''} differ ({', '.join(differ)})" if differ
                          else "same structure, same weights: every tensor is equal"))
        elif comparison.identical:
            lines.append(("verdict", "identical block by block: same types, parameters, FLOPs and output shapes"))
        return lines

    def data(self, comparison: Comparison) -> dict[str, Any]:
        def side(s: Side | None) -> dict[str, Any] | None:
            if s is None:
                return None
            return {"path": s.path, "type": s.type, "params": s.params, "flops": s.flops,
                    "output": list(s.output) if s.output is not None else None, "latency_ms": s.latency_ms}

        def whole(summary: Summary, label: str) -> dict[str, Any]:
            return {"label": label, "setup": setup_dict(summary.setup),
                    "totals": {"params": summary.trace.total_params, "flops": summary.trace.flops}}

        return {
            "a": whole(comparison.a, comparison.a_label),
            "b": whole(comparison.b, comparison.b_label),
            "aligned_by": comparison.aligned_by,
            "step_ms": list(comparison.step_ms) if comparison.step_ms else None,
            "identical": comparison.identical,
            "weights_compared": comparison.weight_change is not None,
            "weights_differ": comparison.weights_differ,
            "pairs": [{"stage": p.stage, "a": side(p.a), "b": side(p.b), "differs": p.differs,
                       **({"weight_change": p.weight_change.to_dict() if p.weight_change else None}
                          if comparison.weight_change is not None else {})}
                      for p in comparison.pairs],
        }

    def write(self, comparison: Comparison, fmt: str, path: Path, inputs: Sequence[str | Path]) -> Path:
        from unetinspect.render.report import ComparisonPage, ComparisonPageView

        if comparison.graphs is None:
            raise OutputError("the comparison was made without its diagrams", "compare with page=True")
        return ComparisonPageView().write(ComparisonPage(comparison, comparison.graphs), fmt, path, inputs)
