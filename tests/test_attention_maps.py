"""engine/attention.py and views/attention.py: attention maps against diffusers' own softmax, output unchanged,
the maps of a real loop (`watch(attention=True)`), token labels."""

from __future__ import annotations

import pytest
import torch
from conftest import SMALL_CONFIGS, our_unet, tiny
from test_families import FAMILIES
from torch import nn

import unetinspect as ui
from unetinspect.engine.attention import AttentionOptions, AttentionRecorder, layer_size
from unetinspect.errors import RunError
from unetinspect.sources.live import as_diffusers

CASES = {"sd15": SMALL_CONFIGS["sd15-like"], "sdxl": SMALL_CONFIGS["sdxl-like"], "if": FAMILIES["if-i"],
         "if-only-cross": FAMILIES["if-only-cross-attention"],
         # head dims per block and upcasting; attn1 reading the text too; added-KV text behind a LayerNorm
         "sd21": SMALL_CONFIGS["sd21-like"], "only-cross": SMALL_CONFIGS["class-timestep"],
         "kandinsky-like": FAMILIES["simple-cross-attn-layer-norm"]}


def reference_maps(model: nn.Module, inputs: dict, kind: str) -> dict[str, torch.Tensor]:
    """diffusers' own attention probabilities: its classic processors (AttnProcessor, AttnAddedKVProcessor)
    compute them with `get_attention_scores`, recorded here per layer, heads averaged, as [b, tokens, h, w].
    IF's cross part is the text keys' part of its one softmax (they come first)."""
    model.set_default_attn_processor()
    seen: dict[str, torch.Tensor] = {}
    latent = inputs["sample"].shape[-2:]

    def recorder(path, attn):
        scores = attn.get_attention_scores

        def record(query, key, mask=None):
            probs = scores(query, key, mask)  # [b*heads, queries, keys]
            seen[path] = probs.view(-1, attn.heads, *probs.shape[1:]).mean(1)
            return probs
        return record

    calls = {}
    for path, module in model.named_modules():
        if type(module).__name__ == "Attention":
            module.get_attention_scores = recorder(path, module)
            module.register_forward_pre_hook(
                lambda m, args, kwargs, path=path: calls.__setitem__(path, (args, kwargs)), with_kwargs=True)
    with torch.no_grad():
        model(**inputs)
    maps = {}
    for path, probs in seen.items():
        args, kwargs = calls[path]
        hidden = args[0]
        cross = kwargs.get("encoder_hidden_states") is not None
        if (kind == "cross") != cross:
            continue
        if hidden.ndim == 4:
            h, w = hidden.shape[-2:]
            tokens = kwargs["encoder_hidden_states"].shape[1]
            probs = probs[..., :tokens]
        else:
            h, w = layer_size(hidden.shape[1], tuple(latent))
        # cross: [b, pixels, tokens] → [b, tokens, h, w]; self: [b, queries, pixels] → [b, queries, h, w]
        maps[path] = (probs.transpose(1, 2) if cross else probs).reshape(probs.shape[0], -1, h, w)
    return maps


def twins(config: dict) -> tuple[nn.Module, nn.Module]:
    ours = our_unet(config)
    return ours, as_diffusers(ours)


@pytest.mark.parametrize("name", list(CASES))
def test_cross_maps_match_diffusers_own_softmax_for_ours_and_diffusers(name):
    pytest.importorskip("diffusers")
    ours, theirs = twins(CASES[name])
    inputs = ui.make_inputs(ours.config, ui.InputSpec(batch=2, latent=(8, 12), text_len=7))
    # diffusers pads a text mask by the image keys, which added-KV layers reading only the text lack
    masked = name not in ("if-only-cross", "kandinsky-like")
    if masked:  # the second prompt's last three tokens are padding: no pixel may attend to them
        inputs["encoder_attention_mask"] = torch.tensor([[1.0] * 7, [1.0] * 4 + [0.0] * 3])
    expected = reference_maps(as_diffusers(ours), inputs, "cross")
    assert expected
    for model in (ours, theirs):
        maps = ui.attention_maps(model, inputs)
        assert maps.layers.keys() == expected.keys()
        for path, layer in maps.layers.items():
            assert layer.shape == expected[path].shape
            assert (layer - expected[path]).abs().max() <= 1e-5, path
        assert maps.aggregate().shape == (2, 7, 8, 12)
        # (attn1 reading the text, with only_cross_attention, is given no text mask: diffusers does the same)
        assert not masked or all(layer[1, 4:].abs().max() < 1e-6 for path, layer in maps.layers.items()
                                 if not path.endswith("attn1"))
    if name == "sd15":
        assert "down_blocks.0.attentions.0.transformer_blocks.0.attn2" in maps.layers


