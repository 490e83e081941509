"""The shallow branches of a UNet (`summary --branches`, `profile --branches`), through the output layer.

Every format carries the conventions the figures follow (under the table, in the Markdown list, in the JSON),
so that a paper's number can be checked against them. Imports nothing of torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from rich.console import RenderableType

from unetinspect.render.formats import MARKDOWN, TABLE, Column, View
from unetinspect.render.names import namer, names_data
from unetinspect.render.units import human_count, human_flops, shape_str

if TYPE_CHECKING:
    from unetinspect.views.branches import Branch, Branches


class Line(NamedTuple):
    """A branch with the full step it is a share of, and how a module path is shown (`--names`)."""

    branch: Branch
    result: Branches
    shown: Callable[[str], str] = str


def _share(part: float | None, whole: float | None) -> str:
    return f"{100 * part / whole:.1f}%" if part is not None and whole else "–"


def _timed(result: Branches) -> bool:
    return any(b.latency_ms is not None for b in result.branches)


# On a narrow terminal the skip's shape and the row count go first (they stay in CSV and Markdown), then the
# MACs (FLOPs / 2, as the conventions say); the names, the FLOPs and the share always stay.
COLUMNS = (
    Column("branch", "branch", lambda l: str(l.branch.index), value=lambda l: l.branch.index, justify="right"),
    Column("skip_from", "skip from", lambda l: l.shown(l.branch.producer),
           markdown=lambda l: f"`{l.shown(l.branch.producer)}`", style="cyan", fold=True, min_width=16),
    Column("read_by", "read by", lambda l: l.shown(l.branch.consumer),
           markdown=lambda l: f"`{l.shown(l.branch.consumer)}`", style="cyan", fold=True, min_width=16),
    Column("skip_shape", "skip shape", lambda l: shape_str(l.branch.shape), priority=3),
    Column("flops", "FLOPs", lambda l: human_flops(l.branch.flops), value=lambda l: l.branch.flops, justify="right"),
    Column("macs", "MACs", lambda l: human_flops(l.branch.macs), value=lambda l: l.branch.macs, justify="right",
           priority=2),
    Column("macs_without_attention", "MACs w/o attn", lambda l: human_flops(l.branch.macs_without_attention),
           value=lambda l: l.branch.macs_without_attention, justify="right", priority=1),
    Column("share_of_step", "% step", lambda l: _share(l.branch.flops, l.result.flops),
           value=lambda l: round(l.branch.flops / l.result.flops, 6), justify="right"),
    Column("params", "params", lambda l: human_count(l.branch.params), value=lambda l: l.branch.params,
           justify="right", priority=1),
    Column("rows", "rows", lambda l: str(len(l.branch.runs)), value=lambda l: len(l.branch.runs), justify="right",
           priority=3),
    Column("latency_ms", "latency ms", lambda l: f"{l.branch.latency_ms:.2f}" if l.branch.latency_ms is not None
           else "–", value=lambda l: l.branch.latency_ms, justify="right", when=_timed),
    Column("share_of_step_time", "% step time", lambda l: _share(l.branch.latency_ms, l.result.step_ms),
           justify="right", when=_timed, formats=frozenset({TABLE, MARKDOWN})),
)


class BranchesView(View["Branches"]):
    """One row per skip connection, shallowest first: what the partial UNet of that skip costs."""

    kind = "branches"
    columns = COLUMNS

    def __init__(self, *, names: str = "diffusers") -> None:
        self.names = names

    def rows(self, result: Branches) -> list[Line]:
        shown = namer(result.setup, self.names)
        return [Line(branch, result, shown) for branch in result.branches]

    def heading(self, result: Branches) -> list[str]:
        return [*super().heading(result),
                "shallow branches: everything deeper than the skip is reused from a cache (DeepCache and the like)"]

    def tree(self, result: Branches) -> RenderableType:
        """A list of branches has no tree: the table stands in for it (`summary --branches --format tree`)."""
        return self.table(result)

    def totals(self, result: Branches) -> list[tuple[str, str]]:
        step = (f"{human_count(result.flops, 'FLOPs')} = {human_count(result.macs, 'MACs')} "
                f"({human_count((result.flops - result.attention_flops) // 2, 'MACs')} without attention), "
                f"{human_count(result.params)} parameters")
        if result.step_ms is not None:
            step += f", {result.step_ms:.2f} ms without hooks"
        return [("full step", step), *(("counted", convention) for convention in result.conventions)]

    def data(self, result: Branches) -> dict[str, Any]:
        return {
            "conventions": list(result.conventions),
            "full_step": {"flops": result.flops, "macs": result.macs, "attention_flops": result.attention_flops,
                          "params": result.params, "latency_ms": result.step_ms},
            "branches": [_branch_data(branch, result) for branch in result.branches],
        }


def _branch_data(branch: Branch, result: Branches) -> dict[str, Any]:
    """Diffusers' paths, as every JSON keeps them; a model with original names adds them (`skip_from_names`)."""
    names = {f"{key}_names": names_data(result.setup, path)
             for key, path in (("skip_from", branch.producer), ("read_by", branch.consumer))
             if names_data(result.setup, path)}
    return {"index": branch.index, "skip_from": branch.producer, "read_by": branch.consumer, **names,
            "skip_shape": list(branch.shape), "flops": branch.flops, "macs": branch.macs,
            "attention_flops": branch.attention_flops, "macs_without_attention": branch.macs_without_attention,
            "share_of_step": branch.flops / result.flops, "params": branch.params, "latency_ms": branch.latency_ms,
            "runs": list(branch.runs)}
