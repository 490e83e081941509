"""render/picture.py: what --image is given is read through Pillow — PNG of every kind, JPEG, WebP — as RGB,
shrunk to what the grid needs; and the PNGs we write are labelled in a real font."""

from __future__ import annotations

import pytest
from PIL import Image, features

from unetinspect.errors import ImageError
from unetinspect.render.picture import LONGEST, label_font, read_picture

RED = (200, 30, 30)


@pytest.mark.parametrize("mode,fmt,suffix", [
    ("RGB", "PNG", ".png"), ("RGBA", "PNG", ".png"), ("P", "PNG", ".png"), ("L", "PNG", ".png"),
    ("I;16", "PNG", ".png"), ("RGB", "JPEG", ".jpg"), ("L", "JPEG", ".jpeg"), ("RGB", "WEBP", ".webp"),
])
def test_every_kind_of_picture_is_read_as_rgb(mode, fmt, suffix, tmp_path):
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("this Pillow was built without WebP")
    path = tmp_path / f"cat{suffix}"
    Image.new("RGB", (30, 20), RED).convert(mode).save(path, format=fmt)
    picture = read_picture(path)
    assert picture.mode == "RGB" and picture.size == (30, 20)
    if mode in ("RGB", "RGBA"):
        assert all(abs(a - b) <= 3 for a, b in zip(picture.getpixel((15, 10)), RED))  # lossy formats: near


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_big_picture_is_shrunk_to_what_the_grid_needs(fmt, tmp_path):
    path = tmp_path / f"big.{fmt.lower()}"
    Image.new("RGB", (3000, 1500), RED).save(path, format=fmt)
    assert read_picture(path).size == (LONGEST, LONGEST // 2)


def test_labels_are_drawn_in_a_scalable_font_with_lowercase():
    label = label_font(13)
    small, large = label_font(13).font.getbbox("down"), label_font(26).font.getbbox("down")
    assert large[2] > 1.8 * small[2]  # it scales
    assert label.font.getmask("a").getbbox() != label.font.getmask("A").getbbox()  # mixed case, not capitals
    assert label.drawable("64×64 · µs") in ("64×64 · µs", "64x64 - us")


def test_a_file_that_is_no_picture_is_one_line(tmp_path):
    path = tmp_path / "cat.png"
    path.write_text("not a picture")
    with pytest.raises(ImageError, match="cat.png is not a PNG, JPEG or WebP picture") as error:
        read_picture(path)
    assert "\n" not in error.value.one_line()
