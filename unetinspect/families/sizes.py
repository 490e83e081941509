"""The size of one forward pass (`Sizes`), and the size axes a family adds to an image UNet's (`SizeAxes`).

A leaf of `families`: each family record names its axes and its input maker reads `Sizes`; `sources.inputs`
resolves what the user asked for (`InputSpec`) into `Sizes` through the family's axes, never by asking a config
for fields only some families have.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

C = TypeVar("C")


@dataclass(frozen=True)
class Sizes:
    """The concrete size of one forward pass, resolved once: what every view prints and every input is made at."""

    batch: int
    latent: tuple[int, int]  # (height, width) of `sample`
    pixels: tuple[int, int] | None  # the image's size where the family's pixel factor is known, else None
    text_len: int
    frames: int | None = None  # a video UNet's frame count (a size like the others); None for image UNets
    context: str = "text"  # what encoder_hidden_states holds: "image embedding" for SVD


def _none(config: Any) -> None:
    return None


@dataclass(frozen=True)
class SizeAxes(Generic[C]):
    """What a family's forward is sized by beyond batch, latent and text length (an image UNet: nothing more).

    `default_frames`: the frame count of a run that asks for none (None: the family has no frame axis);
    `max_frames`: the most frames its temporal layers cover (None: no limit); `context_tokens`: a context of fixed
    length whatever `--text-len` says (SVD's one image-embedding token), else None.
    """

    default_frames: Callable[[C], int | None] = _none
    max_frames: Callable[[C], int | None] = _none
    context_tokens: Callable[[C], int | None] = _none
