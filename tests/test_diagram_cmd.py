"""The `diagram` command: files it writes, formats, and what happens without Graphviz."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
SVG = "{http://www.w3.org/2000/svg}"


def svg_groups(path, kind: str) -> list[ET.Element]:
    """The <g> elements of nodes or edges, by the class dot gives them."""
    root = ET.parse(path).getroot()
    return [g for g in root.iter(f"{SVG}g") if g.get("class", "").split(" ")[0] == kind]


@needs_dot
def test_sd15_svg_has_every_block_and_twelve_skips(tmp_path, invoke):
    out = tmp_path / "out.svg"
    result = invoke("diagram", "sd15", "-o", str(out))
    assert result.exit_code == 0, result.output
    nodes = {g.findtext(f"{SVG}title"): g.get("class") for g in svg_groups(out, "node")}
    for block in ["conv_in", "mid_block", "conv_out", *(f"{side}_blocks.{i}" for side in ("down", "up")
                                                          for i in range(4))]:
        assert block in nodes
    assert nodes["down_blocks.3"] == "node res_block" and nodes["down_blocks.0"] == "node attn_block"
    skips = [g for g in svg_groups(out, "edge") if "skip" in g.get("class")]
    assert len(skips) == 12
    assert "sd15" in out.read_text()


@needs_dot
def test_sdxl_png(tmp_path, invoke):
    out = tmp_path / "sdxl.png"
    result = invoke("diagram", "sdxl", "-o", str(out), "--level", "layers", "--theme", "dark")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_dot
def test_format_option_beats_the_suffix_and_focus_draws_one_module(tmp_path, invoke):
    out = tmp_path / "resnet.img"
    result = invoke("diagram", "tiny", "-o", out, "--format", "pdf", "--focus", "up_blocks.1.resnets.0", "--no-params")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:5] == b"%PDF-"


def test_dot_output_needs_no_graphviz(tmp_path, monkeypatch, invoke):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "unet.dot"
    result = invoke("diagram", "tiny", "-o", str(out), "--no-shapes", "--direction", "LR")
    assert result.exit_code == 0, result.output
    source = out.read_text()
    assert source.startswith("digraph") and "rankdir=LR" in source and '"down_blocks.1"' in source


def test_without_dot_the_source_is_written_beside_and_one_line_says_how_to_install(tmp_path, monkeypatch, invoke):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "unet.svg"
    result = invoke("diagram", "tiny", "-o", str(out))
    assert result.exit_code == 1
    assert not out.exists() and (tmp_path / "unet.dot").read_text().startswith("digraph")
    message = result.output.strip()
    assert len(message.splitlines()) == 1
    assert "apt-get install graphviz" in message and "brew install graphviz" in message and "unet.dot" in message


def test_output_that_is_a_directory_fails_in_one_line(tmp_path, invoke):
    result = invoke("diagram", "tiny", "-o", str(tmp_path))
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "is a directory" in result.output


def test_unknown_suffix_and_unknown_module_fail_in_one_line(tmp_path, invoke):
    for args, words in ((["-o", str(tmp_path / "x.jpg")], "unknown diagram format"),
                        (["--focus", "down_blocks.7", "-o", str(tmp_path / "x.dot")], "no module 'down_blocks.7'")):
        result = invoke("diagram", "tiny", *args)
        assert result.exit_code == 1 and words in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_default_file_is_unet_svg(tmp_path, monkeypatch, invoke):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # fast: no dot, so the .dot is written beside
    result = invoke("diagram", "tiny")
    assert result.exit_code == 1 and "unet.dot" in result.output
    assert (tmp_path / "unet.dot").exists()
