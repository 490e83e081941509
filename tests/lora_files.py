"""Test helpers: LoRA files in each format, made for the Linear/Conv2d layers of a tiny UNet.

Module names are written from diffusers' state-dict keys (and, for SDXL-style kohya files, from the LDM names of
tests/ldm_files.py, which are checked against diffusers' own conversion), not from unetinspect's lookup tables.
"""

from __future__ import annotations

import torch
from ldm_files import ldm_key

ATTENTION_LAYERS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                    "attn2.to_v", "attn2.to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")


def adapted_layers(state_dict: dict, layers: tuple[str, ...] = ATTENTION_LAYERS) -> dict[str, tuple[int, ...]]:
    """Module path → weight shape of the layers a typical LoRA adapts (the attention blocks'); values may be
    tensors or shapes."""
    shapes = {key: tuple(getattr(value, "shape", value)) for key, value in state_dict.items()}
    return {key.removesuffix(".weight"): shape for key, shape in shapes.items()
            if key.endswith(".weight") and any(key.removesuffix(".weight").endswith(layer) for layer in layers)
            and len(shape) in (2, 4)}


def factors(shape: tuple[int, ...], rank: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(down, up) of a LoRA on a layer of this weight shape, as kohya stores them (convs keep 4-D factors)."""
    out_features, in_features = shape[0], shape[1]
    if len(shape) == 4:
        down = torch.randn(rank, in_features, *shape[2:], generator=generator)
        up = torch.randn(out_features, rank, 1, 1, generator=generator)
    else:
        down = torch.randn(rank, in_features, generator=generator)
        up = torch.randn(out_features, rank, generator=generator)
    return down * 0.1, up * 0.1


def kohya_lora(layers: dict[str, tuple[int, ...]], rank: int = 4, alpha: float = 2.0, config: dict | None = None,
               text_encoder: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A kohya LoRA: diffusers names with underscores, or the original (SGM) names when `config` is given."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for path, shape in layers.items():
        name = ldm_key(path + ".weight", config).removesuffix(".weight") if config else path
        stem = "lora_unet_" + name.replace(".", "_")
        down, up = factors(shape, rank, generator)
        tensors.update({f"{stem}.lora_down.weight": down, f"{stem}.lora_up.weight": up,
                        f"{stem}.alpha": torch.tensor(alpha)})
    for i in range(text_encoder):
        stem = f"lora_te_text_model_encoder_layers_{i}_self_attn_q_proj"
        tensors.update({f"{stem}.lora_down.weight": torch.randn(rank, 8, generator=generator),
                        f"{stem}.lora_up.weight": torch.randn(8, rank, generator=generator),
                        f"{stem}.alpha": torch.tensor(alpha)})
    return tensors


def peft_lora(layers: dict[str, tuple[int, ...]], rank: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A diffusers/PEFT LoRA (unet.<path>.lora_A / lora_B)."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for path, shape in layers.items():
        down, up = factors(shape, rank, generator)
        tensors[f"unet.{path}.lora_A.weight"] = down
        tensors[f"unet.{path}.lora_B.weight"] = up
    return tensors


def loha(layers: dict[str, tuple[int, ...]], rank: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A LyCORIS LoHa on the Linear layers: ΔW = (w1a w1b) ⊙ (w2a w2b) · alpha/rank."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for path, shape in layers.items():
        if len(shape) != 2:
            continue
        stem = "lora_unet_" + path.replace(".", "_")
        for w in ("w1", "w2"):
            tensors[f"{stem}.hada_{w}_a"] = torch.randn(shape[0], rank, generator=generator) * 0.1
            tensors[f"{stem}.hada_{w}_b"] = torch.randn(rank, shape[1], generator=generator) * 0.1
        tensors[f"{stem}.alpha"] = torch.tensor(float(rank))
    return tensors


def lokr(layers: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """A LyCORIS LoKr on the Linear layers whose sizes are even: ΔW = w1 ⊗ w2, w1 2×2."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for path, (out_features, in_features) in ((p, s) for p, s in layers.items() if len(s) == 2):
        if out_features % 2 or in_features % 2:
            continue
        stem = "lora_unet_" + path.replace(".", "_")
        tensors[f"{stem}.lokr_w1"] = torch.randn(2, 2, generator=generator)
        tensors[f"{stem}.lokr_w2"] = torch.randn(out_features // 2, in_features // 2, generator=generator) * 0.1
    return tensors
