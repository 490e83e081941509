"""Training memory is measured, not estimated: the saved bytes equal an independent saved-tensor-hook count of the
same forward (ours and diffusers'), and the gradient and optimizer figures equal what torch allocates in a step."""

from __future__ import annotations

import json

import pytest
import torch
from bad_input import assert_one_line_failure
from conftest import diffusers_unet, our_unet, tiny

from unetinspect.families import load_preset
from unetinspect.sources.inputs import InputSpec, make_inputs
from unetinspect.views.memory import Training, diffusers_checkpointed, memory

SPEC = InputSpec(latent=(8, 8), text_len=4)


def independent_saved_bytes(model: torch.nn.Module, inputs: dict) -> int:
    """Every storage autograd saves in one forward, once, parameters left out: the check, written simply."""
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    seen: dict[int, int] = {}
    kept = []

    def pack(t):
        kept.append(t)
        if t.untyped_storage()._cdata not in params:
            seen.setdefault(t.untyped_storage()._cdata, t.untyped_storage().nbytes())
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**inputs)
    return sum(seen.values())


def inputs_for(model):
    return make_inputs(load_preset("tiny"), SPEC, device="cpu")


@pytest.mark.parametrize("checkpointing", [False, True])
def test_saved_bytes_match_an_independent_count_on_ours_and_diffusers(checkpointing, one_thread):
    ours = our_unet(tiny()).train()
    theirs = diffusers_unet(tiny()).train()
    result = memory(ours, SPEC, train=True, training=Training(checkpointing=checkpointing), device="cpu",
                    inputs=inputs_for(ours))
    if checkpointing:
        theirs.enable_gradient_checkpointing()
    reference = independent_saved_bytes(theirs, inputs_for(theirs))
    assert result.totals.activation_bytes == reference
    if not checkpointing:
        assert reference == independent_saved_bytes(ours, inputs_for(ours))
    assert sum(row.saved_bytes for row in result.calls[0:1]) == reference  # the root holds every block's


def test_checkpointing_wraps_what_diffusers_wraps():
    assert diffusers_checkpointed("down_blocks.1.resnets.0", None)
    assert diffusers_checkpointed("up_blocks.2.attentions.1.transformer_blocks.0", None)
    assert not diffusers_checkpointed("mid_block.resnets.0", None)
    assert diffusers_checkpointed("mid_block.resnets.1", None)
    assert not diffusers_checkpointed("down_blocks.1.attentions.0", None)


@pytest.mark.parametrize("optimizer,make", [
    ("adamw", lambda ps: torch.optim.AdamW(ps)),
    ("sgd", lambda ps: torch.optim.SGD(ps, lr=0.1)),
    ("adafactor", lambda ps: torch.optim.Adafactor(ps)),
])
def test_gradients_and_optimizer_state_equal_a_real_step(optimizer, make, one_thread):
    model = our_unet(tiny()).train()
    inputs = inputs_for(model)
    result = memory(model, SPEC, train=True, training=Training(optimizer=optimizer, frozen=("down_blocks.0",)),
                    device="cpu", inputs=inputs)
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith("down_blocks.0."))
    opt = make([p for p in model.parameters() if p.requires_grad])
    out = model(**inputs)
    (out if isinstance(out, torch.Tensor) else out[0]).float().mean().backward()
    opt.step()
    grads = sum(p.grad.nbytes for p in model.parameters() if p.grad is not None)
    states = sum(v.nbytes for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor))
    assert result.totals.gradient_bytes == grads
    assert result.totals.optimizer_bytes == states


def test_lora_trains_only_the_adapters_and_saves_less(one_thread):
    full = memory("tiny", SPEC, train=True)
    lora = memory("tiny", SPEC, train=True, training=Training(lora_rank=4, optimizer="adamw-8bit"))
    assert 0 < lora.totals.trainable_params < full.totals.trainable_params
    assert lora.totals.activation_bytes < full.totals.activation_bytes
    assert lora.totals.peak_bytes < full.totals.peak_bytes


def test_mixed_precision_saves_less_and_keeps_fp32_masters():
    """Less, not exactly half: what runs in fp32 inside a half model (norm statistics) is measured as such."""
    full = memory("tiny", SPEC, train=True)
    half = memory("tiny", SPEC, train=True, training=Training(mixed="bf16"))
    assert full.totals.activation_bytes / 2 <= half.totals.activation_bytes < full.totals.activation_bytes
    assert half.totals.master_weight_bytes == full.totals.weight_bytes


def test_cli_json_keys(invoke):
    result = invoke("memory", "tiny", "--train", "--checkpointing", "--latent", "8", "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"path", "saved_bytes"} <= set(data["modules"][0])
    assert {"weight_bytes", "gradient_bytes", "optimizer_bytes", "activation_bytes", "peak_bytes"} <= \
        set(data["totals"])


def test_cli_sweep_says_where_the_budget_is_crossed(invoke):
    result = invoke("memory", "tiny", "--train", "--latent", "8", "--sweep", "batch=1,2,64", "--budget", "40MiB")
    assert result.exit_code == 0, result.output
    assert "crosses 40.00 MiB at batch" in result.stdout


@pytest.mark.parametrize("options,words", [
    (["--optimizer", "foo"], "'foo'"), (["--lora-rank", "0"], "--lora-rank 0"),
    (["--sweep", "batch=1,2", "--budget", "lots"], "'lots'"), (["--frozen", "nowhere"], "'nowhere'"),
    (["--lora-rank", "4", "--lora-targets", "nothing"], "'nothing'"), (["--mixed", "fp8"], "'fp8'"),
])
def test_bad_training_options_are_one_line_errors(options, words, invoke, tmp_path):
    result = invoke("memory", "tiny", "--train", "--latent", "8", *options, "-o", tmp_path / "out.json")
    message = assert_one_line_failure(result, tmp_path)
    assert words in message


def test_absurd_sizes_are_refused(invoke, tmp_path):
    result = invoke("memory", "sd15", "--train", "--batch", 1_000_000_000)
    assert "more than" in assert_one_line_failure(result)
