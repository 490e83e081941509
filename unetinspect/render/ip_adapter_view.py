"""An IP-Adapter's share of the step, shown after the UNet's summary; from the plain data of an IPAdapterCost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from unetinspect.render.formats import JSON, TABLE
from unetinspect.render.summary_view import SummaryView
from unetinspect.render.units import human_count, human_flops
from unetinspect.render.weights_view import _plain

if TYPE_CHECKING:
    from unetinspect.views.ip_adapter import IPAdapterCost
    from unetinspect.views.summary import Summary


class IPAdapterSummaryView(SummaryView):
    """The summary, then the IP-Adapter's blocks and the step's totals with it; its JSON has an `ip_adapter`."""

    def __init__(self, depth: int, cost: IPAdapterCost, *, names: str = "diffusers") -> None:
        super().__init__(depth, names=names)
        self.cost = cost

    @classmethod
    def formats(cls) -> tuple[str, ...]:
        return (TABLE, JSON)

    def table(self, summary: Summary) -> RenderableType:
        return Group(super().table(summary), *_ip_adapter_parts(self.cost))

    def data(self, summary: Summary) -> dict[str, Any]:
        return {**super().data(summary), "ip_adapter": self.cost.to_dict()}


def _ip_adapter_parts(cost: IPAdapterCost) -> list[RenderableType]:
    f = cost.file
    table = Table(title=Text.assemble("IP-Adapter ", _plain(cost.source), f" · {f.kind} · {f.tokens} image tokens"),
                  title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("part", "cross-attentions", "params", "FLOPs"):
        table.add_column(name, justify="left" if name == "part" else "right", style="cyan" if name == "part" else None)
    table.add_row("image_proj", "", human_count(f.image_proj_params),
                  human_flops(cost.image_proj_flops) if f.image_proj_linear_params else "not counted")
    for block in cost.blocks:
        table.add_row(block.block, str(block.attentions), human_count(block.params), human_flops(block.flops))
    if f.other_params:
        table.add_row("other tensors", "", human_count(f.other_params), "–")
    step = cost.to_dict()["step"]
    totals = Table.grid(padding=(0, 2))
    totals.add_column(style="bold", justify="right")
    totals.add_column()
    totals.add_row("IP-Adapter", f"+{cost.params:,} parameters ({human_count(cost.params)}), "
                                 f"+{cost.flops:,} FLOPs ({human_flops(cost.flops)}) per step")
    totals.add_row("step", f"{step['params']:,} parameters ({human_count(step['params'])}), "
                           f"{step['flops']:,} FLOPs ({human_flops(step['flops'])}) with the IP-Adapter")
    return [table, totals]
