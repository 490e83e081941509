"""`unetinspect lora`: every format mapped onto our module paths (diffusers' own kohya conversion is the reference),
ranks, alphas and norms per block, and the fit to a base."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import pytest
import torch
from conftest import SMALL_CONFIGS
from ldm_files import ldm_key, meta_shapes, write_header_only
from lora_files import adapted_layers, kohya_lora, loha, lokr, peft_lora
from safetensors.torch import save_file
from typer.testing import CliRunner

from unetinspect.cli import app
from unetinspect.configs.unet import UNetConfig
from unetinspect.errors import OptionsError
from unetinspect.models.unet import UNet2DConditionModel
from unetinspect.presets import load_preset_dict
from unetinspect.views.lora import analyze_lora, factored_norm


def layers_of(name: str) -> dict[str, tuple[int, ...]]:
    return adapted_layers(UNet2DConditionModel(UNetConfig.from_dict(SMALL_CONFIGS[name])).state_dict())


@pytest.fixture
def lora_file(tmp_path, write_config):
    """Write a LoRA's tensors and the config of its base; returns (lora path, config path)."""
    def write(tensors: dict, config_name: str, file: str = "lora.safetensors"):
        path = tmp_path / file
        save_file({k: v.contiguous() for k, v in tensors.items()}, path)
        return path, write_config(SMALL_CONFIGS[config_name], f"{config_name}.json")
    return write


def reference_path(kohya_module: dict, config: dict) -> str:
    """diffusers' own conversion of one kohya module (its lora_down/lora_up/alpha) → our module path."""
    from diffusers.loaders.lora_conversion_utils import (
        _convert_non_diffusers_lora_to_diffusers,
        _maybe_map_sgm_blocks_to_diffusers,
    )

    state = _maybe_map_sgm_blocks_to_diffusers(dict(kohya_module), SimpleNamespace(**config))
    converted, _ = _convert_non_diffusers_lora_to_diffusers(state)
    key = next(k for k in converted if ".down." in k)
    path = key.removeprefix("unet.").replace(".processor.", ".")
    path = path.replace(".lora.down.weight", "").replace("_lora.down.weight", "")
    return path + ".0" if path.endswith(".to_out") else path


@pytest.mark.parametrize("name, sgm", [("sd15-like", False), ("sdxl-like", False), ("sdxl-like", True)])
def test_kohya_modules_map_where_diffusers_maps_them(lora_file, name, sgm):
    pytest.importorskip("diffusers")
    config = SMALL_CONFIGS[name]
    tensors = kohya_lora(layers_of(name), config=config if sgm else None, text_encoder=2)
    path, config_path = lora_file(tensors, name)
    report = analyze_lora(path, base=config_path)
    assert report.format == f"kohya ({'original (SGM)' if sgm else 'diffusers'} block names)"
    assert not report.unmatched and len(report.matched) == len(layers_of(name))
    assert len(report.text_encoder_modules) == 2
    for module in report.matched:
        stem = "lora_unet_" + module.name
        kohya_module = {k: v for k, v in tensors.items() if k.split(".")[0] == stem}
        assert module.path == reference_path(kohya_module, config), module.name


def test_block_weight_names_follow_the_original_block_numbers(lora_file):
    path, config_path = lora_file(kohya_lora(layers_of("sd15-like")), "sd15-like")
    blocks = {(b.block, b.block_weight) for b in analyze_lora(path, base=config_path).blocks}
    # tiny: 2 layers per level → input_blocks 1,2 | 3 (down) | 4,5 | 6 | 7,8; output_blocks 0-2 | 3-5 | 6-8
    assert blocks == {("down_blocks.0", "IN01"), ("down_blocks.0", "IN02"), ("down_blocks.1", "IN04"),
                      ("down_blocks.1", "IN05"), ("mid_block", "M00"), ("up_blocks.1", "OUT03"),
                      ("up_blocks.1", "OUT04"), ("up_blocks.1", "OUT05"), ("up_blocks.2", "OUT06"),
                      ("up_blocks.2", "OUT07"), ("up_blocks.2", "OUT08")}


