"""`watch`: every call of a live module inside the user's own loop, as a `Profile` the profile views render."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import diffusers_unet, tiny
from torch import nn

import unetinspect as ui
from unetinspect.engine.trace import trace_model
from unetinspect.errors import RunError
from unetinspect.render.formats import render
from unetinspect.render.profile_view import ProfileView
from unetinspect.views.profile import Profile


@pytest.fixture(scope="module")
def unet():
    return ui.load_unet("tiny")


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def run_loop(model: nn.Module, timesteps=(999, 500, 1), batch: int = 2) -> None:
    inputs = ui.make_inputs(model.config, ui.InputSpec(batch=batch))
    with torch.no_grad():
        for t in timesteps:
            model(**{**inputs, "timestep": torch.tensor(t)})


def test_watch_records_every_call_with_batch_and_timestep(unet):
    with ui.watch(unet) as w:
        run_loop(unet)
    assert w.calls == 3
    report = w.report()
    assert isinstance(report, Profile)
    assert [(c.index, c.batch, c.latent, c.timestep) for c in report.calls] == \
        [(0, 2, (16, 16), 999.0), (1, 2, (16, 16), 500.0), (2, 2, (16, 16), 1.0)]
    assert report.repeat == 3 and report.setup.sizes.batch == 2 and report.setup.sizes.text_len == 77
    assert report.setup.sizes.pixels == (128, 128) and report.setup.kind == "module"
    assert report.totals.step.n == 3
    # The rows are nested in the call and never in each other: they cover at most all of it.
    assert 0 < report.totals.coverage <= 1
    assert all(c.ms > 0 for c in report.calls)
    assert report.totals.overhead is None and report.totals.hooked_step is None


def rows_down_to(model: nn.Module, depth: int) -> list:
    """The calls `profile` shows down to `depth`, parents before children."""
    trace = trace_model(model, ui.make_inputs(model.config))
    return [r for r in trace.records[1:] if r.depth <= depth]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_watch_rows_are_the_calls_profile_shows_down_to_that_depth(unet, depth):
    expected = [(r.name, r.type, r.depth, r.params) for r in rows_down_to(unet, depth)]
    with ui.watch(unet, depth=depth) as w:
        run_loop(unet, timesteps=(10,), batch=1)
    assert [(b.name, b.type, b.depth, b.params) for b in w.report().blocks] == expected


def test_watch_sees_diffusers_unet_blocks_by_the_same_names(unet):
    pytest.importorskip("diffusers")
    model = diffusers_unet(tiny())
    inputs = ui.make_inputs(unet.config)
    with ui.watch(model) as w, torch.no_grad():
        model(inputs["sample"], 5, inputs["encoder_hidden_states"])  # positional, as pipelines call it
    report = w.report()
    assert [b.name for b in report.blocks] == [r.name for r in rows_down_to(unet, 1)]
    assert report.calls[0].timestep == 5.0 and report.calls[0].batch == 1
    assert report.setup.impl == "diffusers"


def test_hooks_are_removed_on_exit_and_when_the_loop_raises(unet):
    before = hook_count(unet)
    with ui.watch(unet, depth=2):
        assert hook_count(unet) > before
        run_loop(unet, timesteps=(1,), batch=1)
    assert hook_count(unet) == before
    with pytest.raises(ValueError, match="scheduler blew up"):
        with ui.watch(unet) as w:
            run_loop(unet, timesteps=(1,), batch=1)
            raise ValueError("scheduler blew up")
    assert hook_count(unet) == before
    assert w.calls == 1


def test_a_call_that_raises_is_not_counted(unet):
    inputs = ui.make_inputs(unet.config)
    with ui.watch(unet) as w, torch.no_grad():
        with pytest.raises(Exception):  # noqa: B017 -- whichever error the model raises, the watch must close
            unet(**{**inputs, "encoder_hidden_states": inputs["encoder_hidden_states"][..., :3]})
        unet(**inputs)
    assert w.calls == 1
    assert len(w.report().blocks) == 13


def test_blocks_run_on_their_own_are_not_counted(unet):
    with ui.watch(unet) as w, torch.no_grad():
        unet.conv_in(torch.zeros(1, 4, 8, 8))
    assert w.calls == 0
    with pytest.raises(RunError, match="no call of the watched UNet2DConditionModel"):
        w.report()


def test_report_is_read_after_the_block_and_bad_arguments_are_errors(unet):
    with ui.watch(unet) as w:
        with pytest.raises(RunError, match="after the with block"):
            w.report()
    with pytest.raises(RunError, match="nn.Module"):
        ui.watch("sd15")
    with pytest.raises(RunError, match="depth 0"):
        ui.watch(unet, depth=0)


def test_the_profile_views_render_a_watch(unet):
    with ui.watch(unet) as w:
        run_loop(unet, timesteps=(999, 1))
    report = w.report()
    data = json.loads(render(ProfileView(), "json", report))
    assert [c["batch"] for c in data["calls"]] == [2, 2] and data["calls"][1]["timestep"] == 1.0
    assert data["setup"]["kind"] == "module" and data["setup"]["weights"] == "its own weights"
    markdown = render(ProfileView(), "markdown", report)
    assert "2 calls in your loop" in markdown
    assert "2 calls of the watched model · batch 2 · timesteps 999 … 1" in markdown
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(render(ProfileView(), "table", report))
    text = console.export_text()
    assert "timestep" in text and "each with the block hooks" in text and "FLOPs per step" not in text


@pytest.mark.cuda
def test_watch_on_cuda_reads_events_after_the_loop():
    model = ui.load_unet("tiny", device="cuda", dtype=torch.float16)
    with ui.watch(model) as w:
        run_loop(model)
    report = w.report()
    assert w.calls == 3 and report.device.type == "cuda" and report.setup.dtype == "float16"
    assert 0 < report.totals.coverage <= 1.05


def test_watch_over_a_real_pipeline_with_guidance(tiny_pipeline, unet):
    pipe = tiny_pipeline
    with ui.watch(pipe.unet) as w:
        image = pipe("a cat", num_inference_steps=3, guidance_scale=5.0, output_type="np").images
    assert image.shape == (1, 32, 32, 3)
    assert w.calls == 3
    report = w.report()
    # diffusers batches classifier-free guidance: the unconditional and conditional halves in one call.
    assert [c.batch for c in report.calls] == [2, 2, 2]
    assert [c.timestep for c in report.calls] == pipe.scheduler.timesteps.tolist()
    assert report.setup.sizes.latent == (16, 16) and report.setup.sizes.text_len == 77
    assert [b.name for b in report.blocks] == [r.name for r in rows_down_to(unet, 1)]
    assert 0 < report.totals.coverage <= 1

    with ui.watch(pipe.unet) as w:
        pipe("a cat", num_inference_steps=2, guidance_scale=1.0, output_type="np")
    assert [c.batch for c in w.report().calls] == [1, 1]  # no guidance: one half only
