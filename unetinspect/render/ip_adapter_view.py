"""An IP-Adapter's share of the step, shown after the UNet's summary; from the plain data of an IPAdapterCost."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from unetinspect.render.units import human_count, human_flops
from unetinspect.render.weights_view import _plain

if TYPE_CHECKING:
    from unetinspect.analysis.ip_adapter import IPAdapterCost


def with_ip_adapter(summary: RenderableType, cost: IPAdapterCost) -> Group:
    """The summary, then the IP-Adapter's blocks, then the step's totals with it."""
    f = cost.file
    table = Table(title=Text.assemble("IP-Adapter ", _plain(cost.source), f" · {f.kind} · {f.tokens} image tokens"),
                  title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for name, justify in (("part", "left"), ("cross-attentions", "right"), ("params", "right"), ("FLOPs", "right")):
        table.add_column(name, justify=justify, style="cyan" if name == "part" else None)
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
    return Group(summary, table, totals)


def summary_json_with_ip_adapter(summary_json: str, cost: IPAdapterCost) -> str:
    """The summary's JSON with an `ip_adapter` object (its parts, per block, and the step's totals)."""
    data = json.loads(summary_json)
    data["ip_adapter"] = cost.to_dict()
    return json.dumps(data, indent=2) + "\n"
