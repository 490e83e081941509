"""Tiny diffusers pipelines saved as folders, as `pipe.save_pretrained()` writes them: what `unetinspect run` and
`attention FOLDER --prompt` open. Built offline in seconds (no download): a byte-level CLIP tokenizer with no
merges (every word is its byte symbols), tiny CLIP text models with random weights, a two-level VAE (image =
latent × 2) and diffusers' UNet for the tiny preset (SDXL: with SDXL's `text_time` conditioning and two encoders).

Not a test module: tests/test_run_cmd.py and tests/test_bad_run.py import it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from conftest import diffusers_unet, tiny


def tokenizer(folder: Path):
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    symbols = sorted(ByteLevel.alphabet())
    tokens = [*symbols, *(s + "</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=77, local_files_only=True)


def _text_config(vocab: int, hidden: int, **extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=64, num_attention_heads=4,
                          num_hidden_layers=2, max_position_embeddings=77, bos_token_id=vocab - 2,
                          eos_token_id=vocab - 1, pad_token_id=vocab - 1, **extra)


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=[8, 8], down_block_types=["DownEncoderBlock2D"] * 2,
                         up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=8,
                         layers_per_block=1).eval()


def save_sdxl(folder: Path) -> Path:
    """A tiny `StableDiffusionXLPipeline` in `folder`: two text encoders (32 + 16 wide: the UNet reads 48), the
    second's pooled projection and the six size numbers in `text_time`."""
    from diffusers import DDIMScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    words = tokenizer(folder.parent / f"{folder.name}-tokenizer")
    vocab = len(words)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unet = diffusers_unet(tiny(addition_embed_type="text_time", addition_time_embed_dim=8,
                                   projection_class_embeddings_input_dim=6 * 8 + 16, use_linear_projection=True))
        pipe = StableDiffusionXLPipeline(
            vae=_vae(), text_encoder=CLIPTextModel(_text_config(vocab, 32)).eval(),
            text_encoder_2=CLIPTextModelWithProjection(_text_config(vocab, 16, projection_dim=16)).eval(),
            tokenizer=words, tokenizer_2=words, unet=unet, scheduler=DDIMScheduler(), add_watermarker=False)
        pipe.save_pretrained(folder)
    return folder
