"""Two UNets side by side: a table that fits 120 columns, and JSON / Markdown with per-block pairs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from unetinspect.render.header import setup_dict, size_text
from unetinspect.render.units import human_count, human_flops, shape_str

if TYPE_CHECKING:
    from unetinspect.analysis.compare import Comparison, Pair, Side

JSON_SCHEMA_VERSION = 1


def _ratio(a: int, b: int) -> str:
    if not a:
        return "new" if b else "–"
    return f"{b / a:.2f}×"


def _cell(value: str, differs: bool) -> Text:
    return Text(value, style="yellow" if differs else "")


def _value(side: Side | None, attribute: str) -> int:
    return getattr(side, attribute) if side is not None else 0


def comparison_table(comparison: Comparison) -> Group:
    by_path = comparison.aligned_by == "path"
    a, b = comparison.a.setup, comparison.b.setup
    sizes = size_text(a.sizes) if a.sizes == b.sizes else f"{size_text(a.sizes)} vs {size_text(b.sizes)}"
    title = (f"A = {comparison.a_label}, B = {comparison.b_label} · batch {a.sizes.batch} · {sizes} · "
             f"{a.device} · blocks paired by {comparison.aligned_by}")
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    if not by_path:
        table.add_column("stage", style="bold", no_wrap=True)
    table.add_column("block" if by_path else "block A / B", style="cyan", no_wrap=True)
    latency = comparison.step_ms is not None
    for name in ("params\nA", "params\nB", "\nB/A", "FLOPs\nA", "FLOPs\nB", "\nB/A",
                 *(("ms\nA", "ms\nB", "\nB/A") if latency else ())):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("output\nA → B", no_wrap=True)
    for pair in comparison.pairs:
        table.add_row(*_row(pair, by_path, latency))
    return Group(table, _totals(comparison))


def _blocks(pair: Pair) -> str:
    a, b = (pair.a.path if pair.a else "—"), (pair.b.path if pair.b else "—")
    return a if a == b else f"{a} / {b}"


def _outputs(pair: Pair) -> Text:
    a = shape_str(pair.a.output) if pair.a else "—"
    b = shape_str(pair.b.output) if pair.b else "—"
    return Text(a) if a == b else Text.assemble(a, " → ", (b, "yellow"))


def _ms(side: Side | None) -> str:
    return "—" if side is None or side.latency_ms is None else f"{side.latency_ms:.3g}"


def _row(pair: Pair, by_path: bool, latency: bool = False) -> list[Any]:
    params_a, params_b = _value(pair.a, "params"), _value(pair.b, "params")
    flops_a, flops_b = _value(pair.a, "flops"), _value(pair.b, "flops")
    paths = {side.path for side in (pair.a, pair.b) if side is not None}
    stage = [] if by_path else ["" if pair.stage in paths else pair.stage]
    gone = pair.b is None
    return [
        *stage, _blocks(pair),
        human_count(params_a) if pair.a else "—", human_count(params_b) if pair.b else "—",
        _cell("gone" if gone else _ratio(params_a, params_b), params_a != params_b),
        human_flops(flops_a) if pair.a else "—", human_flops(flops_b) if pair.b else "—",
        _cell("gone" if gone else _ratio(flops_a, flops_b), flops_a != flops_b),
        *((_ms(pair.a), _ms(pair.b), _latency_ratio(pair)) if latency else ()),
        _outputs(pair),
    ]


def _latency_ratio(pair: Pair) -> str:
    if pair.a is None or pair.b is None or not pair.a.latency_ms or pair.b.latency_ms is None:
        return "–"
    return f"{pair.b.latency_ms / pair.a.latency_ms:.2f}×"


def _totals(comparison: Comparison) -> Text:
    a, b = comparison.a.trace, comparison.b.trace
    text = Text()
    text.append(f"{'parameters':>12}  ", style="bold")
    text.append(f"{a.total_params:,} → {b.total_params:,} ({_ratio(a.total_params, b.total_params)})\n")
    text.append(f"{'FLOPs':>12}  ", style="bold")
    text.append(f"{human_count(a.flops, 'FLOPs')} → {human_count(b.flops, 'FLOPs')} ({_ratio(a.flops, b.flops)})"
                " per forward pass\n")
    if comparison.step_ms is not None:
        step_a, step_b = comparison.step_ms
        text.append(f"{'step':>12}  ", style="bold")
        text.append(f"{step_a:.1f} ms → {step_b:.1f} ms ({step_b / step_a:.2f}×) on {comparison.profile_device}, "
                    "no hooks; block rows are medians with hooks\n")
    went = comparison.where_params_went()
    if went:
        delta = b.total_params - a.total_params
        parts = ", ".join(f"{share:.0%} in {stage} ({human_count(d)})" for stage, d, share in went)
        rest = 1 - sum(share for _, _, share in went)
        if abs(rest) >= 0.005:  # shares of the net difference: blocks B lacks count against it
            parts += f", {rest:+.0%} elsewhere"
        text.append(f"{'difference':>12}  ", style="bold")
        text.append(f"B has {human_count(abs(delta))} {'more' if delta > 0 else 'fewer'} parameters: {parts}\n")
    if comparison.identical:
        text.append(f"{'verdict':>12}  ", style="bold")
        text.append("identical block by block: same types, parameters, FLOPs and output shapes\n", style="green")
    return text


def comparison_dict(comparison: Comparison) -> dict[str, Any]:
    def side(s: Side | None) -> dict[str, Any] | None:
        if s is None:
            return None
        return {"path": s.path, "type": s.type, "params": s.params, "flops": s.flops,
                "output": list(s.output) if s.output is not None else None, "latency_ms": s.latency_ms}

    def totals(trace) -> dict[str, int]:
        return {"params": trace.total_params, "flops": trace.flops}

    return {
        "schema": JSON_SCHEMA_VERSION,
        "a": {"label": comparison.a_label, "setup": setup_dict(comparison.a.setup),
              "totals": totals(comparison.a.trace)},
        "b": {"label": comparison.b_label, "setup": setup_dict(comparison.b.setup),
              "totals": totals(comparison.b.trace)},
        "aligned_by": comparison.aligned_by,
        "step_ms": list(comparison.step_ms) if comparison.step_ms else None,
        "identical": comparison.identical,
        "pairs": [{"stage": p.stage, "a": side(p.a), "b": side(p.b), "differs": p.differs}
                  for p in comparison.pairs],
    }


def comparison_json(comparison: Comparison) -> str:
    return json.dumps(comparison_dict(comparison), indent=2) + "\n"


def comparison_markdown(comparison: Comparison) -> str:
    by_path = comparison.aligned_by == "path"
    lines = [f"**A = {comparison.a_label}, B = {comparison.b_label}** (blocks paired by {comparison.aligned_by})", "",
             ("" if by_path else "| stage ") + "| block A / B | params A | params B | B/A | FLOPs A | FLOPs B | B/A |",
             ("" if by_path else "| --- ") + "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in comparison.pairs:
        pa, pb = _value(p.a, "params"), _value(p.b, "params")
        fa, fb = _value(p.a, "flops"), _value(p.b, "flops")
        stage = "" if by_path else f"| {p.stage if p.stage != _blocks(p) else ''} "
        lines.append(f"{stage}| {_blocks(p)} | {pa:,} | {pb:,} | {_ratio(pa, pb)} | {human_flops(fa)} | "
                     f"{human_flops(fb)} | {_ratio(fa, fb)} |")
    a, b = comparison.a.trace, comparison.b.trace
    lines += ["", f"Total parameters {a.total_params:,} → {b.total_params:,} ({_ratio(a.total_params, b.total_params)}),"
                  f" FLOPs {human_count(a.flops, 'FLOPs')} → {human_count(b.flops, 'FLOPs')}.", ""]
    return "\n".join(lines)
