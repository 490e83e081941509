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
    from unetinspect.analysis import profile as profile_module

    load = profile_module.load_unet

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB.")

    def load_exhausted(*args, **kwargs):
        model = load(*args, **kwargs)
        model.forward = exhausted
        return model

    monkeypatch.setattr(profile_module, "load_unet", load_exhausted)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """A real diffusers `StableDiffusionPipeline`, built offline in seconds: a tiny CLIP text model and a tokenizer
    whose vocabulary is the 256 byte symbols (written to a temporary folder, no download), a two-level VAE
    (latent = image / 2), diffusers' UNet for the tiny preset, and DDIM."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    symbols = sorted(ByteLevel.alphabet())
    tokens = [*symbols, *(s + "</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")  # no merges: a word is its byte symbols
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=77, local_files_only=True)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokens), hidden_size=tiny()["cross_attention_dim"], intermediate_size=64,
            num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77,
            bos_token_id=len(tokens) - 2, eos_token_id=len(tokens) - 1, pad_token_id=len(tokens) - 1,
        )).eval()
        vae = AutoencoderKL(block_out_channels=[8, 8], down_block_types=["DownEncoderBlock2D"] * 2,
                            up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=8,
                            layers_per_block=1).eval()
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                       unet=diffusers_unet(tiny()), scheduler=DDIMScheduler(), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
