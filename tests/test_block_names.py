"""The three namings of the same blocks — diffusers' paths, the original LDM paths, LoRA Block Weight IDs — checked
against names written independently of our table: the pairs of diffusers' conversion script, tests/ldm_files.py's
key map (itself checked against diffusers' conversion) and the ID lists of the LoRA Block Weight extension."""

from __future__ import annotations

import json

import pytest
from conftest import SMALL_CONFIGS
from ldm_files import ldm_key

import unetinspect as ui
from unetinspect.errors import OptionsError
from unetinspect.weights.block_names import Naming

# (diffusers module, LDM module, LBW ID), as diffusers' convert_original_stable_diffusion_to_diffusers pairs them
SD15_PAIRS = [
    ("conv_in", "input_blocks.0.0", "IN00"),
    ("down_blocks.0.attentions.1", "input_blocks.2.1", "IN02"),
    ("down_blocks.0.downsamplers.0", "input_blocks.3.0", "IN03"),
    ("down_blocks.1.resnets.0", "input_blocks.4.0", "IN04"),
    ("down_blocks.1.attentions.0", "input_blocks.4.1", "IN04"),
    ("down_blocks.3.resnets.1", "input_blocks.11.0", "IN11"),
    ("mid_block.resnets.0", "middle_block.0", "M00"),
    ("mid_block.attentions.0", "middle_block.1", "M00"),
    ("mid_block.resnets.1", "middle_block.2", "M00"),
    ("up_blocks.0.resnets.2", "output_blocks.2.0", "OUT02"),
    ("up_blocks.0.upsamplers.0", "output_blocks.2.1", "OUT02"),  # UpBlock2D: the upsampler follows the resnet
    ("up_blocks.1.upsamplers.0", "output_blocks.5.2", "OUT05"),  # after the resnet and the transformer
    ("up_blocks.3.attentions.2", "output_blocks.11.1", "OUT11"),
    ("time_embedding", "time_embed", None),
    ("conv_norm_out", "out.0", None),
    ("conv_out", "out.2", None),
    ("time_proj", None, None),  # no weights: no module of the original
]
SDXL_PAIRS = [
    ("down_blocks.1.attentions.0", "input_blocks.4.1", "IN04"),
    ("down_blocks.2.attentions.1", "input_blocks.8.1", "IN08"),
    ("up_blocks.0.upsamplers.0", "output_blocks.2.2", "OUT02"),  # SDXL's first up block has attention
    ("up_blocks.2.resnets.2", "output_blocks.8.0", "OUT08"),
    ("mid_block.attentions.0", "middle_block.1", "M00"),
    ("add_embedding", "label_emb.0", None),
]


@pytest.fixture(scope="module")
def sd15():
    return ui.block_names("sd15").by_path()


@pytest.fixture(scope="module")
def sdxl():
    return ui.block_names("sdxl").by_path()


@pytest.mark.parametrize("ours,ldm,lbw", SD15_PAIRS)
def test_sd15_names_are_those_of_diffusers_conversion(sd15, ours, ldm, lbw):
    assert (sd15[ours].ldm, sd15[ours].lbw) == (ldm, lbw)


@pytest.mark.parametrize("ours,ldm,lbw", SDXL_PAIRS)
def test_sdxl_names_are_those_of_diffusers_conversion(sdxl, ours, ldm, lbw):
    assert (sdxl[ours].ldm, sdxl[ours].lbw) == (ldm, lbw)


def test_the_id_lists_are_the_extensions():
    sd15, sdxl = ui.block_names("sd15", depth=1), ui.block_names("sdxl", depth=1)
    assert sd15.ids == ["BASE", *(f"IN{i:02d}" for i in range(12)), "M00", *(f"OUT{i:02d}" for i in range(12))]
    assert sdxl.ids == ["BASE", *(f"IN{i:02d}" for i in range(9)), "M00", *(f"OUT{i:02d}" for i in range(9))]
    # BLOCKID17 and BLOCKID12XL: the blocks a LoRA of the attention layers touches
    assert sd15.lora_ids == ["BASE", "IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "M00",
                             *(f"OUT{i:02d}" for i in range(3, 12))]
    assert sdxl.lora_ids == ["BASE", "IN04", "IN05", "IN07", "IN08", "M00", *(f"OUT{i:02d}" for i in range(6))]


@pytest.mark.parametrize("name", ["sd15-like", "sdxl-like"])
def test_every_weight_is_named_as_the_key_map_names_it(name):
    """Each layer's original name, plus its parameter's name, is the key an original checkpoint stores it under."""
    config = SMALL_CONFIGS[name]
    model = ui.load_unet(ui.UNetConfig.from_dict(config), device="meta")
    naming = Naming(model.config)
    for key in model.state_dict():
        module, _, param = key.rpartition(".")
        try:
            expected = ldm_key(key, config)
        except KeyError:
            continue  # keys the helper does not name (the embeddings' inner layers): covered by the pairs above
        assert f"{naming.of(module).ldm}.{param}" == expected, key


