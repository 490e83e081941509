"""Shared fixtures: small configs that together cover every feature of the UNet, and diffusers references."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from unetinspect.presets import load_preset_dict

warnings.filterwarnings("ignore", category=FutureWarning)


def tiny(**changes) -> dict:
    """The tiny preset with some fields changed: a full diffusers config dict."""
    config = load_preset_dict("tiny")
    config.update(changes)
    return config


# Each config exercises different features; all are small enough to run in milliseconds.
SMALL_CONFIGS: dict[str, dict] = {
    "sd15-like": tiny(),
    "sd21-like": tiny(attention_head_dim=[2, 4, 4], use_linear_projection=True, upcast_attention=True,
                      cross_attention_dim=40),
    "sdxl-like": tiny(
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        attention_head_dim=[2, 4, 8], transformer_layers_per_block=[1, 2, 2], use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=1280 + 48,
        cross_attention_dim=80,
    ),
    "class-and-extras": tiny(
        num_class_embeds=10, resnet_time_scale_shift="scale_shift", time_cond_proj_dim=16,
        timestep_post_act="silu", time_embedding_act_fn="mish", center_input_sample=True, conv_in_kernel=5,
        conv_out_kernel=1, downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, mid_block_scale_factor=1.5,
        norm_eps=1e-6, act_fn="mish", encoder_hid_dim=24, time_embedding_dim=96,
    ),
    "class-projection-concat": tiny(
        class_embed_type="projection", projection_class_embeddings_input_dim=12, class_embeddings_concat=True,
        attention_head_dim=[2, 4, 4], only_cross_attention=[True, False, False], mid_block_type=None,
        layers_per_block=[1, 2, 1],
    ),
    "class-timestep": tiny(class_embed_type="timestep", only_cross_attention=True),
    "class-simple-projection": tiny(class_embed_type="simple_projection", projection_class_embeddings_input_dim=7),
    "class-identity": tiny(class_embed_type="identity"),
}


def diffusers_unet(config: dict, seed: int = 0):
    """diffusers' own model for a config, with seeded random weights."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return UNet2DConditionModel.from_config(config).eval()


@pytest.fixture
def write_config(tmp_path: Path):
    def write(config: dict, name: str = "config.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(config))
        return path

    return write


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared, busy CPU several threads wait on each other and times scatter by 10x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def exhausted_model(monkeypatch) -> None:
    """Make the loaded model run out of memory as CUDA would (the meta trace for FLOPs still runs)."""
    from unetinspect.analysis import session as session_module

    load = session_module.load_model

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB.")

    def load_exhausted(source, device, dtype, **kwargs):
        model = load(source, device, dtype, **kwargs)
        if device.type != "meta":
            model.forward = exhausted
        return model

    monkeypatch.setattr(session_module, "load_model", load_exhausted)
