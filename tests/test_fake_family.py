"""The recipe "add a family = one record + its model and config code" holds: a family this package has never heard
of — its config class, its model and its input maker, defined here — is registered by setting the registry alone
(`families.FAMILIES`), and summary, diagram, report and compare take its config object and its config.json like any
other source. No other file of the package is touched, so nothing else may name the families one by one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import unetinspect as ui
from unetinspect import families
from unetinspect.families import DiagramKind, Family, Sizes, Tensors
from unetinspect.families.sizes import SizeAxes
from unetinspect.render.diagram_view import write_diagram
from unetinspect.render.report import comparison_html, report_html
from unetinspect.views.report import comparison_graphs

FAKE_CLASS = "FakeFrameUNet"


@dataclass(frozen=True)
class FakeConfig:
    """A config class of the shape `families.FamilyConfig` asks for, and one field no other family has."""

    sample_size: int = 8
    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: list[int] = field(default_factory=lambda: [8, 16])
    context_dim: int = 12
    heads_per_block: list[int] = field(default_factory=lambda: [1, 1])
    frames: int = 3

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "config") -> FakeConfig:
        return cls(**{k: v for k, v in data.items() if not k.startswith("_")})

    @classmethod
    def from_json(cls, path: str | Path) -> FakeConfig:
        return cls.from_dict(json.loads(Path(path).read_text()), origin=str(path))

    def to_dict(self) -> dict[str, Any]:
        return {"_class_name": FAKE_CLASS, **dataclasses.asdict(self)}


class FakeBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, context_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.to_context = nn.Linear(context_dim, channels_out)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.to_context(context.mean(1))[:, :, None, None]


class FakeFrameUNet(nn.Module):
    """Frames folded into the batch, two blocks down and one up with a skip: enough for every view to walk."""

    def __init__(self, config: FakeConfig) -> None:
        super().__init__()
        self.config = config
        c0, c1 = config.block_out_channels
        self.conv_in = nn.Conv2d(config.in_channels, c0, 3, padding=1)
        self.down_blocks = nn.ModuleList([FakeBlock(c0, c0, config.context_dim), FakeBlock(c0, c1, config.context_dim)])
        self.up_blocks = nn.ModuleList([FakeBlock(c1 + c0, c0, config.context_dim)])
        self.conv_out = nn.Conv2d(c0, config.out_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
                ) -> torch.Tensor:
        b, f, c, h, w = sample.shape
        x = self.conv_in(sample.flatten(0, 1))
        context = encoder_hidden_states.repeat_interleave(f, 0)
        skip = self.down_blocks[0](x, context)
        x = self.down_blocks[1](skip, context)
        x = self.up_blocks[0](torch.cat([x, skip], dim=1), context)
        return self.conv_out(x).unflatten(0, (b, f))


def fake_inputs(config: FakeConfig, tensors: Tensors, sizes: Sizes) -> dict[str, Any]:
    """The input maker: a frame axis of the family's own (`SizeAxes`), read off `sizes`."""
    b, (h, w) = sizes.batch, sizes.latent
    return {"sample": tensors.floats(b, sizes.frames or config.frames, config.in_channels, h, w),
            "timestep": tensors.longs(1000, b),
            "encoder_hidden_states": tensors.floats(b, sizes.text_len, config.context_dim)}


def _no_original(*args: Any) -> Any:
    raise AssertionError("no original layout")


FAKE: Family[FakeConfig] = Family(
    name="fake", kind="fake", label="fake UNet", class_name=FAKE_CLASS, config_class=FakeConfig,
    model_path=f"{__name__}:FakeFrameUNet", layout="fake-original", looks_like_original=lambda names: False,
    infer_original_config=_no_original, original_key_map=_no_original,
    diffusers_roots=frozenset({"fake_only_root"}), min_roots=1, make_inputs=fake_inputs,
    axes=SizeAxes(default_frames=lambda config: config.frames),
    diagram_kinds=(DiagramKind("FakeBlock", "fake_block", "a fake block", light="#123456", dark="#654321"),),
)


@pytest.fixture
def registered(monkeypatch):
    """The fake family in the registry, and nowhere else."""
    monkeypatch.setattr(families, "FAMILIES", (FAKE, *families.FAMILIES))


@pytest.fixture(params=["object", "config.json"])
def source(request, registered, tmp_path):
    config = FakeConfig()
    if request.param == "object":
        return config
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    return str(path)


def test_summary_takes_the_fake_family(source):
    summary = ui.summarize(source)
    assert summary.setup.model_type == FAKE_CLASS
    assert summary.setup.sizes.frames == 3  # the family's own size axis
    ours = sum(p.numel() for p in FakeFrameUNet(FakeConfig()).parameters())
    assert summary.trace.total_params == ours


def test_the_diagram_draws_and_colours_the_fake_family(source, tmp_path):
    graph = ui.diagram_graph(source, level="layers")
    assert "fake_block" in {n.kind for n in graph.nodes} | {c.kind for c in graph.clusters}
    path = write_diagram(graph, tmp_path / "fake.dot")
    dot = path.read_text()
    assert "#123456" in dot and "a fake block" in dot  # its fill and its legend, from its record


def test_the_report_takes_the_fake_family(source):
    html = report_html(ui.build_report(source))
    assert FAKE_CLASS in html


def test_compare_pairs_the_fake_family_with_an_image_unet(source):
    comparison = ui.compare(source, "tiny")
    assert comparison.a.setup.model_type == FAKE_CLASS
    assert comparison_html(comparison, comparison_graphs(source, "tiny"))
