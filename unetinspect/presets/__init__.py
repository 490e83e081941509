"""Built-in configs: the five real Stable Diffusion UNets, as diffusers writes them, and a tiny one for demos."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from unetinspect.config import UNetConfig

DEFAULT_PRESET = "sd15"


@dataclass(frozen=True)
class Preset:
    """A built-in config; `pixel_factor` is how many image pixels one latent element stands for (None: unknown)."""

    name: str
    description: str
    pixel_factor: int | None = 8  # the SD/SDXL VAE's


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("sd15", "Stable Diffusion 1.x (1.4, 1.5 and their fine-tunes): 4 levels, CLIP ViT-L text (768)"),
        Preset("sd15-inpaint", "Stable Diffusion 1.5 inpainting: sd15 with 9 input channels (latent+mask+masked)"),
        Preset("sd21", "Stable Diffusion 2.x (768-v): OpenCLIP-H text (1024), linear projections, 64-dim heads"),
        Preset("sdxl", "SDXL base 1.0: 3 levels, up to 10 transformer layers, text (2048) + size/crop embeddings"),
        Preset("sdxl-refiner", "SDXL refiner 1.0: 4 levels of 384-1536 channels, aesthetic-score conditioning"),
        Preset("tiny", "A tiny SD-shaped UNet (3 levels, 32-64 channels) for demos and tests: runs in milliseconds"),
    )
}


def preset_names() -> list[str]:
    return list(PRESETS)


def load_preset_dict(name: str) -> dict:
    """The full diffusers config.json of a preset, as a dict."""
    text = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def pixel_factor(name: str) -> int | None:
    """Pixels per latent element of a preset's family (its autoencoder's factor; 1 in pixel space)."""
    return PRESETS[name].pixel_factor


def load_preset(name: str) -> UNetConfig:
    return UNetConfig.from_dict(load_preset_dict(name), origin=f"preset {name}")