def test_self_maps_are_the_query_pixels_row_of_diffusers_softmax():
    pytest.importorskip("diffusers")
    ours, _ = twins(CASES["sd15"])
    inputs = ui.make_inputs(ours.config, ui.InputSpec(latent=(8, 12)))
    full = reference_maps(as_diffusers(ours), inputs, "self")  # [b, queries, h, w]
    maps = ui.attention_maps(ours, inputs, kind="self", query=(5, 7))
    for path, layer in maps.layers.items():
        h, w = layer.shape[-2:]
        y, x = 5 * h // 8, 7 * w // 12
        assert (layer[:, 0] - full[path][:, y * w + x]).abs().max() <= 1e-5
        assert torch.allclose(layer.sum((-1, -2)), torch.ones(1))


def test_if_cross_map_is_the_text_part_of_one_softmax_and_self_map_the_rest():
    ours, _ = twins(CASES["if"])
    inputs = ui.make_inputs(ours.config, ui.InputSpec(latent=(8, 8), text_len=5))
    cross = ui.attention_maps(ours, inputs)
    own = ui.attention_maps(ours, inputs, kind="self", query=(0, 0))
    for path, layer in cross.layers.items():
        # at the query pixel the text's share plus the pixels' share is the whole softmax
        text_share = layer[:, :, 0, 0].sum(1)
        assert torch.allclose(text_share + own.layers[path].sum((1, 2, 3)), torch.ones(1), atol=1e-5)
        assert (text_share < 1).all()


def sample_of(output) -> torch.Tensor:
    """Our UNet returns the tensor, diffusers' an output object holding it."""
    return getattr(output, "sample", output)


@pytest.mark.parametrize("impl", ["ours", "diffusers"])
def test_output_is_unchanged_and_no_hook_is_left(impl):
    model = our_unet(tiny())
    inputs = ui.make_inputs(model.config, ui.InputSpec(batch=2))
    if impl == "diffusers":
        pytest.importorskip("diffusers")
        model = as_diffusers(model)
    processors = {name: type(p) for name, p in getattr(model, "attn_processors", {}).items()}
    with torch.no_grad():
        plain = sample_of(model(**inputs))
        with AttentionRecorder(model, AttentionOptions(heads=True)):
            mapped = sample_of(model(**inputs))
    assert torch.equal(plain, mapped)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    # diffusers' layers keep their fused SDPA processors: the maps are computed beside them, not instead
    assert {name: type(p) for name, p in getattr(model, "attn_processors", {}).items()} == processors
    assert impl == "ours" or {p.__name__ for p in processors.values()} == {"AttnProcessor2_0"}


def test_heads_blocks_and_daam_aggregation():
    model = our_unet(tiny())
    inputs = ui.make_inputs(model.config, ui.InputSpec(latent=(8, 8), text_len=6))
    maps = ui.attention_maps(model, inputs, blocks=["down_blocks.1", "mid_block"], heads=True)
    assert all(p.startswith(("down_blocks.1.", "mid_block.")) for p in maps.layers)
    modules = dict(model.named_modules())
    assert all(layer.shape[:3] == (1, modules[path].heads, 6) for path, layer in maps.layers.items())
    assert torch.allclose(maps.aggregate(), ui.attention_maps(model, inputs, blocks=["down_blocks.1", "mid_block"])
                          .aggregate(), atol=1e-6)
    daam = maps.aggregate("daam", normalise=True)
    assert daam.shape == (1, 6, 8, 8) and (daam >= 0).all()
    assert torch.allclose(daam.sum(1), torch.ones(1), atol=1e-4)  # no labels: every token is a word
    with pytest.raises(RunError, match="heads were averaged"):
        ui.attention_maps(model, inputs).aggregate("daam")
    with pytest.raises(RunError, match="no attention layer under 'up_blocks.9'"):
        ui.attention_maps(model, inputs, blocks=["up_blocks.9"])


def test_layer_size_follows_the_latent_aspect_and_rounding():
    assert layer_size(8 * 12, (16, 24)) == (8, 12)
    assert layer_size(4 * 5, (7, 9)) == (4, 5)  # stride-2 convolutions round up
    assert layer_size(18, (10, 20)) == (3, 6)  # no power of two fits: the factorisation nearest its aspect


