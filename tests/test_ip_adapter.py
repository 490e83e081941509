"""IP-Adapter files: recognised, mapped onto the cross-attentions in diffusers' order, and added to the step."""

from __future__ import annotations

import json
import re

import pytest
import torch
from bad_input import refused
from conftest import SMALL_CONFIGS, diffusers_unet
from safetensors.torch import save_file
from typer.testing import CliRunner

from unetinspect.cli import app
from unetinspect.configs.unet import UNetConfig
from unetinspect.errors import WeightsError
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.kinds import file_kind
from unetinspect.views.ip_adapter import ip_adapter_cost
from unetinspect.views.summary import summarize
from unetinspect.weights.ip_adapter import assign_entries, parse_ip_adapter


def cross_attention_widths(config: dict) -> list[int]:
    """The inner width of every cross-attention in diffusers' processor order (down, up, mid)."""
    from unetinspect.models.unet import UNet2DConditionModel

    model = UNet2DConditionModel(UNetConfig.from_dict(config))
    paths = [p for p, _ in model.named_modules() if p.endswith("attn2")]
    order = {"down_blocks": 0, "up_blocks": 1, "mid_block": 2}
    paths.sort(key=lambda p: order[p.split(".")[0]])
    return [dict(model.named_modules())[p].to_q.out_features for p in paths]


def ip_adapter_tensors(config: dict, clip_dim: int = 16, tokens: int = 4) -> dict[str, torch.Tensor]:
    """An IP-Adapter for a config, as h94's files are laid out; entry N's weights are filled with N."""
    width = config["cross_attention_dim"]
    tensors = {"image_proj.proj.weight": torch.randn(tokens * width, clip_dim),
               "image_proj.proj.bias": torch.randn(tokens * width),
               "image_proj.norm.weight": torch.ones(width), "image_proj.norm.bias": torch.zeros(width)}
    for k, inner in enumerate(cross_attention_widths(config)):
        number = 2 * k + 1
        tensors[f"ip_adapter.{number}.to_k_ip.weight"] = torch.full((inner, width), float(number))
        tensors[f"ip_adapter.{number}.to_v_ip.weight"] = torch.full((inner, width), float(number))
    return tensors


@pytest.fixture
def ip_file(tmp_path):
    def write(config_name: str = "sd15-like"):
        path = tmp_path / "ip-adapter.safetensors"
        save_file(ip_adapter_tensors(SMALL_CONFIGS[config_name]), path)
        return path
    return write


def test_entries_go_where_diffusers_loads_them():
    pytest.importorskip("diffusers")
    config = SMALL_CONFIGS["sdxl-like"]
    tensors = ip_adapter_tensors(config)
    unet = diffusers_unet(config)
    state = {"image_proj": {k.removeprefix("image_proj."): v for k, v in tensors.items() if k.startswith("image_proj")},
             "ip_adapter": {k.removeprefix("ip_adapter."): v for k, v in tensors.items() if k.startswith("ip_adapter")}}
    processors = unet._convert_ip_adapter_attn_to_diffusers([state], low_cpu_mem_usage=False)
    expected = {name.removesuffix(".processor"): int(proc.to_k_ip[0].weight[0, 0])
                for name, proc in processors.items() if hasattr(proc, "to_k_ip")}
    file = parse_ip_adapter({k: tuple(v.shape) for k, v in tensors.items()})
    forward_order = [p for p, _ in sorted(expected.items(), key=lambda item: _forward_position(item[0]))]
    ours = {path: entry.number for path, entry in assign_entries(file, forward_order).items()}
    assert ours == expected


def _forward_position(path: str) -> tuple[int, str]:
    head = path.split(".")[0]
    return {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}[head], path


def test_parse_counts_tokens_and_parameters():
    tensors = ip_adapter_tensors(SMALL_CONFIGS["sd15-like"], clip_dim=16, tokens=4)
    file = parse_ip_adapter({k: tuple(v.shape) for k, v in tensors.items()})
    assert file.kind == "IP-Adapter" and file.tokens == 4 and file.width == 48 and len(file.entries) == 11
    assert file.params == sum(v.numel() for v in tensors.values())
    assert file_kind(tensors).kind == "ip-adapter"


def test_summary_adds_its_parameters_and_image_attention_flops(ip_file):
    path = ip_file()
    summary = summarize("tiny", InputSpec(height=128, width=128))
    cost = ip_adapter_cost(path, summary)
    assert cost.params == sum(v.numel() for v in ip_adapter_tensors(SMALL_CONFIGS["sd15-like"]).values())
    # down_blocks.0: 2 cross-attentions at 16×16 = 256 queries, 32 wide; 4 tokens of 48
    down0 = next(b for b in cost.blocks if b.block == "down_blocks.0")
    per_attention = 2 * (2 * 4 * 48 * 32) + 4 * 256 * 4 * 32 + 2 * 256 * 32
    assert down0.attentions == 2 and down0.flops == 2 * per_attention
    assert [b.block for b in cost.blocks] == ["down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.1",
                                              "up_blocks.2"]
    assert cost.to_dict()["step"]["flops"] == summary.trace.flops + cost.flops


def test_cli_summary_with_ip_adapter(ip_file):
    path = ip_file()
    result = CliRunner().invoke(app, ["summary", "tiny", "--ip-adapter", str(path)])
    assert result.exit_code == 0, result.output
    assert "IP-Adapter" in result.output and "image_proj" in result.output and "with the IP-Adapter" in result.output
    result = CliRunner().invoke(app, ["summary", "tiny", "--ip-adapter", str(path), "-f", "json"])
    data = json.loads(result.output)
    assert data["ip_adapter"]["tokens"] == 4 and data["ip_adapter"]["step"]["params"] > data["ip_adapter"]["params"]


def test_an_ip_adapter_for_another_base_is_refused(ip_file):
    path = ip_file("sd15-like")
    with pytest.raises(WeightsError, match="cross-attention"):
        ip_adapter_cost(path, summarize("sd15"))
    result = CliRunner().invoke(app, ["summary", "sdxl", "--ip-adapter", str(path)])
    assert result.exit_code == 1 and "another base model" in result.output


ENTRY_SHAPES = {"ip_adapter.1.to_k_ip.weight": (32, 16), "ip_adapter.1.to_v_ip.weight": (32, 16)}


@pytest.mark.parametrize("changes, words", [
    ({"ip_adapter.1.to_k_ip.weight": (32, 0), "image_proj.proj.weight": (64, 8)}, "an empty projection"),
    ({"image_proj.latents": (16,)}, "image_proj.latents has shape [16], not 3-D"),
    ({"image_proj.proj.weight": ()}, "image_proj.proj.weight has shape [], not 2-D"),
])
def test_hostile_shapes_are_a_weights_error_naming_the_tensor(changes, words):
    """A header may give any shape: these were a ZeroDivisionError and IndexErrors reading the token count."""
    with pytest.raises(WeightsError, match=re.escape(words)):
        parse_ip_adapter(ENTRY_SHAPES | changes, origin="bad.safetensors")


def test_cli_refuses_an_empty_projection(tmp_path, invoke):
    path = tmp_path / "ip-adapter.safetensors"
    save_file({"image_proj.proj.weight": torch.zeros(64, 8), "ip_adapter.1.to_k_ip.weight": torch.zeros(32, 0),
               "ip_adapter.1.to_v_ip.weight": torch.zeros(32, 16)}, path)
    refused(invoke, tmp_path, "summary", "tiny", "--ip-adapter", path, words="ip_adapter.1.to_k_ip/to_v_ip")
