"""The profile and the size/backend sweep as rich tables, JSON, CSV and Markdown, and the progress bar.

Works from the plain dataclasses of `analysis.profile` and `analysis.timing`; imports nothing of torch. Every
table prints the totals that let a reader trust it: the step timed without hooks, what the hooks cost, and how
much of the step the block rows account for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from unetinspect.render.export import csv_text, json_text, markdown_table
from unetinspect.render.header import setup_dict, setup_line, size_text
from unetinspect.render.units import human_bytes, human_count

if TYPE_CHECKING:
    from unetinspect.analysis.profile import Sweep, Profile, Variant
    from unetinspect.analysis.timing import BlockTiming, Stats, WatchedCall

JSON_SCHEMA_VERSION = 1


# ---- numbers ------------------------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    """Milliseconds with about four significant digits: 0.123, 12.34, 1234.5."""
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def spread(stats: Stats | None) -> str:
    return f"{ms(stats.p10)}–{ms(stats.p90)}" if stats else "–"


def rate(flops_per_s: float | None) -> str:
    return human_count(flops_per_s, "FLOP/s") if flops_per_s else "–"


def percent(fraction: float | None) -> str:
    return f"{100 * fraction:.1f}%" if fraction is not None else "–"


def memory(nbytes: int | None) -> str:
    return human_bytes(nbytes) if nbytes is not None else "–"


# ---- the profile --------------------------------------------------------------------------------------------------


def heading(profile: Profile) -> str:
    if profile.calls:
        return f"{setup_line(profile.setup, device=profile.device.name)} · {len(profile.calls)} calls in your loop"
    run = f"compiled ({profile.compiled})" if profile.compiled else f"attention {profile.attention}"
    return (f"{setup_line(profile.setup, device=profile.device.name)} · {run} · "
            f"{profile.warmup} warmup + {profile.repeat} timed runs")


def _table() -> Table:
    """A table without a title: the heading is a line of its own, as wide as the terminal, not the table."""
    return Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)


def _has_mfu(profile: Profile) -> bool:
    return profile.device.peak_flops is not None


def _has_memory(profile: Profile) -> bool:
    return profile.totals.peak_memory is not None


def profile_table(profile: Profile) -> Group:
    table = _table()
    table.add_column("block", style="cyan", overflow="fold", min_width=14)
    table.add_column("type", style="magenta", no_wrap=True, max_width=26)
    table.add_column("median ms", justify="right", style="bold", no_wrap=True)
    table.add_column("p10–p90", justify="right", style="dim", no_wrap=True)
    table.add_column("% step", justify="right", no_wrap=True)
    table.add_column("FLOPs", justify="right", no_wrap=True)
    table.add_column("achieved", justify="right", no_wrap=True)
    if _has_mfu(profile):
        table.add_column("MFU", justify="right", no_wrap=True)
    if _has_memory(profile):
        table.add_column("peak mem", justify="right", no_wrap=True)
        table.add_column("+mem", justify="right", style="dim", no_wrap=True)
    for row in profile.blocks:
        cells = [row.name, row.type, ms(row.latency.median), spread(row.latency), percent(row.share),
                 human_count(row.flops) if row.flops else "–", rate(row.flops_per_s)]
        if _has_mfu(profile):
            cells.append(percent(row.mfu))
        if _has_memory(profile):
            cells += [memory(row.memory.peak if row.memory else None),
                      memory(row.memory.added if row.memory else None)]
        table.add_row(*cells)
    parts: list[Any] = [Text(heading(profile), style="bold")] + ([table] if profile.blocks else [Text()])
    if profile.calls:
        parts.append(calls_table(profile))
    return Group(*parts, totals_text(profile))


CALLS_HEADER = ["call", "batch", "latent", "timestep", "ms"]


def _call_cells(call: WatchedCall) -> list[str]:
    return [str(call.index + 1), str(call.batch) if call.batch is not None else "–",
            "×".join(map(str, call.latent)) if call.latent else "–",
            f"{call.timestep:g}" if call.timestep is not None else "–", ms(call.ms)]


def calls_table(profile: Profile) -> Table:
    """A watch's calls one by one: the batch (2 under classifier-free guidance) and timestep of each."""
    table = _table()
    for name in CALLS_HEADER:
        table.add_column(name, justify="right", no_wrap=True, style="cyan" if name == "call" else None)
    for call in profile.calls:
        table.add_row(*_call_cells(call))
    return table