def test_bad_query_and_no_cross_attention_are_one_line_errors():
    model = our_unet(tiny())
    inputs = ui.make_inputs(model.config, ui.InputSpec(latent=(8, 8)))
    with pytest.raises(RunError, match="query pixel 9,0 is outside the 8x8 latent"):
        ui.attention_maps(model, inputs, kind="self", query=(9, 0))
    plain = our_unet(tiny(down_block_types=["DownBlock2D"] * 3, up_block_types=["UpBlock2D"] * 3,
                          mid_block_type=None))
    with pytest.raises(RunError, match="no cross-attention map was recorded in UNet2DConditionModel"):
        ui.attention_maps(plain, ui.make_inputs(plain.config))


class LdmAttention(nn.Module):
    """The latent-diffusion repository's layout (ldm/modules/attention.py): `to_q`, `to_k` and `heads` as in
    diffusers' Attention, but called as `forward(x, context)`."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = 2
        self.to_q, self.to_k, self.to_v = (nn.Linear(8, 8, bias=False) for _ in range(3))

    def forward(self, x, context=None):
        context = x if context is None else context
        return nn.functional.scaled_dot_product_attention(self.to_q(x), self.to_k(context), self.to_v(context))


class LdmModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = LdmAttention()

    def forward(self, sample):
        return self.attn(sample.flatten(2).transpose(1, 2))


def test_a_layer_whose_input_is_not_named_hidden_states_is_a_one_line_error():
    model, sample = LdmModel(), torch.randn(1, 8, 4, 4)
    with AttentionRecorder(model, AttentionOptions(kind="self", query=(0, 0))):
        with pytest.raises(RunError, match=r"attention layer 'attn' \(LdmAttention\) takes no hidden_states"):
            model(sample)
    assert not model.attn._forward_hooks


def test_a_preset_source_runs_on_the_cpu():
    maps = ui.attention_maps("tiny", spec=ui.InputSpec(latent=(8, 8), text_len=4), device="cpu")
    assert maps.setup.label == "tiny" and maps.aggregate().shape == (1, 4, 8, 8)


# ---- in a loop ------------------------------------------------------------------------------------------------


def cfg_loop(model: nn.Module, steps: int) -> list[torch.Tensor]:
    """A denoising loop as diffusers runs one: the latent twice, unconditional text first. Returns the inputs
    of the conditional half of each step."""
    inputs = ui.make_inputs(model.config, ui.InputSpec(batch=1, latent=(8, 8), text_len=5))
    text = torch.cat([torch.zeros_like(inputs["encoder_hidden_states"]), inputs["encoder_hidden_states"]])
    latents, conds = inputs["sample"], []
    with torch.no_grad():
        for t in range(steps):
            step = {"sample": torch.cat([latents] * 2), "timestep": torch.tensor(900 - 100 * t),
                    "encoder_hidden_states": text}
            conds.append({**step, "sample": latents, "encoder_hidden_states": text[1:]})
            latents = latents - 0.1 * sample_of(model(**step))[1:]
    return conds


def test_watch_collects_the_conditional_half_over_every_step():
    model = our_unet(tiny())
    with ui.watch(model, attention=AttentionOptions(batch="auto", keep_steps={1})) as w:
        conds = cfg_loop(model, 3)
        conds += cfg_loop(model, 1)  # a second pipeline call: its steps continue the count
    assert w.calls == 4 and w.attention.steps == 4
    singles = [ui.attention_maps(model, c) for c in conds]
    mean = w.attention.mean()
    assert "conditional half" in mean.batch_note and mean.steps == 4
    for path, layer in mean.layers.items():
        assert layer.shape[0] == 1
        assert (layer - sum(s.layers[path] for s in singles) / 4).abs().max() <= 1e-5
        assert (w.attention.at(1).layers[path] - singles[1].layers[path]).abs().max() <= 1e-5
    with pytest.raises(RunError, match=r"step 0 was not kept \(kept: \[1\]\)"):
        w.attention.at(0)
    assert w.report().repeat == 4  # the timing of the watch is still there


def test_watch_without_attention_says_how_to_ask():
    model = our_unet(tiny())
    with ui.watch(model) as w:
        cfg_loop(model, 1)
    with pytest.raises(RunError) as error:
        _ = w.attention
    assert "watch(module, attention=True)" in error.value.one_line()


# ---- tokens ---------------------------------------------------------------------------------------------------


class FakeClipTokenizer:
    """The interface of HF's CLIPTokenizer that labelling uses: ids padded to max_length, names of ids."""

    all_special_ids = [0, 1]
    vocab = ["<|startoftext|>", "<|endoftext|>", "a</w>", "photo</w>", "of</w>", "cat</w>", "!"]

    def __init__(self, pad: str = "<|endoftext|>") -> None:
        self.pad = self.vocab.index(pad)

    def __call__(self, prompt, padding, max_length, truncation):
        ids = [0, *(self.vocab.index(w + "</w>") for w in prompt.split()), 1]
        return {"input_ids": (ids + [self.pad] * max_length)[:max_length]}

    def convert_ids_to_tokens(self, ids):
        return [self.vocab[i] for i in ids]