def test_norms_ranks_and_alphas_are_those_of_the_updates(lora_file):
    tensors = kohya_lora(layers_of("sd15-like"), rank=4, alpha=2.0)
    path, config_path = lora_file(tensors, "sd15-like")
    report = analyze_lora(path, base=config_path)
    module = next(m for m in report.matched if m.path == "down_blocks.0.attentions.0.proj_in")
    stem = "lora_unet_down_blocks_0_attentions_0_proj_in"
    up, down = tensors[f"{stem}.lora_up.weight"], tensors[f"{stem}.lora_down.weight"]
    expected = torch.linalg.norm((2.0 / 4) * (up.flatten(1) @ down.flatten(1))).item()
    assert module.rank == 4 and module.alpha == 2.0
    assert module.norm == pytest.approx(expected, rel=1e-5)
    block = next(b for b in report.blocks if b.block_weight == "IN01")
    members = [m for m in report.matched if m.block_weight == "IN01"]
    assert block.norm == pytest.approx(math.sqrt(sum(m.norm ** 2 for m in members)))
    assert block.params == sum(m.params for m in members) and block.ranks == (4,)


def test_factored_norm_equals_the_norm_of_the_product():
    generator = torch.Generator().manual_seed(0)
    up, down = torch.randn(300, 8, generator=generator), torch.randn(8, 500, generator=generator)
    up, down = up.double(), down.double()
    assert factored_norm(up, down) == pytest.approx(torch.linalg.norm(up @ down).item(), rel=1e-9)


def test_peft_lora_maps_with_a_and_b(lora_file):
    path, config_path = lora_file(peft_lora(layers_of("sdxl-like")), "sdxl-like")
    report = analyze_lora(path, base=config_path)
    assert report.format.startswith("diffusers / PEFT") and not report.unmatched
    assert {m.path for m in report.matched} == set(layers_of("sdxl-like"))


def test_lycoris_variants_are_named_and_measured(lora_file):
    layers = layers_of("sd15-like")
    tensors = {**loha(dict(list(layers.items())[:6])), **lokr(dict(list(layers.items())[6:12]))}
    path, config_path = lora_file(tensors, "sd15-like")
    report = analyze_lora(path, base=config_path)
    assert set(report.variants) == {"LoHa", "LoKr"} and not report.unmatched
    loha_module = next(m for m in report.matched if m.variant == "LoHa")
    stem = "lora_unet_" + loha_module.name
    product = ((tensors[f"{stem}.hada_w1_a"] @ tensors[f"{stem}.hada_w1_b"])
               * (tensors[f"{stem}.hada_w2_a"] @ tensors[f"{stem}.hada_w2_b"]))
    assert loha_module.norm == pytest.approx(torch.linalg.norm(product).item(), rel=1e-5)  # alpha = rank
    lokr_module = next(m for m in report.matched if m.variant == "LoKr")
    stem = "lora_unet_" + lokr_module.name
    kron = torch.kron(tensors[f"{stem}.lokr_w1"], tensors[f"{stem}.lokr_w2"])
    assert lokr_module.norm == pytest.approx(torch.linalg.norm(kron).item(), rel=1e-5)


def test_an_sdxl_lora_on_sd15_is_unmatched_with_reasons_and_its_base_is_found(tmp_path):
    """Real sizes, header only (the tensors read as zeros): the file fits sdxl, and not sd15."""
    sdxl = adapted_layers(meta_shapes(load_preset_dict("sdxl")))
    shapes = {}
    for key, value in kohya_lora({p: s for p, s in list(sdxl.items())[:40]}, rank=1, text_encoder=0,
                                 config=load_preset_dict("sdxl")).items():
        shapes[key] = tuple(value.shape)
    path = write_header_only(tmp_path / "sdxl_lora.safetensors", shapes)
    report = analyze_lora(path, base="sd15")
    assert report.likely_base == "sdxl" and report.likely_base_matches == 40
    # SDXL's second level has SD 1.5's width: self-attention fits, text attention and linear proj_in do not
    assert 0 < len(report.matched) < 40 and len(report.matched) + len(report.unmatched) == 40
    assert all(".attn1." in m.path or ".ff." in m.path or m.path.endswith("attn2.to_q") or "attn2.to_out" in m.path
               for m in report.matched)
    reasons = {m.reason for m in report.unmatched}
    assert "shape mismatch: an update for a Linear, the layer is a Conv2d" in reasons
    assert any(r.startswith("shape mismatch: update 640×2048") for r in reasons)
    assert analyze_lora(path).base == "sdxl"


