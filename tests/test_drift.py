"""engine/drift.py, views/drift.py and render/drift_view.py: drift over a real pipeline run against plain forward
hooks on diffusers' own blocks, the Block Caching plan rule, and the views."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

import unetinspect as ui
from unetinspect.errors import UnetInspectError
from unetinspect.render.drift_view import DriftView
from unetinspect.render.formats import CSV, JSON, TABLE, emit, render
from unetinspect.views.drift import Drift

pytestmark = pytest.mark.usefixtures("one_thread_per_module")  # first, before the module's own fixtures
STEPS = 4


@pytest.fixture(scope="module")
def recorded(tiny_pipeline):
    """One real generation watched with drift, and beside it plain forward hooks keeping every block's output."""
    unet = tiny_pipeline.unet
    outputs: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, module in unet.named_children():
        if isinstance(module, torch.nn.ModuleList):
            children = [(f"{name}.{i}", m) for i, m in enumerate(module)]
        else:
            children = [(name, module)]
        for path, child in children:
            def keep(module, args, output, path=path):
                first = output[0] if isinstance(output, tuple) else output
                outputs.setdefault(path, []).append(first.detach().double().clone())
            handles.append(child.register_forward_hook(keep))
    before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in unet.modules())
    try:
        with ui.watch(unet, drift=True) as w:
            tiny_pipeline("a cat", num_inference_steps=STEPS, guidance_scale=7.5, height=16, width=16,
                          generator=torch.Generator().manual_seed(0), output_type="np")
        after = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in unet.modules())
    finally:
        for handle in handles:
            handle.remove()
    assert after == before
    return w, outputs, tiny_pipeline.scheduler.timesteps


def test_drift_equals_plain_hooks_on_diffusers_blocks(recorded):
    w, outputs, timesteps = recorded
    drift = w.drift()
    assert set(drift.blocks) == set(outputs) and len(drift.blocks) == 13
    assert drift.timesteps == [float(t) for t in timesteps]
    for block, series in outputs.items():
        assert series[0].shape[0] == 2  # both halves of the guidance batch
        assert drift.rel_l1[block][0] is None and drift.cosine[block][0] is None
        for call in range(1, STEPS):
            now, before = series[call].flatten(), series[call - 1].flatten()
            rel = float((now - before).abs().sum() / before.abs().sum())
            cos = float(torch.dot(now, before) / (now.norm() * before.norm()))
            assert drift.rel_l1[block][call] == pytest.approx(rel, rel=1e-4)
            assert drift.cosine[block][call] == pytest.approx(cos, rel=1e-4)
    assert drift.held_bytes == sum(s[-1].numel() * 4 for s in outputs.values())  # one fp32 output per block


def drift_of(rel_l1: dict[str, list[float | None]]) -> Drift:
    calls = len(next(iter(rel_l1.values())))
    return Drift(setup=None, blocks=list(rel_l1), timesteps=[None] * calls, rel_l1=rel_l1,  # type: ignore[arg-type]
                 cosine={b: [None] * calls for b in rel_l1}, held_bytes=0)


def test_a_block_is_recomputed_when_its_accumulated_change_exceeds_the_threshold():
    drift = drift_of({"mid_block": [None, 0.1, 0.1, 0.1, 0.25, 0.0, 0.05], "up_blocks.0": [None, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0]})
    plan = drift.cache_plan(0.2)
    # mid: 0.1, 0.2 (not above), 0.3 → runs; 0.25 → runs; 0, 0.05 → reused
    assert plan.compute["mid_block"] == (True, False, False, True, True, False, False)
    assert plan.compute["up_blocks.0"] == (True, False, False, True, False, False, False)
    assert drift.cache_plan(0.0).compute["up_blocks.0"] == (True, False, False, True, False, False, False)
    assert drift.cache_plan(0.0).compute["mid_block"] == (True, True, True, True, True, False, True)
    assert plan.runs("mid_block", 7)  # beyond the plan every block runs


def test_the_default_plan_covers_the_unets_blocks_only(recorded):
    plan = recorded[0].cache_plan(threshold=0.5)
    assert plan.blocks == [b for b in recorded[0].drift().blocks if b.split(".")[0] in
                           ("down_blocks", "mid_block", "up_blocks")]
    assert all(len(flags) == STEPS and flags[0] for flags in plan.compute.values())


@pytest.mark.parametrize("threshold", [-0.1, math.nan, math.inf, "0.1"])
def test_a_bad_threshold_is_a_one_line_error(threshold):
    with pytest.raises(UnetInspectError, match="is not a number ≥ 0") as caught:
        drift_of({"mid_block": [None, 0.1]}).cache_plan(threshold)
    assert "\n" not in caught.value.one_line()


def test_drift_needs_drift_and_a_finished_loop():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(UnetInspectError, match="records no drift"):
        ui.watch(model).drift()
    with ui.watch(model, drift=True) as w:
        with pytest.raises(UnetInspectError, match="after the with block"):
            w.drift()
    with pytest.raises(UnetInspectError, match="no call of the watched Sequential"):
        w.drift()
    with pytest.raises(UnetInspectError, match="no drift was recorded for block 'up_blocks.9'"):
        drift_of({"mid_block": [None, 0.1]}).cache_plan(0.1, blocks=["up_blocks.9"])


def test_drift_of_any_module_and_its_views(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 3, bias=False), torch.nn.ReLU())
    x = torch.ones(2, 3)
    with ui.watch(model, drift=True) as w:
        for scale in (1.0, 1.0, 2.0):
            model(x * scale)
    drift = w.drift()
    assert drift.rel_l1["0"][1] == 0.0 and drift.cosine["0"][1] == pytest.approx(1.0)
    out = model[0](x).detach()
    assert drift.rel_l1["0"][2] == pytest.approx(float((2 * out - out).abs().sum() / out.abs().sum()), rel=1e-6)

    view = DriftView()
    data = json.loads(render(view, JSON, drift))
    assert data["kind"] == "drift" and data["blocks"][0]["rel_l1"] == drift.rel_l1["0"]
    assert data["held_bytes"] == drift.held_bytes and data["conventions"]
    lines = render(view, CSV, drift).splitlines()
    assert lines[0].startswith("block,") and len(lines) == 1 + len(drift.blocks)
    assert "held during the loop" in emit(view, TABLE, drift, output=tmp_path / "drift.txt").read_text()
    picture = emit(view, "png", drift, output=tmp_path / "drift.png")
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 50


@pytest.mark.cuda
def test_drift_and_cache_do_not_wait_for_the_gpu_inside_the_loop():
    model = ui.load_unet("tiny", device="cuda")
    inputs = ui.make_inputs(model.config, ui.InputSpec(batch=2), device="cuda")

    def loop() -> None:
        sample = inputs["sample"]
        for t in (900, 700, 500):
            sample = sample - 0.05 * model(**{**inputs, "sample": sample, "timestep": torch.tensor(t, device="cuda")})

    torch.cuda.set_sync_debug_mode("error")
    try:
        try:
            loop()
        except RuntimeError:
            pytest.skip("the bare loop itself synchronises on this build")
        with ui.watch(model, drift=True) as w:
            loop()
        with ui.cache(model, plan=None, interval=2, branch=0) as cached:
            loop()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert w.drift().rel_l1["mid_block"][1] > 0 and cached.result().reused > 0
