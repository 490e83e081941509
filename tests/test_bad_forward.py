"""The model's own forward, as library users call it: every input is checked against the config first, and a wrong
one is an InputError (also a ValueError, as diffusers raises) naming the argument, its shape and the one expected
— never torch's matmul message, and never a silently broadcast wrong result."""

from __future__ import annotations

import pytest
import torch
from conftest import SMALL_CONFIGS

from unetinspect.configs.unet import UNetConfig
from unetinspect.errors import InputError, UnetInspectError
from unetinspect.sources.inputs import make_inputs
from unetinspect.sources.loading import build_model


def _model_and_inputs(name: str):
    config = UNetConfig.from_dict(SMALL_CONFIGS[name])
    return build_model(config), make_inputs(config, device="meta")


def _wider(tensor: torch.Tensor, dim: int = -1) -> torch.Tensor:
    shape = list(tensor.shape)
    shape[dim] += 1
    return torch.empty(shape, device=tensor.device, dtype=tensor.dtype)


def _changed(inputs: dict, **changes) -> dict:
    return {**inputs, **changes}


CASES = {
    "text width": (lambda x: _changed(x, encoder_hidden_states=_wider(x["encoder_hidden_states"])),
                   "encoder_hidden_states has shape (1, 77, 49); this UNet expects (batch=1, tokens, 48)"),
    "text batch": (lambda x: _changed(x, encoder_hidden_states=x["encoder_hidden_states"].expand(2, -1, -1)),
                   "encoder_hidden_states has shape (2, 77, 48); this UNet expects (batch=1, tokens, 48)"),
    "text 2-D": (lambda x: _changed(x, encoder_hidden_states=x["encoder_hidden_states"][0]),
                 "encoder_hidden_states has shape (77, 48)"),
    "text missing": (lambda x: _changed(x, encoder_hidden_states=None), "encoder_hidden_states is a NoneType"),
    "sample channels": (lambda x: _changed(x, sample=_wider(x["sample"], 1)),
                        "sample has shape (1, 5, 16, 16); this UNet expects (batch, 4, height, width)"),
    "sample 3-D": (lambda x: _changed(x, sample=x["sample"][0]), "sample has shape (4, 16, 16)"),
    "timestep batch": (lambda x: _changed(x, timestep=torch.zeros(3, device="meta")), "timestep has shape (3,)"),
    "timestep 2-D": (lambda x: _changed(x, timestep=torch.zeros(1, 1, device="meta")), "timestep has shape (1, 1)"),
    "timestep string": (lambda x: _changed(x, timestep="999"), "timestep is a str"),
    "residual count": (lambda x: _changed(x, down_block_additional_residuals=(x["sample"],),
                                          mid_block_additional_residual=x["sample"]), "skips"),
}


@pytest.mark.parametrize("case", CASES)
def test_wrong_input_names_argument_and_shapes(case):
    model, inputs = _model_and_inputs("sd15-like")
    make, words = CASES[case]
    with pytest.raises(InputError) as caught:
        model(**make(inputs))
    assert words in caught.value.one_line()
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, UnetInspectError)


def test_sdxl_conditioning_widths():
    model, inputs = _model_and_inputs("sdxl-like")
    added = inputs["added_cond_kwargs"]
    with pytest.raises(InputError, match="text_embeds .* give 1281 \\+ 6×8 = 1329 features; this UNet expects 1328"):
        model(**_changed(inputs, added_cond_kwargs={**added, "text_embeds": _wider(added["text_embeds"])}))
    with pytest.raises(InputError, match="needs added_cond_kwargs time_ids"):
        model(**_changed(inputs, added_cond_kwargs={"text_embeds": added["text_embeds"]}))
    with pytest.raises(InputError, match="added_cond_kwargs is a list"):
        model(**_changed(inputs, added_cond_kwargs=[1]))


@pytest.mark.parametrize("name,words", [("class-and-extras", "class_labels has shape (2,)"),
                                        ("class-projection-concat", "class_labels has shape (2,)"),
                                        ("class-identity", "class_labels has shape (2,)")])
def test_class_labels(name, words):
    model, inputs = _model_and_inputs(name)
    with pytest.raises(InputError, match="pass class_labels"):
        model(**_changed(inputs, class_labels=None))
    with pytest.raises(InputError, match=words.replace("(", "\\(").replace(")", "\\)")):
        model(**_changed(inputs, class_labels=torch.zeros(2, device="meta")))


def test_timestep_cond_width():
    model, inputs = _model_and_inputs("class-and-extras")
    with pytest.raises(InputError, match="timestep_cond has shape \\(1, 17\\)"):
        model(**_changed(inputs, timestep_cond=_wider(inputs["timestep_cond"])))
    plain, plain_inputs = _model_and_inputs("sdxl-like")  # no time_cond_proj_dim: was a bare AssertionError
    with pytest.raises(InputError, match="no time_cond_proj_dim to read it"):
        plain(**_changed(plain_inputs, timestep_cond=inputs["timestep_cond"]))


@pytest.mark.parametrize("name", sorted(SMALL_CONFIGS))
def test_good_inputs_still_run(name):
    model, inputs = _model_and_inputs(name)
    assert model(**inputs).shape == inputs["sample"].shape
