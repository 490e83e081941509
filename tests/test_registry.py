"""The family registry: each kind of model is one record that sources, loading, live objects, file kinds and the
diagram read — so a live ControlNetModel works in every view as its folder does, and a new family needs no edit
anywhere else."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import tiny

import unetinspect as ui
import unetinspect.families as families
from unetinspect.configs.controlnet import ControlNetConfig
from unetinspect.configs.unet import UNetConfig
from unetinspect.families import FAMILIES, config_from_dict, family_named, family_of, family_of_object
from unetinspect.models.controlnet import ControlNetModel
from unetinspect.models.unet import UNet2DConditionModel
from unetinspect.sources.inputs import InputSpec, make_inputs
from unetinspect.sources.kinds import file_kind
from unetinspect.sources.loading import build_model, init_random_weights
from unetinspect.sources.twin import as_diffusers

SMALL = InputSpec(height=64, width=64)


def tiny_controlnet() -> ControlNetModel:
    model = build_model(ControlNetConfig.from_unet(UNetConfig.from_dict(tiny()))).to_empty(device="cpu")
    init_random_weights(model)
    return model


def test_every_family_is_found_by_its_class_name_config_and_model():
    for family in FAMILIES:
        assert family_named(family.class_name) is family
        assert family.config_class.__name__.endswith("Config")
    unet = UNetConfig.from_dict(tiny())
    assert family_of(unet).model_class is UNet2DConditionModel
    assert family_of(ControlNetConfig.from_unet(unet)).model_class is ControlNetModel
    assert family_of_object(build_model(unet)).name == "unet2d"
    assert family_of_object(torch.nn.Linear(1, 1)) is None


def test_a_config_dict_is_read_as_the_family_its_class_name_names():
    control = ControlNetConfig.from_unet(UNetConfig.from_dict(tiny())).to_dict()
    assert isinstance(config_from_dict(control), ControlNetConfig)
    assert isinstance(config_from_dict(tiny()), UNetConfig)
    assert isinstance(config_from_dict({k: v for k, v in tiny().items() if k != "_class_name"}), UNetConfig)


def test_file_kinds_come_from_the_registry():
    unet_keys = build_model(UNetConfig.from_dict(tiny())).state_dict()
    assert file_kind(unet_keys).kind == "unet"
    assert file_kind(tiny_controlnet().state_dict()).kind == "controlnet"
    assert file_kind(tiny_controlnet().state_dict()).label == "ControlNet"


def test_a_live_controlnet_of_ours_opens_with_its_config_and_meta_copy():
    model = tiny_controlnet()
    summary = ui.summarize(model, SMALL)
    assert summary.setup.model_type == "ControlNetModel" and summary.setup.impl == "ours"
    assert summary.setup.device == "meta"  # rebuilt from its config: the object itself was not run
    assert summary.trace.total_params == sum(p.numel() for p in model.parameters())
    assert ui.profile(model, SMALL, warmup=0, repeat=1).setup.model_type == "ControlNetModel"
    with ui.watch(model) as watched:
        model(**make_inputs(model.config, SMALL))
    assert watched.report().blocks


def test_a_live_diffusers_controlnet_works_in_every_view_and_as_our_twin():
    pytest.importorskip("diffusers")
    ours = tiny_controlnet()
    theirs = as_diffusers(ours)
    assert type(theirs).__module__.startswith("diffusers.") and family_of_object(theirs).name == "controlnet"
    inputs = make_inputs(ours.config, SMALL)
    with torch.no_grad():
        a, b = ours(**inputs), theirs(**inputs)
    assert (a[1] - b[1]).abs().max() < 1e-4  # the mid-block residual
    summary = ui.summarize(theirs, SMALL)
    assert summary.setup.impl == "diffusers" and summary.trace.total_params == ui.summarize(ours, SMALL).trace.total_params
    assert ui.diagram_graph(theirs).nodes
    assert ui.build_report(theirs).summary.setup.model_type == "ControlNetModel"
    assert ui.compare(ours, theirs, SMALL).identical


def test_a_new_family_is_one_record(monkeypatch, tmp_path):
    """A family added to the registry — a config class and a model class, nothing edited elsewhere — is opened
    from its config.json, built, given its own inputs and recognised as a live object."""

    @dataclasses.dataclass(frozen=True)
    class WiderConfig:
        unet: UNetConfig

        @classmethod
        def from_dict(cls, data, *, origin="config"):
            return cls(UNetConfig.from_dict({k: v for k, v in data.items() if k != "_class_name"}, origin=origin))

        def __getattr__(self, name):
            if name.startswith("__") or name == "unet":
                raise AttributeError(name)
            return getattr(self.unet, name)

    class WiderUNet(UNet2DConditionModel):
        def __init__(self, config):
            super().__init__(config.unet)
            self.config = config

    wider = dataclasses.replace(families.DEFAULT, name="wider", kind="wider", label="Wider", class_name="WiderUNet",
                                config_class=WiderConfig, model_path=f"{__name__}:WiderUNet", layout="wider-original",
                                looks_like_original=lambda names: False)
    globals()["WiderUNet"] = WiderUNet
    monkeypatch.setattr(families, "FAMILIES", (wider, *FAMILIES))
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**tiny(), "_class_name": "WiderUNet"}))
    summary = ui.summarize(str(path), SMALL)
    assert summary.setup.model_type == "WiderUNet"
    assert family_of_object(build_model(WiderConfig.from_dict(tiny()))) is wider


def test_load_unet_gives_a_unet_or_a_controlnet_and_refuses_any_other_model(monkeypatch):
    """load_unet promises our UNet2DConditionModel (or ControlNetModel); a family registered with another model
    class is opened by open_session, and load_unet says so instead of handing over what it did not promise."""
    other = dataclasses.replace(families.DEFAULT, name="other", model_path="torch.nn:Identity")
    monkeypatch.setattr(families, "FAMILIES", (other, *FAMILIES))
    with pytest.raises(ui.UnetInspectError, match=r"load_unet loads a UNet or a ControlNet; tiny is a model of "
                                                   r"family 'other' \(Identity\)"):
        ui.load_unet("tiny", device="meta")
    assert type(ui.open_session("tiny").model).__name__ == "Identity"


def test_the_block_catalogue_and_the_model_classes_agree():
    """Every block type the catalogue lets a config name has a model class, whose cross-attention flag is the
    catalogue's — the config check, the diagram and the single-file mapping read the same facts the model has."""
    from unetinspect.configs.block_types import BLOCK_TYPES
    from unetinspect.models.blocks import DOWN_BLOCKS, MID_BLOCKS, UP_BLOCKS

    classes = {**DOWN_BLOCKS, **MID_BLOCKS, **UP_BLOCKS}
    assert set(classes) == set(BLOCK_TYPES)
    for name, block in BLOCK_TYPES.items():
        assert classes[name].has_cross_attention == block.cross_attention, name
        assert name in {"down": DOWN_BLOCKS, "mid": MID_BLOCKS, "up": UP_BLOCKS}[block.path]
