"""The UNet2DConditionModel families beyond SD against diffusers itself: same state-dict keys and shapes, same
parameter count, same outputs (fp32, <= 1e-4) on the same weights and the same make_inputs.

Each config is a published family's config shrunk in channels and layers, keeping every field that changes the
structure. Parameters diffusers initialises to zero (GLIGEN's gates and null features) are set to random values
first, so that the code behind them is really compared.
"""

from __future__ import annotations

import pytest
import torch
from conftest import diffusers_unet, tiny

from unetinspect import UNetConfig
from unetinspect.errors import ConfigError, UnsupportedConfigError
from unetinspect.sources.inputs import InputSpec, make_inputs
from unetinspect.sources.loading import build_model, count_parameters

# DeepFloyd IF stage I: resnet resampling, added-KV attention with group-normalised text, T5 text projected by
# encoder_hid_proj and pooled into the time embedding, scaled resnets that skip the time activation.
IF_I = dict(
    in_channels=3, out_channels=6, block_out_channels=[32, 64, 64], layers_per_block=1,
    down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"],
    up_block_types=["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
    mid_block_type="UNetMidBlock2DSimpleCrossAttn", attention_head_dim=16, cross_attention_dim=64,
    encoder_hid_dim=48, encoder_hid_dim_type="text_proj", addition_embed_type="text", addition_embed_type_num_heads=4,
    cross_attention_norm="group_norm", resnet_skip_time_act=True, resnet_out_scale_factor=1.414,
    resnet_time_scale_shift="scale_shift", time_embedding_act_fn="gelu",
)
# The Kandinsky / unCLIP decoders share IF's blocks, without its text pooling and group norm
SIMPLE_BLOCKS = {**IF_I, "in_channels": 4, "out_channels": 8, "encoder_hid_dim": None, "encoder_hid_dim_type": None,
                 "addition_embed_type": None, "cross_attention_norm": None, "resnet_skip_time_act": False,
                 "resnet_out_scale_factor": 1.0, "time_embedding_act_fn": None}

FAMILIES: dict[str, dict] = {
    "if-i": tiny(**IF_I),
    # IF stage II: the noise level of the upscaled low-res image, as a timestep class embedding
    "if-ii": tiny(**{**IF_I, "in_channels": 6, "class_embed_type": "timestep", "layers_per_block": [1, 2, 1]}),
    "class-embeddings-concat": tiny(**{**SIMPLE_BLOCKS, "class_embed_type": "timestep",
                                       "class_embeddings_concat": True}),
    "if-only-cross-attention": tiny(**{**IF_I, "only_cross_attention": True}),
    # text layer-normalised before the added-KV projections; a mid block that reads only the text
    "simple-cross-attn-layer-norm": tiny(**{**SIMPLE_BLOCKS, "cross_attention_norm": "layer_norm",
                                            "mid_block_only_cross_attention": True}),
    # Kandinsky 2.1: XLM-R text + CLIP image embedding as context (text_image_proj) and in the time embedding
    "kandinsky-2.1": tiny(**{**SIMPLE_BLOCKS, "addition_embed_type": "text_image", "encoder_hid_dim": 40,
                             "encoder_hid_dim_type": "text_image_proj"}),
    # Kandinsky 2.2: the CLIP image embedding alone (image_proj, image)
    "kandinsky-2.2": tiny(**{**SIMPLE_BLOCKS, "addition_embed_type": "image", "encoder_hid_dim": 40,
                             "encoder_hid_dim_type": "image_proj"}),
    # Kandinsky 2.2 ControlNet: plus a depth hint encoded to 4 channels and concatenated to the latent
    "kandinsky-2.2-controlnet": tiny(**{**SIMPLE_BLOCKS, "in_channels": 8, "addition_embed_type": "image_hint",
                                        "encoder_hid_dim": 40, "encoder_hid_dim_type": "image_proj"}),
    # unCLIP / Karlo decoder: the CLIP image embedding as an identity class embedding
    "unclip": tiny(**{**SIMPLE_BLOCKS, "class_embed_type": "identity", "out_channels": 6}),
    # SD x4 upscaler: noise level as a class label, cross-attention-only attn1 in three of four levels
    "sd-x4-upscaler": tiny(down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                           up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                           in_channels=7, num_class_embeds=1000, only_cross_attention=[False, True, True],
                           use_linear_projection=True),
    # self-attention-only blocks and the attention-free UNetMidBlock2D
    "attn-blocks": tiny(down_block_types=["AttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "AttnUpBlock2D"],
                        mid_block_type="UNetMidBlock2D", attention_head_dim=[8, 4, 4]),
    # SD x2 latent upscaler (k-diffusion): K blocks, ada_group norms, Fourier time, no output norm, 1x1 convs
    "sd-x2-latent-upscaler": tiny(
        down_block_types=["KDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D"],
        up_block_types=["KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KUpBlock2D"], mid_block_type=None,
        norm_num_groups=None, time_embedding_type="fourier", act_fn="gelu", timestep_post_act="gelu",
        time_cond_proj_dim=24, attention_head_dim=16, conv_in_kernel=1, conv_out_kernel=1,
        resnet_time_scale_shift="scale_shift", in_channels=7),
    "gligen": tiny(attention_type="gated"),
    "gligen-text-image": tiny(attention_type="gated-text-image"),
    "fourier-time-class-timestep": tiny(time_embedding_type="fourier", class_embed_type="timestep"),
    # diffusers' old "UNetRes" block names
    "unetres-prefix": tiny(down_block_types=["UNetResCrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]),
}

DUAL = tiny(dual_cross_attention=True)


def _reference(config: dict):
    reference = diffusers_unet(config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in reference.parameters():
            if not parameter.any():  # zero-initialised: gates and null features would hide their code
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return reference


def _ours_like(reference, config: dict):
    ours = build_model(UNetConfig.from_dict(config))
    ours.load_state_dict(reference.state_dict(), assign=True)
    return ours


def _run(model, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs)
    return out if torch.is_tensor(out) else out[0]


def _shapes(model) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_matches_diffusers(name):
    pytest.importorskip("diffusers")
    config = FAMILIES[name]
    reference = _reference(config)
    ours = _ours_like(reference, config)
    assert _shapes(ours) == _shapes(reference)
    assert count_parameters(ours) == count_parameters(reference)
    inputs = make_inputs(ours.config, InputSpec(batch=2))
    expected, actual = _run(reference, inputs), _run(ours, inputs)
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max().item() <= 1e-4


def test_gligen_boxes_reach_the_gated_attention():
    pytest.importorskip("diffusers")
    config = FAMILIES["gligen"]
    ours = _ours_like(_reference(config), config)
    inputs = make_inputs(ours.config, InputSpec(batch=1))
    grounded = _run(ours, inputs)
    del inputs["cross_attention_kwargs"]
    assert (grounded - _run(ours, inputs)).abs().max() > 1e-3


@pytest.mark.xfail(strict=True, raises=TypeError,
                   reason="diffusers 0.42.1 bug: CrossAttnDownBlock2D passes encoder_attention_mask to "
                          "DualTransformer2DModel.forward, which has no such parameter")
def test_dual_cross_attention_diffusers_cannot_run():
    pytest.importorskip("diffusers")
    reference = diffusers_unet(DUAL)
    _run(reference, make_inputs(UNetConfig.from_dict(DUAL), InputSpec(batch=1)))


def test_dual_cross_attention_matches_diffusers_with_its_forward_fixed(monkeypatch):
    """With diffusers' DualTransformer2DModel taking (and, as its body does, ignoring) the masks, both agree."""
    pytest.importorskip("diffusers")
    from diffusers.models.transformers.dual_transformer_2d import DualTransformer2DModel

    original = DualTransformer2DModel.forward
    monkeypatch.setattr(DualTransformer2DModel, "forward",
                        lambda self, *args, encoder_attention_mask=None, **kwargs: original(self, *args, **kwargs))
    reference = _reference(DUAL)
    ours = _ours_like(reference, DUAL)
    assert _shapes(ours) == _shapes(reference)
    inputs = make_inputs(ours.config, InputSpec(batch=2))
    assert inputs["encoder_hidden_states"].shape[1] == 77 + 257
    assert (_run(ours, inputs) - _run(reference, inputs)).abs().max() <= 1e-4


@pytest.mark.parametrize("name,mask_name", [
    ("unclip", "attention_mask"),  # unCLIP's pipeline masks its padded text this way
    ("if-i", "encoder_attention_mask"),
    ("sd-x4-upscaler", "encoder_attention_mask"),
    ("sd-x2-latent-upscaler", "encoder_attention_mask"),
])
def test_attention_masks_match_diffusers(name, mask_name):
    pytest.importorskip("diffusers")
    config = FAMILIES[name]
    reference = _reference(config)
    ours = _ours_like(reference, config)
    inputs = make_inputs(ours.config, InputSpec(batch=2, text_len=12))
    mask = torch.ones(2, 12)
    mask[0, 7:] = 0
    mask[1, 3:] = 0
    inputs[mask_name] = mask
    masked = _run(ours, inputs)
    assert (masked - _run(reference, inputs)).abs().max() <= 1e-4
    del inputs[mask_name]
    assert (masked - _run(ours, inputs)).abs().max() > 1e-4


@pytest.mark.parametrize("as_intrablock", [True, False])
def test_t2i_adapter_residuals_match_diffusers(as_intrablock):
    """One feature per down level, added inside cross-attention blocks and after plain ones (the mid block's
    one only when shapes fit); passed the deprecated way, as down residuals without a mid residual, too."""
    pytest.importorskip("diffusers")
    config = FAMILIES["sd-x4-upscaler"]
    reference = _reference(config)
    ours = _ours_like(reference, config)
    inputs = make_inputs(ours.config, InputSpec(batch=1))
    generator = torch.Generator().manual_seed(3)
    levels = [(32, 8), (64, 8), (64, 4), (64, 4)]  # each down level (a plain one after its downsampler), mid
    features = [torch.randn(1, c, s, s, generator=generator) for c, s in levels]
    key = "down_intrablock_additional_residuals" if as_intrablock else "down_block_additional_residuals"
    # diffusers pops from the list it is given: each model gets its own
    expected = _run(reference, {**inputs, key: list(features)})
    actual = _run(ours, {**inputs, key: list(features)})
    assert (actual - expected).abs().max() <= 1e-4
    assert (actual - _run(ours, inputs)).abs().max() > 1e-3


@pytest.mark.parametrize("changes", [
    # asymmetric depths whose reverse list is longer than its blocks and whose per-layer lists are longer than
    # the layers: diffusers reads them by index and never builds the extra entries
    dict(down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
         up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
         transformer_layers_per_block=[[1, 2], [2, 1, 7], [1, 3]],
         reverse_transformer_layers_per_block=[[1, 1, 2, 4], [2, 1, 1], [1, 2, 1], [5]]),
    # a depth list longer than the blocks: the mid block reads its last entry, the up path the reversed list
    dict(transformer_layers_per_block=[1, 2, 1, 3]),
])
def test_longer_depth_lists_build_what_diffusers_builds(changes):
    pytest.importorskip("diffusers")
    config = tiny(**changes)
    with torch.device("meta"):
        reference = diffusers_unet(config)
    ours = build_model(UNetConfig.from_dict(config))
    assert _shapes(ours) == _shapes(reference)
    assert count_parameters(ours) == count_parameters(reference)


def test_blocks_a_conditional_unet_cannot_run_are_refused_by_name():
    for kind, block in (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "AttnSkipUpBlock2D")):
        config = tiny(**{kind: [block, *tiny()[kind][1:]]})
        with pytest.raises(UnsupportedConfigError) as caught:
            UNetConfig.from_dict(config)
        assert f"{kind}[0]='{block}'" in caught.value.one_line() and "cannot call it" in caught.value.one_line()


@pytest.mark.parametrize("changes,words", [
    (dict(encoder_hid_dim_type="ip_image_proj", encoder_hid_dim=32), "unknown encoder_hid_dim_type='ip_image_proj'"),
    (dict(encoder_hid_dim=32, cross_attention_dim=[48, 48, 48]), "needs a single cross_attention_dim"),
    (dict(attention_type="gated", cross_attention_dim=[48, 48, 48]), "needs a single cross_attention_dim"),
    (dict(addition_embed_type="image"), "needs encoder_hid_dim"),
    (dict(time_embedding_type="fourier", time_embedding_dim=33), "even embedding width"),
    (dict(time_embedding_type="gaussian"), "unknown time_embedding_type='gaussian'"),
    (dict(transformer_layers_per_block=[1, 2]), "transformer_layers_per_block has 2 entries"),
    (dict(norm_num_groups=None), "norm_num_groups is null"),
    (dict(class_embed_type="timestep", class_embeddings_concat=True, addition_embed_type="text"),
     "class_embeddings_concat doubles the time embedding"),
])
def test_configs_diffusers_rejects_are_rejected_with_its_reason(changes, words):
    """Each of these fails in diffusers too, when built or at the first forward, with a less direct message."""
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("(", r"\(")):
        UNetConfig.from_dict(tiny(**changes))


def test_doubling_upsamplers_need_latent_multiples():
    """IF's resnet upsamplers always double: like diffusers, the UNet runs on latents that are multiples of
    2^downsamples, any size of those matching; `latent_multiple` says so beforehand."""
    pytest.importorskip("diffusers")
    config = FAMILIES["if-i"]
    reference = _reference(config)
    ours = _ours_like(reference, config)
    assert ours.config.latent_multiple == 4 and UNetConfig.from_dict(tiny()).latent_multiple == 1
    inputs = make_inputs(ours.config, InputSpec(batch=1, latent=(20, 12)))
    assert (_run(ours, inputs) - _run(reference, inputs)).abs().max() <= 1e-4
    odd = make_inputs(ours.config, InputSpec(batch=1, latent=(18, 12)))
    for model in (reference, ours):
        with pytest.raises(RuntimeError):
            _run(model, odd)


def test_missing_family_inputs_are_named():
    """A family's extra input left out is one InputError naming it, not a KeyError deep in forward."""
    from unetinspect.errors import InputError

    model = build_model(UNetConfig.from_dict(FAMILIES["kandinsky-2.2"]))
    inputs = make_inputs(model.config, device="meta")
    assert inputs["encoder_hidden_states"] is None  # Kandinsky 2.2 reads the image embedding only
    del inputs["added_cond_kwargs"]["image_embeds"]
    with pytest.raises(InputError, match="image_embeds"):
        model(**inputs)
    sd = build_model(UNetConfig.from_dict(tiny()))
    grounded = make_inputs(UNetConfig.from_dict(FAMILIES["gligen"]), device="meta")
    with pytest.raises(InputError, match="gligen"):
        sd(**grounded)


def test_text_time_narrower_than_sdxls_time_ids_is_named():
    """text_time's width is the pooled text plus SDXL's 6 time ids; one narrower than the ids alone left no room
    for the text (a negative width: an internal error) — it is a ConfigError naming both fields."""
    config = UNetConfig.from_dict(tiny(addition_embed_type="text_time", addition_time_embed_dim=8,
                                       projection_class_embeddings_input_dim=40))
    with pytest.raises(ConfigError, match=r"projection_class_embeddings_input_dim=40 .* addition_time_embed_dim=8"):
        make_inputs(config, device="meta")
    exact = config.replace(projection_class_embeddings_input_dim=48)  # 6 ids and no pooled text still run
    assert make_inputs(exact, device="meta")["added_cond_kwargs"]["text_embeds"].shape[-1] == 0
