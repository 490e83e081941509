"""`unetinspect attention` as a user types it: the PNG grid, the table, and one-line errors with nothing written."""

from __future__ import annotations

import json

import pytest
from bad_input import assert_one_line_failure
from conftest import our_unet, save_folder, tiny

from unetinspect.render.png import Picture, decode_png, encode_png

FAST = ["--latent", "8x12", "--text-len", "8", "--device", "cpu"]


def test_png_grid_is_a_valid_picture_of_tokens_by_blocks(tmp_path, invoke):
    out = tmp_path / "maps.png"
    result = invoke("attention", "tiny", *FAST, "--tokens", "a,photo,of,a,cat", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stderr
    picture = decode_png(out.read_bytes())
    # five word rows of 96x64 cells (latent 8x12), under four lines of titles and headers
    assert picture.width > 5 * 96 and picture.height >= 5 * 64 + 4 * 14


def test_maps_over_a_picture_and_self_attention(tmp_path, invoke):
    picture = tmp_path / "cat.png"
    picture.write_bytes(encode_png(Picture(4, 4, bytes([200, 30, 30]) * 16)))
    out = tmp_path / "over.png"
    assert invoke("attention", "tiny", *FAST, "--image", picture, "-o", out).exit_code == 0
    plain = tmp_path / "plain.png"
    assert invoke("attention", "tiny", *FAST, "-o", plain).exit_code == 0
    assert decode_png(out.read_bytes()) != decode_png(plain.read_bytes())  # the red shows through
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
    (["--self", "--query", "3"], "'3' is not a query pixel"),
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
    assert "cat.png is not a PNG file" in message and not out.exists()
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


def test_the_grid_by_name_and_a_picture_only_for_the_grid(tmp_path, invoke):
    """png and html are formats of the attention view: -o's suffix picks one, or --format names it; --image with
    any other format is refused by the library in one line, before the run."""
    grid = tmp_path / "grid.out"
    assert invoke("attention", "tiny", *FAST, "-f", "png", "-o", grid).exit_code == 0
    assert decode_png(grid.read_bytes()).width > 0
    picture = tmp_path / "cat.png"
    picture.write_bytes(encode_png(Picture(4, 4, bytes([200, 30, 30]) * 16)))
    result = invoke("attention", "tiny", *FAST, "--image", picture, "-o", tmp_path / "maps.json")
    assert "give -o FILE.png" in assert_one_line_failure(result, tmp_path, exit_code=2)
    assert not (tmp_path / "maps.json").exists()