def test_summary_speaks_every_naming_in_every_format(invoke):
    for names in ("ldm", "lbw"):
        for fmt in ("table", "csv", "markdown", "json", "tree"):
            result = invoke("summary", "sd15", "--depth", 2, "--names", names, "-f", fmt)
            assert result.exit_code == 0, result.output
            assert ("input_blocks.4.1" if names == "ldm" else "IN04") in result.stdout
    modules = json.loads(invoke("summary", "sd15", "--names", "lbw", "-f", "json").stdout)["modules"]
    down1 = next(m for m in modules if m["path"] == "down_blocks.1")  # JSON keeps diffusers' path, adds the others
    assert (down1["ldm"], down1["lbw"]) == ("input_blocks.4-6", "IN04-IN06")


def test_names_refused_where_there_is_no_original_layout(invoke):
    result = invoke("summary", "svd", "--names", "ldm")
    assert result.exit_code == 2 and "no original (LDM) layout" in result.stderr
    with pytest.raises(OptionsError, match="no original"):
        ui.block_names("svd")


def test_blocks_filters_take_any_naming():
    result = ui.attention_maps("tiny", device="cpu", blocks=["IN01"])  # tiny: attention in its first level
    ldm = ui.attention_maps("tiny", device="cpu", blocks=["input_blocks.1.1"])
    ours = ui.attention_maps("tiny", device="cpu", blocks=["down_blocks.0.attentions.0"])
    assert set(result.layers) == set(ldm.layers) == set(ours.layers) and result.layers


def test_names_command_tables_the_three_namings(invoke):
    result = invoke("names", "sdxl", "--depth", 1, "-f", "csv")
    assert result.exit_code == 0
    assert "down_blocks.1,input_blocks.4-6,IN04-IN06,CrossAttnDownBlock2D" in result.stdout


def test_the_names_page_is_what_the_tool_prints():
    import sys
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs"
    sys.path.insert(0, str(docs))
    try:
        import make_names_docs
    finally:
        sys.path.remove(str(docs))
    assert (docs / "names.md").read_text() == make_names_docs.page(), "run python docs/make_names_docs.py"


def test_attention_and_precision_tables_speak_the_namings(invoke):
    table = invoke("attention", "tiny", "--device", "cpu", "--latent", "8", "--names", "ldm").stdout
    assert "input_blocks.1.1.transformer_blocks.0.attn2" in table and "down_blocks" not in table
    layers = json.loads(invoke("attention", "tiny", "--device", "cpu", "--latent", "8", "-f", "json").stdout)["layers"]
    assert (layers[0]["path"], layers[0]["ldm"], layers[0]["lbw"]) == (
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2", "input_blocks.1.1.transformer_blocks.0.attn2", "IN01")
    result = invoke("precision", "tiny", "--device", "cpu", "--latent", "8", "--dtypes", "bf16", "--blocks", "M00",
                    "--timesteps", "999", "--names", "lbw", "-f", "csv")
    assert result.exit_code == 0 and ",M00," in result.stdout


def test_the_diagram_labels_its_boxes_in_the_naming_and_keeps_its_ids(tmp_path, invoke):
    out = tmp_path / "unet.dot"
    assert invoke("diagram", "sd15", "--names", "lbw", "-f", "dot", "-o", out).exit_code == 0
    dot = out.read_text()
    assert "IN04-IN06" in dot and "OUT09-OUT11" in dot and "M00" in dot  # the boxes' names…
    assert "down_blocks.1" in dot.replace("IN04-IN06", "")  # …their ids diffusers' module paths


def test_compare_and_the_report_speak_the_namings(tmp_path, invoke):
    table = invoke("compare", "sd15", "sdxl", "--names", "lbw", "-f", "csv").stdout
    assert "IN04-IN06" in table and "down_blocks.1," not in table
    page = tmp_path / "report.html"
    assert invoke("report", "sd15", "--names", "ldm", "-o", page).exit_code == 0
    data = json.loads(page.read_text().split('id="report-data">', 1)[1].split("</script>", 1)[0])
    row = next(r for r in data["rows"] if r["name"] == "down_blocks.1.attentions.0")
    assert row["shown"] == "input_blocks.4.1"  # the tree shows the LDM name; the row keeps its id for the diagram


def test_branches_are_named_as_the_original_unet_pairs_its_skips(invoke, tmp_path):
    """In the original UNet input_blocks.i's output is concatenated into output_blocks.(11-i): branch i of SD 1.5
    runs from IN{i} to OUT{11-i}, in the table, the JSON and the report's branches table."""
    result = invoke("summary", "sd15", "--branches", "--names", "ldm", "-f", "json")
    assert result.exit_code == 0, result.output
    branches = json.loads(result.stdout)["branches"]
    assert len(branches) == 12
    for i, branch in enumerate(branches):
        assert branch["skip_from_names"]["lbw"] == f"IN{i:02d}" and branch["read_by_names"]["lbw"] == f"OUT{11 - i:02d}"
        assert branch["skip_from_names"]["ldm"].startswith(f"input_blocks.{i}.")
        assert branch["read_by_names"]["ldm"] == f"output_blocks.{11 - i}.0"  # the resnet that reads the concat
    table = invoke("summary", "sd15", "--branches", "--names", "lbw").stdout
    assert " IN04 " in table and " OUT07 " in table and "down_blocks" not in table
    page = tmp_path / "report.html"
    assert invoke("report", "sd15", "--names", "ldm", "-o", page).exit_code == 0
    html = page.read_text()
    start = html.index('<table id="branches"')
    rows = html[start:html.index("</table>", start)]
    assert "input_blocks.4.1" in rows and "output_blocks.7.0" in rows and "down_blocks" not in rows