def totals_lines(profile: Profile) -> list[tuple[str, str]]:
    """(label, sentence) pairs: the step, the hooks' cost, what the rows cover, FLOPs, memory, notes."""
    t = profile.totals
    hooks = (f"over the {len(profile.calls)} calls, each with the block hooks" if profile.calls
             else "with no hooks installed")
    lines = [("step", f"{ms(t.step.median)} ms median (p10–p90 {spread(t.step)}, min {ms(t.step.min)}) {hooks}")]
    if t.hooked_step is not None and t.overhead is not None:
        lines.append(("hooked step", f"{ms(t.hooked_step.median)} ms: hook overhead ×{t.overhead:.3f} "
                                     f"({100 * (t.overhead - 1):+.1f}%, median over rounds of hooked/unhooked)"))
    if t.blocks_sum is not None and t.unattributed is not None:
        lines.append(("blocks", f"{ms(t.blocks_sum.median)} ms in the rows: {percent(t.coverage)} of the step; "
                                f"{ms(t.unattributed.median)} ms of the hooked step ran in no row "
                                "(code between the blocks, hook cost)"))
    if t.flops:
        achieved = f"{human_count(t.flops, 'FLOPs')} per step · {rate(t.flops_per_s)} achieved"
        if t.mfu is not None and profile.device.peak_flops:
            achieved += (f" · MFU {percent(t.mfu)} of {rate(profile.device.peak_flops)} "
                         f"(dense {profile.setup.dtype} peak)")
        lines.append(("FLOPs", achieved))
    if t.peak_memory is not None:
        lines.append(("memory", f"peak {human_bytes(t.peak_memory)} allocated by torch during the step"))
    if profile.compile_s is not None:
        lines.append(("compile", f"the first call took {profile.compile_s:.1f} s (compilation)"))
    lines += [("note", note) for note in profile.notes]
    return lines


def totals_text(profile: Profile) -> Text:
    text = Text()
    for label, value in totals_lines(profile):
        text.append(f"{label:>12}  ", style="bold yellow" if label == "note" else "bold")
        text.append(value + "\n")
    return text


def _stat_fields(stats: Stats | None, prefix: str = "") -> dict[str, float | None]:
    """{"median_ms", "p10_ms", ...} for a block, {"step_ms", "step_p10_ms", ...} with prefix "step_"."""
    values = (stats.median, stats.p10, stats.p90, stats.min, stats.max) if stats else (None,) * 5
    keys = (f"{prefix}ms" if prefix else "median_ms", f"{prefix}p10_ms", f"{prefix}p90_ms", f"{prefix}min_ms",
            f"{prefix}max_ms")
    return {key: (round(value, 4) if value is not None else None) for key, value in zip(keys, values)}


def _block_dict(row: BlockTiming) -> dict[str, Any]:
    return {
        "path": row.path, "name": row.name, "type": row.type, "depth": row.depth, "params": row.params,
        **_stat_fields(row.latency), "share": round(row.share, 5), "flops": row.flops,
        "flops_per_s": row.flops_per_s, "mfu": row.mfu,
        "peak_memory_bytes": row.memory.peak if row.memory else None,
        "added_memory_bytes": row.memory.added if row.memory else None,
    }


def _device_dict(profile: Profile | Sweep) -> dict[str, Any]:
    d = profile.device
    return {"type": d.type, "name": d.name, "total_memory_bytes": d.total_memory, "peak_flops": d.peak_flops}


def profile_dict(profile: Profile) -> dict[str, Any]:
    """The documented JSON interface; `schema` changes only when a field changes meaning."""
    t = profile.totals
    return {
        "schema": JSON_SCHEMA_VERSION,
        "kind": "profile",
        "setup": setup_dict(profile.setup),
        "device": _device_dict(profile),
        "depth": profile.depth,
        "warmup": profile.warmup,
        "repeat": profile.repeat,
        "attention": profile.attention,
        "compiled": profile.compiled,
        "compile_s": profile.compile_s,
        "blocks": [_block_dict(row) for row in profile.blocks],
        "totals": {
            **_stat_fields(t.step, "step_"),
            **_stat_fields(t.hooked_step, "hooked_step_"),
            "blocks_ms": round(t.blocks_sum.median, 4) if t.blocks_sum else None,
            "unattributed_ms": round(t.unattributed.median, 4) if t.unattributed else None,
            "overhead": t.overhead,
            "coverage": t.coverage,
            "flops": t.flops,
            "flops_per_s": t.flops_per_s,
            "mfu": t.mfu,
            "peak_memory_bytes": t.peak_memory,
        },
        "notes": profile.notes,
        "calls": [{"index": c.index, "batch": c.batch, "latent": list(c.latent) if c.latent else None,
                   "timestep": c.timestep, "ms": round(c.ms, 4)} for c in profile.calls],
    }


def profile_json(profile: Profile) -> str:
    return json_text(profile_dict(profile))


CSV_FIELDS = ["path", "type", "median_ms", "p10_ms", "p90_ms", "min_ms", "max_ms", "share", "flops",
              "flops_per_s", "mfu", "peak_memory_bytes", "added_memory_bytes"]


def profile_csv(profile: Profile) -> str:
    """One row per block, then "(unattributed)" (hooked step minus the blocks) and "(step)" (no hooks)."""
    rows = [[block[field] for field in CSV_FIELDS] for block in map(_block_dict, profile.blocks)]
    t = profile.totals
    extras = [("(unattributed)", t.unattributed, None), ("(step)", t.step, t.peak_memory)]
    for name, stats, peak in extras:
        if stats is not None:
            fields = _stat_fields(stats)
            flops = t.flops if name == "(step)" else None
            rows.append([name, "", *(fields[f] for f in CSV_FIELDS[2:7]), round(stats.median / t.step.median, 5),
                         flops, t.flops_per_s if flops else None, t.mfu if flops else None, peak, None])
    return csv_text(CSV_FIELDS, rows)


