"""The profile and the size/backend sweep as views (columns declared once, see `formats`), and the progress bar.

Works from the plain dataclasses of `views.profile` and `engine.timing`; imports nothing of torch. Every
table prints the totals that let a reader trust it: the step timed without hooks, what the hooks cost, and how
much of the step the block rows account for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from unetinspect.render.export import write_output
from unetinspect.render.formats import CSV, MARKDOWN, TABLE, Column, FileView, FittedTable, View
from unetinspect.render.header import SEPARATOR, setup_line, size_text
from unetinspect.render.names import namer, names_data
from unetinspect.render.units import human_bytes, human_count

if TYPE_CHECKING:
    from unetinspect.engine.timing import BlockTiming, Stats, WatchedCall
    from unetinspect.views.profile import Profile, Sweep, Variant


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


@dataclass(frozen=True)
class Line:
    """A row of the profile: a block, or a total under them ("(unattributed)", "(step)")."""

    name: str
    path: str
    type: str
    latency: Stats | None
    share: float | None
    flops: int | None
    flops_per_s: float | None
    mfu: float | None
    peak_memory: int | None
    added_memory: int | None

    @classmethod
    def of(cls, row: BlockTiming, shown: Callable[[str], str] = str) -> Line:
        """A block's row, named as `--names` asks (`shown`: the path as shown)."""
        return cls(shown(row.name), shown(row.path), row.type, row.latency, row.share, row.flops, row.flops_per_s,
                   row.mfu, row.memory.peak if row.memory else None, row.memory.added if row.memory else None)


def _stat(stats: Stats | None, field: str) -> float | None:
    value = getattr(stats, field) if stats is not None else None
    return round(value, 4) if value is not None else None


def _has_mfu(profile: Profile) -> bool:
    return profile.device.peak_flops is not None


def _has_memory(profile: Profile) -> bool:
    return profile.totals.peak_memory is not None


def _latency_columns(prefix: str, attribute: str) -> tuple[Column, ...]:
    """median, p10–p90 in the table; median, p10, p90, min, max in the CSV — of a block's or a variant's Stats."""
    key = (lambda name: f"{prefix}{name}_ms") if prefix else (lambda name: f"{name}_ms")
    return (
        Column(f"{prefix}ms" if prefix else "median_ms", "median ms",
               lambda r: ms(getattr(r, attribute).median if getattr(r, attribute) else None),
               value=lambda r: _stat(getattr(r, attribute), "median"), justify="right", style="bold"),
        Column("spread", "p10–p90 ms", lambda r: spread(getattr(r, attribute)), justify="right", style="dim",
               priority=4, formats=frozenset({TABLE, MARKDOWN})),
        *(Column(key(name), key(name), lambda r, name=name: _stat(getattr(r, attribute), name),
                 formats=frozenset({CSV})) for name in ("p10", "p90", "min", "max")),
    )


# Priority: a narrow terminal loses the spread and +mem first, then the type, then FLOPs, rates and memory; the
# block, its median and its share of the step always stay.
PROFILE_COLUMNS = (
    Column("path", "block", lambda r: r.name, value=lambda r: r.path, markdown=lambda r: f"`{r.name}`",
           style="cyan", fold=True, min_width=14),
    Column("type", "type", lambda r: r.type, style="magenta", priority=3),
    *_latency_columns("", "latency"),
    Column("share", "% step", lambda r: percent(r.share), value=lambda r: _round(r.share, 5), justify="right"),
    Column("flops", "FLOPs", lambda r: human_count(r.flops) if r.flops else "–", value=lambda r: r.flops,
           justify="right", priority=2),
    Column("flops_per_s", "achieved", lambda r: rate(r.flops_per_s), value=lambda r: r.flops_per_s,
           justify="right", priority=2),
    Column("mfu", "MFU", lambda r: percent(r.mfu), value=lambda r: r.mfu, justify="right", priority=2,
           when=_has_mfu),
    Column("peak_memory_bytes", "peak mem", lambda r: memory(r.peak_memory), value=lambda r: r.peak_memory,
           justify="right", priority=2, when=_has_memory),
    Column("added_memory_bytes", "+mem", lambda r: memory(r.added_memory), value=lambda r: r.added_memory,
           justify="right", style="dim", priority=4, when=_has_memory),
)