def test_tokens_are_labelled_from_a_tokenizer_words_or_an_sdxl_pipeline():
    labels = ui.token_labels(FakeClipTokenizer(), "a photo of a cat", 9)
    assert labels.labels == ("<sot>", "a", "photo", "of", "a", "cat", "<eot>", "<pad>", "<pad>")
    assert labels.words() == [1, 2, 3, 4, 5]
    assert ui.token_labels("a, photo ,cat", None, 6).labels == ("<sot>", "a", "photo", "cat", "<eot>", "<pad>")

    class SDXLPipe:  # tokenizer_2 pads with "!" as SDXL's does: still padding, by its place after the end
        tokenizer, tokenizer_2 = FakeClipTokenizer(), FakeClipTokenizer(pad="!")

    assert ui.token_labels(SDXLPipe(), "a cat", 6) == ui.token_labels(FakeClipTokenizer(), "a cat", 6)
    model = our_unet(SMALL_CONFIGS["sdxl-like"])
    inputs = ui.make_inputs(model.config, ui.InputSpec(latent=(8, 8), text_len=6))
    maps = ui.attention_maps(model, inputs, tokens=SDXLPipe(), prompt="a photo cat")
    assert maps.tokens.labels[:5] == ("<sot>", "a", "photo", "cat", "<eot>")
    daam = maps.aggregate().shape
    assert daam == (1, 6, 8, 8)


def test_maps_of_a_real_pipeline_over_its_steps_labelled_by_its_tokenizer(tiny_pipeline):
    """diffusers' own StableDiffusionPipeline: its guidance batch is recognised, its tokenizer names the tokens
    (this one's vocabulary is bytes: a word is its letters)."""
    with ui.watch(tiny_pipeline.unet, attention=True) as w:
        tiny_pipeline("a cat", num_inference_steps=3, guidance_scale=7.5, height=16, width=16,
                      generator=torch.Generator().manual_seed(0))
    assert w.calls == 3 and w.attention.steps == 3
    maps = w.attention.mean().labelled(ui.token_labels(tiny_pipeline, "a cat", 77))
    assert maps.batch_note.startswith("the conditional half (rows 1..1)")
    assert maps.tokens.labels[:6] == ("<sot>", "a", "c", "a", "t", "<eot>") and maps.tokens.words() == [1, 2, 3, 4]
    assert all(layer.shape[:2] == (1, 77) for layer in maps.layers.values())
    assert maps.aggregate().shape == (1, 77, 8, 8)


def test_watch_maps_draw_and_render_like_those_of_attention_maps(tmp_path):
    """`write_attention_png(w.attention.mean())` used to fail ('AttentionMaps' has no attribute 'grid')."""
    from PIL import Image

    from unetinspect.render.attention_view import AttentionView, write_attention_png
    from unetinspect.render.formats import document
    from unetinspect.views.attention import AttentionResult

    model = our_unet(tiny())
    with ui.watch(model, attention=True) as w:
        conds = cfg_loop(model, 2)
    maps = w.attention.mean()
    picture = Image.open(write_attention_png(maps, tmp_path / "watch.png"))
    single = ui.attention_maps(model, conds[0])
    drawn = AttentionResult.of(maps).grid()
    assert picture.width > 0 and drawn.columns == single.grid().columns and drawn.rows == single.grid().rows
    data = document(AttentionView(), maps)
    assert data["text"] == "the text of the watched calls" and data["notes"] == []
    assert [layer["path"] for layer in data["layers"]] == list(single.layers)
