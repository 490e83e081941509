"""An input is never an output (issue 34: `attention --image cat.png -o cat.png` wrote over the user's picture).

Every file a command's arguments and options name — the source, --config, --image, --controlnet, --ip-adapter,
--base — is compared with every file it writes (-o, --trace) by real path and inode, once, in the command class:
the command refuses with one line before any work, and the file stays byte for byte what it was.
"""

from __future__ import annotations

import json
import os

import pytest
from bad_input import refused
from conftest import tiny
from PIL import Image


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "cat.png"
    Image.new("RGB", (4, 4), (200, 30, 30)).save(path, format="PNG")
    return path


def _refused_and_kept(invoke, folder, victim, *args) -> None:
    before = victim.read_bytes()
    refused(invoke, folder, *args, words="would overwrite an input")
    assert victim.read_bytes() == before


def test_the_image_drawn_on(picture, tmp_path, invoke):
    _refused_and_kept(invoke, tmp_path, picture, "attention", "tiny", "--device", "cpu", "--image", picture,
                      "-o", picture)


def test_the_image_through_a_symbolic_and_a_hard_link(picture, tmp_path, invoke):
    (tmp_path / "soft.png").symlink_to(picture)
    os.link(picture, tmp_path / "hard.png")
    for link in ("soft.png", "hard.png"):
        _refused_and_kept(invoke, tmp_path, picture, "attention", "tiny", "--device", "cpu", "--image", picture,
                          "-o", tmp_path / link)


def test_the_config_given_by_option(tmp_path, invoke):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny()))
    _refused_and_kept(invoke, tmp_path, config, "summary", "tiny", "--config", config, "-o", config)
    _refused_and_kept(invoke, tmp_path, config, "profile", "tiny", "--config", config, "--device", "cpu",
                      "--trace", config)


def test_a_weights_file_given_by_a_repeated_option(tmp_path, invoke):
    weights = tmp_path / "controlnet.safetensors"
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    _refused_and_kept(invoke, tmp_path, weights, "summary", "tiny", "--controlnet", weights, "-o", weights)
    _refused_and_kept(invoke, tmp_path, weights, "lora", weights, "-o", weights)