def test_cli_json_has_the_documented_fields(lora_file):
    path, config_path = lora_file(kohya_lora(layers_of("sd15-like")), "sd15-like")
    result = CliRunner().invoke(app, ["lora", str(path), "--base", str(config_path), "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema"] == 1 and data["format"].startswith("kohya")
    assert data["modules"] == len(layers_of("sd15-like")) + 2 and data["matched"] == len(layers_of("sd15-like"))
    assert data["unmatched"] == [] and data["text_encoder_modules"] == {"text encoder": 2}
    assert set(data["blocks"][0]) >= {"block", "modules", "rank", "params", "norm", "block_weight"}


def test_cli_table_and_bad_files(lora_file, tmp_path):
    path, _ = lora_file(kohya_lora(layers_of("sd15-like")), "sd15-like")
    result = CliRunner().invoke(app, ["lora", str(path), "--base", "sdxl"])
    assert result.exit_code == 0 and "do not fit sdxl" in result.output and "block weight" in result.output
    not_lora = tmp_path / "unet.safetensors"
    save_file({"conv_in.weight": torch.zeros(2, 2)}, not_lora)
    result = CliRunner().invoke(app, ["lora", str(not_lora)])
    assert result.exit_code == 1 and "no LoRA modules" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["lora", str(tmp_path / "missing.safetensors")])
    assert result.exit_code == 1 and "no such file" in result.output


def test_strength_per_block_weight_id_and_the_vector_that_keeps_it(lora_file):
    """Each ID's norm is that of its modules' products (computed here from the tensors and tests/ldm_files.py's
    original names, independently of our table); the vector keeps exactly the IDs touched; --lbw's preview scales
    them and keeps the share of the norm the weights leave."""
    config = SMALL_CONFIGS["sd15-like"]
    layers = {path: shape for path, shape in layers_of("sd15-like").items() if ".attentions.0." in path}
    tensors = kohya_lora(layers, rank=4, alpha=2.0, text_encoder=0)
    path, config_path = lora_file(tensors, "sd15-like")
    expected: dict[str, float] = {}
    for module in layers:
        stem = "lora_unet_" + module.replace(".", "_")
        up, down = tensors[f"{stem}.lora_up.weight"].double(), tensors[f"{stem}.lora_down.weight"].double()
        update = 2.0 / 4 * up.reshape(up.shape[0], -1) @ down.reshape(down.shape[0], -1)
        block = re.match(r"(input|output|middle)_block", ldm_key(module + ".weight", config))
        number = re.search(r"_blocks?\.(\d+)", ldm_key(module + ".weight", config))
        lbw = "M00" if block[1] == "middle" else f"{'IN' if block[1] == 'input' else 'OUT'}{int(number[1]):02d}"
        expected[lbw] = expected.get(lbw, 0.0) + float(torch.linalg.norm(update)) ** 2
    report = analyze_lora(path, base=config_path, lbw=None)
    strengths = {i: v for i, v in report.strength_by_id().items() if v}
    assert strengths.keys() == expected.keys()
    for lbw, square in expected.items():
        assert strengths[lbw] == pytest.approx(math.sqrt(square), rel=1e-6)
    assert report.lora_ids == ["BASE", "IN01", "IN02", "IN04", "IN05", "M00", *(f"OUT{i:02d}" for i in range(3, 9))]
    vector = report.block_weight_vector().split(",")  # the short form: the LoRA touches only the usual blocks
    assert [i for i, v in zip(report.lora_ids, vector) if v == "1"] == sorted(expected, key=report.lora_ids.index)
    # zero the first input block and halve the middle: what is left is the rest's norm, plus half the middle's
    weights = ["0.5" if i == "M00" else "0" if i == "IN01" else "1" for i in report.lora_ids]
    preview = analyze_lora(path, base=config_path, lbw=",".join(weights)).lbw
    left = math.sqrt(sum(square * (0.25 if i == "M00" else 0 if i == "IN01" else 1) for i, square in expected.items()))
    assert preview.norm_left == pytest.approx(left / math.sqrt(sum(expected.values())), rel=1e-6)
    assert preview.scaled == {"IN01": sum(1 for m in report.matched if m.block_weight == "IN01"),
                              "M00": sum(1 for m in report.matched if m.block_weight == "M00")}
    with pytest.raises(OptionsError, match="this base takes 12"):
        analyze_lora(path, base=config_path, lbw="1,0,1")