def _round(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None


class ChromeTraceView(FileView["Profile"]):
    """`profile --trace FILE`: the Chrome/Perfetto trace of one profiled step, a file of its own."""

    kind = "chrome trace"
    file_formats = ("trace",)

    def write(self, profile: Profile, fmt: str, path: Path, inputs: Sequence[str | Path]) -> Path:
        return write_output(path, profile.chrome_trace or "", inputs)


class ProfileView(View["Profile"]):
    """One profile: a row per block, then "(unattributed)" (hooked step minus the blocks) and "(step)" (no hooks)."""

    kind = "profile"
    columns = PROFILE_COLUMNS

    def __init__(self, *, names: str = "diffusers") -> None:
        self.names = names

    def rows(self, profile: Profile) -> list[Line]:
        shown = namer(profile.setup, self.names)
        return [Line.of(row, shown) for row in profile.blocks]

    def footer(self, profile: Profile) -> list[Line]:
        t = profile.totals
        lines = []
        if t.unattributed is not None:
            lines.append(Line("(unattributed)", "(unattributed)", "", t.unattributed,
                              t.unattributed.median / t.step.median, None, None, None, None, None))
        lines.append(Line("(step)", "(step)", "", t.step, 1.0, t.flops, t.flops_per_s, t.mfu, t.peak_memory, None))
        return lines

    def heading(self, profile: Profile) -> list[str]:
        """The setup on the device as its hardware is named, and how the step was run and timed."""
        if profile.calls:  # a watch: the user's loop ran the model, as often as it did
            return [SEPARATOR.join([setup_line(profile.setup, device=profile.device.name),
                                    f"{len(profile.calls)} calls in your loop"])]
        run = f"compiled ({profile.compiled})" if profile.compiled else f"attention {profile.attention}"
        return [SEPARATOR.join([setup_line(profile.setup, device=profile.device.name), run,
                                f"{profile.warmup} warmup + {profile.repeat} timed runs"])]

    def totals(self, profile: Profile) -> list[tuple[str, str]]:
        """The step, the hooks' cost, what the rows cover, FLOPs, memory, notes."""
        t = profile.totals
        hooks = (f"over the {len(profile.calls)} calls, each with the block hooks" if profile.calls
                 else "with no hooks installed")
        lines = [("step", f"{ms(t.step.median)} ms median (p10–p90 {spread(t.step)}, min {ms(t.step.min)}) {hooks}")]
        if profile.calls:
            lines.append(("calls", calls_sentence(profile.calls)))
        if t.hooked_step is not None and t.overhead is not None:
            lines.append(("hooked step", f"{ms(t.hooked_step.median)} ms: hook overhead ×{t.overhead:.3f} "
                                         f"({100 * (t.overhead - 1):+.1f}%, median over rounds of hooked/unhooked)"))
        if t.blocks_sum is not None and t.unattributed is not None:
            lines.append(("blocks", f"{ms(t.blocks_sum.median)} ms in the rows: {percent(t.coverage)} of the step; "
                                    f"{ms(t.unattributed.median)} ms of the hooked step ran in no row "
                                    "(code between the blocks, hook cost)"))
        if t.flops:  # a watch counts none
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

    def data(self, profile: Profile) -> dict[str, Any]:
        """The documented JSON interface."""
        t = profile.totals
        return {
            "device": _device_dict(profile),
            "depth": profile.depth,
            "warmup": profile.warmup,
            "repeat": profile.repeat,
            "attention": profile.attention,
            "compiled": profile.compiled,
            "compile_s": profile.compile_s,
            "blocks": [{**_block_dict(row), **names_data(profile.setup, row.path)} for row in profile.blocks],
            "totals": {
                **_stat_fields(t.step, "step_"),
                **_stat_fields(t.hooked_step, "hooked_step_"),
                "blocks_ms": _stat(t.blocks_sum, "median"),
                "unattributed_ms": _stat(t.unattributed, "median"),
                "overhead": t.overhead,
                "coverage": t.coverage,
                "flops": t.flops,
                "flops_per_s": t.flops_per_s,
                "mfu": t.mfu,
                "peak_memory_bytes": t.peak_memory,
            },
            "notes": profile.notes,
            "calls": [{"index": c.index, "batch": c.batch, "latent": list(c.latent) if c.latent else None,
                       "timestep": c.timestep, "ms": _round(c.ms, 4)} for c in profile.calls],
        }

    def table(self, profile: Profile) -> RenderableType:
        """The block table, then a watch's calls one by one."""
        table = super().table(profile)
        return Group(table, FittedTable(WatchedCallsView(), profile)) if profile.calls else table


def calls_sentence(calls: Sequence[WatchedCall]) -> str:
    """A watch's calls in one line: how many, at which batch sizes (2 under guidance), which timesteps."""
    batches = "/".join(str(b) for b in sorted({c.batch for c in calls if c.batch is not None})) or "–"
    steps = [c.timestep for c in calls if c.timestep is not None]
    timesteps = f"timesteps {steps[0]:g} … {steps[-1]:g}" if steps else "no timestep passed"
    return f"{len(calls)} calls of the watched model · batch {batches} · {timesteps}"


WATCHED_CALL_COLUMNS = (
    Column("index", "call", lambda c: str(c.index + 1), value=lambda c: c.index, justify="right", style="cyan"),
    Column("batch", "batch", lambda c: str(c.batch) if c.batch is not None else "–", value=lambda c: c.batch,
           justify="right"),
    Column("latent", "latent", lambda c: "×".join(map(str, c.latent)) if c.latent else "–", justify="right"),
    Column("timestep", "timestep", lambda c: f"{c.timestep:g}" if c.timestep is not None else "–",
           value=lambda c: c.timestep, justify="right"),
    Column("ms", "ms", lambda c: ms(c.ms), value=lambda c: _round(c.ms, 4), justify="right", style="bold"),
)


class WatchedCallsView(View["Profile"]):
    """A watch's calls one by one: the batch, latent and timestep each was given, and its time."""

    kind = "watched calls"
    columns = WATCHED_CALL_COLUMNS

    def rows(self, profile: Profile) -> Sequence[WatchedCall]:
        return profile.calls


def _stat_fields(stats: Stats | None, prefix: str = "") -> dict[str, float | None]:
    """{"median_ms", "p10_ms", ...} for a block, {"step_ms", "step_p10_ms", ...} with prefix "step_"."""
    keys = (f"{prefix}ms" if prefix else "median_ms", f"{prefix}p10_ms", f"{prefix}p90_ms", f"{prefix}min_ms",
            f"{prefix}max_ms")
    return {key: _stat(stats, name) for key, name in zip(keys, ("median", "p10", "p90", "min", "max"))}


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


# ---- the sweep -----------------------------------------------------------------------------------------------


def _status(v: Variant) -> Text:
    return Text(v.error or "ok", style="red" if v.error else "green")


SWEEP_COLUMNS = (
    Column("label", "variant", lambda v: v.label, style="cyan"),
    Column("attention", "attention", lambda v: v.attention, priority=2),
    Column("batch", "batch", lambda v: str(v.sizes.batch), value=lambda v: v.sizes.batch, justify="right",
           priority=3),
    Column("size", "size", lambda v: size_text(v.sizes), justify="right", priority=1,
           formats=frozenset({TABLE, MARKDOWN})),
    Column("latent", "latent", lambda v: "×".join(map(str, v.sizes.latent)), formats=frozenset({CSV})),
    Column("pixels", "pixels", lambda v: "×".join(map(str, v.sizes.pixels)) if v.sizes.pixels else None,
           formats=frozenset({CSV})),
    *_latency_columns("step_", "step"),
    Column("images_per_s", "images/s", lambda v: f"{v.images_per_s:.2f}" if v.images_per_s else "–",
           value=lambda v: v.images_per_s, justify="right", priority=1),
    Column("flops", "FLOPs", lambda v: v.flops, formats=frozenset({CSV})),
    Column("flops_per_s", "achieved", lambda v: rate(v.flops_per_s), value=lambda v: v.flops_per_s,
           justify="right", priority=2),
    Column("peak_memory_bytes", "peak mem", lambda v: memory(v.peak_memory), value=lambda v: v.peak_memory,
           justify="right", priority=2),
    Column("error", "status", _status, value=lambda v: v.error, fold=True, min_width=24),
)


class SweepView(View["Sweep"]):
    """Whole-step latency and throughput over sizes and/or attention backends: a row per variant."""

    kind = "sweep"
    columns = SWEEP_COLUMNS

    def rows(self, sweep: Sweep) -> list[Variant]:
        return sweep.variants

    def heading(self, sweep: Sweep) -> list[str]:
        """The setup without its sizes (the rows are the sizes), and how the step was timed."""
        run = f"compiled ({sweep.compiled})" if sweep.compiled else "eager"
        return [SEPARATOR.join([setup_line(sweep.setup, device=sweep.device.name, sizes=False), run,
                                f"{sweep.warmup} warmup + {sweep.repeat} timed runs, whole step, no hooks"])]

    def data(self, sweep: Sweep) -> dict[str, Any]:
        return {
            "device": _device_dict(sweep),
            "warmup": sweep.warmup,
            "repeat": sweep.repeat,
            "compiled": sweep.compiled,
            "variants": [_variant_dict(v) for v in sweep.variants],
        }


def _variant_dict(v: Variant) -> dict[str, Any]:
    return {
        "label": v.label, "attention": v.attention, "batch": v.sizes.batch, "latent": list(v.sizes.latent),
        "pixels": list(v.sizes.pixels) if v.sizes.pixels else None,
        **_stat_fields(v.step, "step_"), "images_per_s": v.images_per_s, "flops": v.flops,
        "flops_per_s": v.flops_per_s, "peak_memory_bytes": v.peak_memory, "error": v.error,
    }


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
