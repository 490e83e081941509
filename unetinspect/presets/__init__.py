"""Built-in configs: real UNets of the Stable Diffusion, SDXL, DeepFloyd IF, Kandinsky and unCLIP families, as
diffusers writes their config.json (the published fields, and diffusers' defaults for the fields a config.json
written by an older diffusers lacks), and a tiny one for demos.

Each preset is one JSON file named after it, except aliases (`same_as`): models published with another preset's
architecture (SDXL-Turbo, Playground v2.5 are SDXL), which read that preset's file with a few fields changed.

`pixel_factor` is what a config does not say: how many image pixels one sample pixel stands for. 8 for the
latents of SD's VAE and Kandinsky's MoVQ, 4 for the x4 upscaler's VAE, 1 for models that denoise pixels (IF,
unCLIP decoders). Sizes given in pixels are divided by it.

Data only: a preset read as a config object of its family's config class is `families.load_preset`, since the
family registry owns the config classes (and the weights' key maps, which the registry imports, read presets).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

DEFAULT_PRESET = "sd15"


@dataclass(frozen=True)
class Preset:
    """A built-in config; `pixel_factor` is how many image pixels one latent element stands for (1: pixel space)."""

    name: str
    description: str
    pixel_factor: int
    same_as: str | None = None  # an alias: this preset's JSON is the other one's ...
    changes: tuple[tuple[str, Any], ...] = ()  # ... with these fields changed


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("sd15", "Stable Diffusion 1.x (1.4, 1.5 and their fine-tunes): 4 levels, CLIP ViT-L text (768)", 8),
        Preset("sd15-inpaint", "Stable Diffusion 1.5 inpainting: sd15 with 9 input channels (latent+mask+masked)", 8),
        Preset("sd21", "Stable Diffusion 2.x (768-v): OpenCLIP-H text (1024), linear projections, 64-dim heads", 8),
        Preset("sdxl", "SDXL base 1.0: 3 levels, up to 10 transformer layers, text (2048) + size/crop embeddings", 8),
        Preset("sdxl-refiner", "SDXL refiner 1.0: 4 levels of 384-1536 channels, aesthetic-score conditioning", 8),
        Preset("sdxl-turbo", "SDXL-Turbo: SDXL base's architecture, distilled for 1-4 steps at 512 px", 8,
               same_as="sdxl", changes=(("sample_size", 64),)),
        Preset("playground-v2.5", "Playground v2.5 (1024 px aesthetic): SDXL base's architecture, EDM-trained", 8,
               same_as="sdxl"),
        Preset("ssd-1b", "Segmind SSD-1B: SDXL distilled to 1.3B, fewer transformer layers, no mid attention", 8),
        Preset("vega", "Segmind Vega: SDXL distilled to 745M, 1-2 transformer layers per level, no mid attention", 8),
        Preset("lcm-sd15", "Latent Consistency Model (LCM Dreamshaper v7): sd15 + a guidance-scale embedding (256)",
               8),
        Preset("sd21-unclip", "Stable unCLIP 2.1 (H): sd21 + CLIP image embedding and noise level (2048) projected "
               "into the time embedding", 8),
        Preset("sd-x4-upscaler", "SD x4 upscaler: 7 channels in (latent + low-res RGB), noise level as a class, "
               "cross-attention only on 3 levels", 4),
        Preset("sd-x2-latent-upscaler", "SD x2 latent upscaler: k-diffusion blocks, Fourier time, noise level + "
               "pooled text as time condition", 8),
        Preset("if-i-xl", "DeepFloyd IF stage I (XL): 64x64 pixels, T5 text (4096), simple cross-attention, "
               "attention-pooled text added to time", 1),
        Preset("if-ii-l", "DeepFloyd IF stage II (L): 64→256 px super-resolution, 5 levels, noise level as a "
               "timestep class", 1),
        Preset("karlo", "Karlo v1 alpha (unCLIP) decoder: 64x64 pixels, CLIP image embedding as the class "
               "embedding", 1),
        Preset("kandinsky-2.1", "Kandinsky 2.1 decoder: MoVQ latents, text + CLIP image embeddings (text_image)", 8),
        Preset("kandinsky-2.2", "Kandinsky 2.2 decoder: MoVQ latents, CLIP image embedding only (image)", 8),
        Preset("svd", "Stable Video Diffusion (img2vid): SD-2-shaped U with spatio-temporal resnets and "
               "transformers, CLIP image embedding (1024), fps/motion/noise ids; 14 frames", 8),
        Preset("svd-xt", "Stable Video Diffusion XT: svd's architecture, trained for 25 frames", 8),
        Preset("animatediff", "AnimateDiff: sd15 + the v1.5-v2 motion adapter (motion modules in every block and "
               "the mid block, 32 frames max); 16 frames", 8),
        Preset("animatediff-v3", "AnimateDiff v3: sd15 + the v1.5-v3 motion adapter (no mid-block motion module)", 8),
        Preset("animatediff-sdxl", "AnimateDiff SDXL (beta): sdxl + the SDXL motion adapter (3 levels, no mid-block "
               "motion module)", 8),
        Preset("tiny", "A tiny SD-shaped UNet (3 levels, 32-64 channels) for demos and tests: runs in milliseconds",
               8),
    )
}


def preset_names() -> list[str]:
    return list(PRESETS)


def load_preset_dict(name: str) -> dict:
    """The full diffusers config.json of a preset, as a dict."""
    preset = PRESETS.get(name)
    if preset is not None and preset.same_as is not None:
        return load_preset_dict(preset.same_as) | dict(preset.changes)
    text = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def pixel_factor(name: str) -> int:
    """Pixels per latent element of a preset's family (its autoencoder's factor; 1 in pixel space). Plain
    configs have theirs told from their channels: `sources.inputs.infer_pixel_factor`."""
    return PRESETS[name].pixel_factor
