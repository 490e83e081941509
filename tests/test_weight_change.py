"""`compare A B --weights`: what a fine-tune changed, block by block, for folders, single files and both mixed."""

from __future__ import annotations

import json
import math

import pytest
import torch
from ldm_files import full_checkpoint
from safetensors.torch import save_file
from typer.testing import CliRunner

from unetinspect.cli import app
from unetinspect.configs.unet import UNetConfig
from unetinspect.models.unet import UNet2DConditionModel
from unetinspect.presets import load_preset_dict
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.loading import init_random_weights
from unetinspect.views.compare import compare

SPEC = InputSpec(height=64, width=64, text_len=5)  # one size for both: an inferred config has another default
CHANGED = ("down_blocks.1", "mid_block")


def save_folder(folder, model, config: dict):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "diffusion_pytorch_model.safetensors")
    return folder


@pytest.fixture
def base_and_finetune(tmp_path):
    """A tiny base (folder and original single file) and a fine-tune whose CHANGED blocks moved a little."""
    config = load_preset_dict("tiny")
    base = UNet2DConditionModel(UNetConfig.from_dict(config))
    init_random_weights(base, seed=1)
    tuned = UNet2DConditionModel(UNetConfig.from_dict(config))
    tuned.load_state_dict(base.state_dict())
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if name.startswith(CHANGED):
                p.add_(torch.randn(p.shape, generator=generator) * 0.01)
    save_file(full_checkpoint(base, config), tmp_path / "base.safetensors")
    return (save_folder(tmp_path / "base", base, config), save_folder(tmp_path / "tuned", tuned, config),
            tmp_path / "base.safetensors", base, tuned)


def test_changed_blocks_are_found_with_their_relative_change(base_and_finetune):
    base_folder, tuned_folder, _, base, tuned = base_and_finetune
    result = compare(base_folder, tuned_folder, SPEC, weights=True)
    assert sorted(result.weights_differ) == sorted(CHANGED) and not result.identical
    a = torch.cat([p.flatten() for n, p in base.named_parameters() if n.startswith("mid_block")])
    b = torch.cat([p.flatten() for n, p in tuned.named_parameters() if n.startswith("mid_block")])
    change = result.weight_change["mid_block"]
    assert change.relative == pytest.approx((torch.linalg.norm(b - a) / torch.linalg.norm(a)).item(), rel=1e-4)
    assert change.cosine == pytest.approx(torch.nn.functional.cosine_similarity(a, b, dim=0).item(), rel=1e-5)
    assert change.changed == change.tensors == sum(1 for n, _ in base.named_parameters() if n.startswith("mid_block"))
    same = result.weight_change["up_blocks.0"]
    assert same.changed == 0 and same.relative == 0 and math.isclose(same.cosine, 1.0)


def test_a_diffusers_folder_against_the_ldm_file_of_the_same_model(base_and_finetune):
    base_folder, tuned_folder, base_file, _, _ = base_and_finetune
    assert compare(base_folder, base_file, SPEC, weights=True).weights_differ == []
    assert sorted(compare(base_file, tuned_folder, SPEC, weights=True).weights_differ) == sorted(CHANGED)


def test_cli_verdict_and_json(base_and_finetune):
    base_folder, tuned_folder, base_file, _, _ = base_and_finetune
    common = ["--height", "64", "--width", "64"]
    table = CliRunner().invoke(app, ["compare", str(base_folder), str(tuned_folder), "--weights", *common])
    assert table.exit_code == 0, table.output
    assert "same structure, the weights of 2 blocks differ (down_blocks.1, mid_block)" in table.stdout
    data = json.loads(CliRunner().invoke(app, ["compare", str(base_folder), str(tuned_folder), "--weights", "-f",
                                               "json", *common]).stdout)
    changes = {p["stage"]: p["weight_change"] for p in data["pairs"]}
    assert changes["mid_block"]["changed"] > 0 and changes["conv_in"]["changed"] == 0
    assert changes["time_proj"] is None  # no weights
    same = CliRunner().invoke(app, ["compare", str(base_folder), str(base_file), "--weights", *common])
    assert "same structure, same weights" in same.stdout


def test_weights_need_two_checkpoints(base_and_finetune):
    result = CliRunner().invoke(app, ["compare", "tiny", str(base_and_finetune[0]), "--weights"])
    assert result.exit_code == 1 and "has no weights" in result.output


def test_html_comparison_marks_the_blocks_whose_weights_changed(base_and_finetune, tmp_path):
    base_folder, tuned_folder, _, _, _ = base_and_finetune
    out = tmp_path / "diff.html"
    result = CliRunner().invoke(app, ["compare", str(base_folder), str(tuned_folder), "--weights", "--height", "64",
                                      "--width", "64", "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    data = json.loads(page.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    changed = sorted(block for block, status in data["status"]["b"].items() if status == "changed")
    assert changed == sorted(CHANGED)
