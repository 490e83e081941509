"""`unetinspect attention` as a user types it: the PNG grid, the table, and one-line errors with nothing written."""

from __future__ import annotations

import json

import pytest
from bad_input import assert_one_line_failure
from conftest import our_unet, save_folder, tiny
from PIL import Image, ImageChops

FAST = ["--latent", "8x12", "--text-len", "8", "--device", "cpu"]


def test_png_grid_is_a_valid_picture_of_tokens_by_blocks(tmp_path, invoke):
    out = tmp_path / "maps.png"
    result = invoke("attention", "tiny", *FAST, "--tokens", "a,photo,of,a,cat", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stderr
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.mode == "RGB"
        # five word rows of 96x64 cells (latent 8x12), under five lines of titles and headers
        assert picture.width > 5 * 96 and picture.height >= 5 * 64 + 5 * 18


def test_maps_over_a_picture_and_self_attention(tmp_path, invoke):
    picture = tmp_path / "cat.png"
    Image.new("RGB", (4, 4), (200, 30, 30)).save(picture)
    out = tmp_path / "over.png"
    assert invoke("attention", "tiny", *FAST, "--image", picture, "-o", out).exit_code == 0
    plain = tmp_path / "plain.png"
    assert invoke("attention", "tiny", *FAST, "-o", plain).exit_code == 0
    with Image.open(out) as over, Image.open(plain) as bare:
        assert over.size == bare.size and ImageChops.difference(over, bare).getbbox() is not None  # red shows
    result = invoke("attention", "tiny", *FAST, "--self", "--query", "3,4", "--blocks", "up_blocks.2", "-f", "json")
    data = json.loads(result.stdout)
    assert data["kind"] == "self" and data["query"] == [3, 4]
    assert {layer["path"].split(".")[0] for layer in data["layers"]} == {"up_blocks"}
    assert all(layer["path"].endswith("attn1") for layer in data["layers"])


def test_table_and_daam(invoke):
    result = invoke("attention", "tiny", *FAST, "--aggregate", "daam")
    assert result.exit_code == 0, result.output
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn2" in result.stdout and "8x12" in result.stdout


@pytest.mark.parametrize("args,words", [
    (["--self", "--query", "3"], "'3' is not a pixel"),
    (["--self", "--query", "8,0"], "query pixel 8,0 is outside the 8x12 latent"),
    (["--self"], "none was given"),
    (["--blocks", "up_blocks.7"], "no attention layer under 'up_blocks.7'"),
])
def test_bad_options_are_one_line_errors_and_nothing_is_written(args, words, tmp_path, invoke):
    out = tmp_path / "maps.png"
    message = assert_one_line_failure(invoke("attention", "tiny", *FAST, *args, "-o", out))
    assert words in message and not out.exists()


def test_image_that_is_not_a_png_and_a_model_without_cross_attention(tmp_path, invoke):
    out = tmp_path / "maps.png"
    fake = tmp_path / "cat.png"
    fake.write_text("not a picture")
    message = assert_one_line_failure(invoke("attention", "tiny", *FAST, "--image", fake, "-o", out))
    assert "cat.png is not a PNG, JPEG or WebP picture" in message and not out.exists()
    plain = save_folder(our_unet(tiny(down_block_types=["DownBlock2D"] * 3, up_block_types=["UpBlock2D"] * 3,
                                      mid_block_type=None)), tmp_path / "unet")
    message = assert_one_line_failure(invoke("attention", plain, *FAST, "-o", out))
    assert "no cross-attention map was recorded" in message and "--self" in message and not out.exists()


def test_html_output_is_the_report_with_an_attention_section(tmp_path, invoke):
    out = tmp_path / "maps.html"
    result = invoke("attention", "tiny", *FAST, "--tokens", "a,cat", "-o", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert '<section id="attention">' in page and '"tokens":["a","cat"]' in page and 'id="tree"' in page


def test_random_text_is_said_in_every_output(tmp_path, invoke):
    """Without a pipeline's prompt the text is random: the table, the JSON, the PNG's title and the HTML say so,
    and labels from --tokens are said to name positions only."""
    from unetinspect.sources.inputs import InputSpec
    from unetinspect.views.attention import attention_maps

    table = invoke("attention", "tiny", *FAST, "--tokens", "a,cat").stdout
    assert "random text" in table and "name positions only" in table
    data = json.loads(invoke("attention", "tiny", *FAST, "-f", "json").stdout)
    assert data["text"] == "random text" and data["notes"][0].startswith("random text:")
    page = tmp_path / "maps.html"
    assert invoke("attention", "tiny", *FAST, "-o", page).exit_code == 0
    assert "random text" in page.read_text()
    result = attention_maps("tiny", spec=InputSpec(latent=(8, 12), text_len=8), device="cpu")
    assert "of random text" in result.grid().title  # the PNG's title line


def test_a_prompt_without_a_pipeline_folder_is_refused(tmp_path, invoke):
    result = invoke("attention", "tiny", *FAST, "--prompt", "a cat", "-o", tmp_path / "maps.png")
    message = assert_one_line_failure(result, tmp_path)
    assert "no pipeline folder" in message and "--tokens" in message


def test_the_grid_by_name_and_a_picture_only_for_the_grid(tmp_path, invoke):
    """png and html are formats of the attention view: -o's suffix picks one, or --format names it; --image with
    any other format is refused by the library in one line, before the run."""
    grid = tmp_path / "grid.out"
    assert invoke("attention", "tiny", *FAST, "-f", "png", "-o", grid).exit_code == 0
    assert Image.open(grid).width > 0
    picture = tmp_path / "cat.png"
    Image.new("RGB", (4, 4), (200, 30, 30)).save(picture)
    result = invoke("attention", "tiny", *FAST, "--image", picture, "-o", tmp_path / "maps.json")
    assert "give -o FILE.png" in assert_one_line_failure(result, tmp_path, exit_code=2)
    assert not (tmp_path / "maps.json").exists()