def profile_markdown(profile: Profile) -> str:
    header = ["block", "type", "median ms", "p10–p90 ms", "% step", "FLOPs", "achieved"]
    header += ["MFU"] * _has_mfu(profile) + ["peak mem"] * _has_memory(profile)
    rows = []
    for row in profile.blocks:
        cells = [f"`{row.name}`", row.type, ms(row.latency.median), spread(row.latency), percent(row.share),
                 human_count(row.flops) if row.flops else "–", rate(row.flops_per_s)]
        cells += [percent(row.mfu)] * _has_mfu(profile)
        cells += [memory(row.memory.peak if row.memory else None)] * _has_memory(profile)
        rows.append(cells)
    totals = "\n".join(f"- **{label}**: {value}" for label, value in totals_lines(profile))
    table = markdown_table(header, rows, right=range(2, len(header))) if rows else ""
    if profile.calls:
        table += "\n" + markdown_table(CALLS_HEADER, [_call_cells(c) for c in profile.calls],
                                       right=range(len(CALLS_HEADER)))
    return f"**{heading(profile)}**\n\n{table}\n{totals}\n"


# ---- the sweep -----------------------------------------------------------------------------------------------


def sweep_heading(sweep: Sweep) -> str:
    run = f"compiled ({sweep.compiled})" if sweep.compiled else "eager"
    setup = sweep.setup
    return (f"{setup.label} · {setup.model_type} · text {setup.sizes.text_len} tokens · {sweep.device.name} · "
            f"{setup.dtype} · {setup.weights} · {run} · {sweep.warmup} warmup + {sweep.repeat} timed runs, "
            "whole step, no hooks")


COMPARISON_HEADER = ["variant", "attention", "batch", "size", "median ms", "p10–p90 ms", "images/s", "achieved",
                     "peak mem", "status"]


def _comparison_cells(v: Variant) -> list[str]:
    return [v.label, v.attention, str(v.sizes.batch), size_text(v.sizes), ms(v.step.median if v.step else None),
            spread(v.step), f"{v.images_per_s:.2f}" if v.images_per_s else "–", rate(v.flops_per_s),
            memory(v.peak_memory), v.error or "ok"]


def sweep_table(sweep: Sweep) -> Group:
    table = _table()
    for name in COMPARISON_HEADER:
        numeric = name not in ("variant", "attention", "status")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=name != "status",
                         style="cyan" if name == "variant" else None, overflow="fold")
    for variant in sweep.variants:
        cells = _comparison_cells(variant)
        table.add_row(*cells[:-1], Text(cells[-1], style="red" if variant.error else "green"))
    return Group(Text(sweep_heading(sweep), style="bold"), table)


def _variant_dict(v: Variant) -> dict[str, Any]:
    return {
        "label": v.label, "attention": v.attention, "batch": v.sizes.batch, "latent": list(v.sizes.latent),
        "pixels": list(v.sizes.pixels) if v.sizes.pixels else None,
        **_stat_fields(v.step, "step_"), "images_per_s": v.images_per_s, "flops": v.flops,
        "flops_per_s": v.flops_per_s, "peak_memory_bytes": v.peak_memory, "error": v.error,
    }


def sweep_dict(sweep: Sweep) -> dict[str, Any]:
    return {
        "schema": JSON_SCHEMA_VERSION,
        "kind": "sweep",
        "setup": setup_dict(sweep.setup),
        "device": _device_dict(sweep),
        "warmup": sweep.warmup,
        "repeat": sweep.repeat,
        "compiled": sweep.compiled,
        "variants": [_variant_dict(v) for v in sweep.variants],
    }


def sweep_json(sweep: Sweep) -> str:
    return json_text(sweep_dict(sweep))


def sweep_csv(sweep: Sweep) -> str:
    rows = [list(_variant_dict(v).values()) for v in sweep.variants]
    header = list(_variant_dict(sweep.variants[0])) if sweep.variants else []
    return csv_text(header, rows)


def sweep_markdown(sweep: Sweep) -> str:
    rows = [_comparison_cells(v) for v in sweep.variants]
    table = markdown_table(COMPARISON_HEADER, rows, right=range(2, len(COMPARISON_HEADER) - 1))
    return f"**{sweep_heading(sweep)}**\n\n{table}"


# ---- progress -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def progress_bar(console: Console, enabled: bool) -> Iterator[Any]:
    """A progress callback `(phase, done, total)` drawing a rich bar on `console`, or None when not `enabled`
    (piped output, machine-readable formats): the library then runs without reporting at all."""
    if not enabled:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("loading", total=None)

        def update(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total)

        yield update
