"""views/cache.py and engine/cache.py: caching applied to a real pipeline, against DeepCache's own helper and a
plain hand-written block cache; the module left as found; bad values refused in one line."""

from __future__ import annotations

import json

import pytest
import torch

import unetinspect as ui
from unetinspect.errors import UnetInspectError
from unetinspect.render.cache_view import CacheView
from unetinspect.render.formats import CSV, JSON, render
from unetinspect.views.cache import images_of

STEPS = 4  # with interval 3: calls 0 and 3 run whole, 1 and 2 reuse
PROMPT = "a cat"


pytestmark = pytest.mark.usefixtures("one_thread_per_module")  # first, before the module's own fixtures


@pytest.fixture(scope="module")
def uncached(tiny_pipeline):
    return generate(tiny_pipeline)


def generate(pipe, **options):
    """One seeded generation of the tiny pipeline, its images as [N, H, W, C] in [0, 1]."""
    return images_of(pipe(PROMPT, num_inference_steps=STEPS, guidance_scale=7.5, height=16, width=16,
                          generator=torch.Generator().manual_seed(0), output_type="np", **options))


def forwards(module: torch.nn.Module) -> list:
    """Every module's instance `forward`, if any: a cache must leave none of its own behind."""
    return [m.__dict__.get("forward") for m in module.modules()]


def hooks(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


@pytest.mark.parametrize("branch", [0, 2, 4])
def test_uniform_cache_gives_deepcaches_own_images(tiny_pipeline, uncached, branch):
    DeepCache = pytest.importorskip("DeepCache")
    helper = DeepCache.DeepCacheSDHelper(pipe=tiny_pipeline)
    helper.set_params(cache_interval=3, cache_branch_id=branch)
    helper.enable()
    try:
        theirs = generate(tiny_pipeline)
    finally:
        helper.disable()
    unet = tiny_pipeline.unet
    before = (forwards(unet), hooks(unet), [m.training for m in unet.modules()])
    with ui.cache(unet, interval=3, branch=branch) as cached:
        ours = generate(tiny_pipeline)
    assert (forwards(unet), hooks(unet), [m.training for m in unet.modules()]) == before
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-5)
    assert not torch.allclose(ours, uncached, rtol=0, atol=1e-6)  # the cache did change the image
    result = cached.result()
    assert result.calls == STEPS and result.reused > 0
    assert all(b.reused == STEPS - len(range(0, STEPS, 3)) for b in result.blocks)


def test_a_skipped_call_costs_the_shallow_branch_that_branch_costs_counts(tiny_pipeline):
    """DeepCache's branch k is the k-th skip connection of `branch_costs`: the FLOPs a cached call is predicted
    to save are the full step less that branch's."""
    unet = tiny_pipeline.unet
    branches = ui.branch_costs(unet, ui.InputSpec(batch=2, latent=(8, 8)))
    for branch in (0, 4):
        with ui.cache(unet, interval=2, branch=branch) as cached:
            generate(tiny_pipeline)
        result = cached.result()
        saved_per_skip = result.skipped_flops / sum(b.reused for b in result.blocks[:1])
        assert branches.flops - saved_per_skip == branches.branches[branch].flops


def test_the_module_is_left_as_found_when_the_loop_raises(tiny_pipeline):
    unet = tiny_pipeline.unet
    unet.down_blocks[1].forward = marker = unet.down_blocks[1].forward  # an instance forward someone else set
    try:
        before = (forwards(unet), hooks(unet))
        with pytest.raises(InterruptedError), ui.cache(unet, interval=2, branch=3):
            tiny_pipeline(PROMPT, num_inference_steps=3, height=16, width=16,
                          callback_on_step_end=lambda *a: (_ for _ in ()).throw(InterruptedError))
        assert (forwards(unet), hooks(unet)) == before
        assert unet.down_blocks[1].__dict__["forward"] is marker
    finally:
        del unet.down_blocks[1].forward


@pytest.fixture(scope="module")
def watched(tiny_pipeline):
    with ui.watch(tiny_pipeline.unet, drift=True) as w:
        images = generate(tiny_pipeline)
    return w, images


def test_a_plan_at_zero_threshold_reproduces_the_uncached_images(tiny_pipeline, watched):
    w, reference = watched
    plan = w.cache_plan(threshold=0.0)
    assert set(plan.blocks) == {b for b in w.drift().blocks if b.startswith(("down_", "mid_", "up_"))}
    with ui.cache(tiny_pipeline.unet, plan=plan):
        images = generate(tiny_pipeline)
    assert torch.equal(images, reference)


def test_a_plan_gives_the_images_of_a_plain_block_cache_following_it(tiny_pipeline, watched, uncached):
    unet = tiny_pipeline.unet
    drift = watched[0].drift()
    changes = sorted(v for b in drift.blocks if b.startswith(("down_", "mid_", "up_")) for v in drift.rel_l1[b] if v)
    plan = drift.cache_plan(threshold=changes[len(changes) // 2])  # the median change: some reused, some not
    assert any(not flag for flags in plan.compute.values() for flag in flags)
    with ui.cache(unet, plan=plan) as cached:
        ours = generate(tiny_pipeline)
    assert sum(b.reused for b in cached.result().blocks) == sum(f.count(False) for f in plan.compute.values())

    # the reference: forward hooks that replace a block's output with its stored one where the plan says so
    # (the block still runs: the images, not the time, are compared)
    stored, calls, handles = {}, [-1], []
    handles.append(unet.register_forward_pre_hook(lambda *a: calls.__setitem__(0, calls[0] + 1)))
    modules = dict(unet.named_modules())
    for path, flags in plan.compute.items():
        def hook(module, args, output, path=path, flags=flags):
            if flags[calls[0]]:
                stored[path] = output
            return stored[path]
        handles.append(modules[path].register_forward_hook(hook))
    try:
        theirs = generate(tiny_pipeline)
    finally:
        for handle in handles:
            handle.remove()
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, uncached)


def test_compare_cached_measures_speed_and_image_cost(tiny_pipeline):
    run = lambda: tiny_pipeline(PROMPT, num_inference_steps=STEPS, height=16, width=16,  # noqa: E731
                                generator=torch.Generator().manual_seed(0), output_type="np")
    comparison = ui.compare_cached(run, tiny_pipeline.unet, interval=3, branch=0, warmup=False)
    difference = (comparison.reference - comparison.images).abs()
    assert comparison.max_abs_diff == pytest.approx(float(difference.max()))
    mse = float(difference.square().mean())
    assert comparison.psnr_db == pytest.approx(10 * torch.log10(torch.tensor(1 / mse, dtype=torch.float64)).item())
    assert comparison.speedup > 0 and comparison.cache.calls == STEPS
    assert comparison.max_abs_diff > 0

    result = comparison.cache
    data = json.loads(render(CacheView(), JSON, result))
    assert data["kind"] == "cache" and data["blocks"][0]["reused"] == result.blocks[0].reused
    assert data["predicted_speedup_flops"] == result.predicted_speedup_flops > 1
    assert render(CacheView(), CSV, result).splitlines()[0] == "block,ran,reused,ms,flops"


@pytest.mark.parametrize("options, message", [
    ({"interval": 0}, "cache interval 0 is not a whole number ≥ 1"),
    ({"interval": 2.5}, "cache interval 2.5"),
    ({"interval": 3, "branch": 9}, "cache branch 9 is out of range for 3 down blocks"),
    ({"interval": 3, "branch": -1}, "cache branch -1 is out of range"),
    ({}, "cache() needs one schedule"),
    ({"plan": "fast"}, "plan= takes a CachePlan, not str"),
])
def test_bad_cache_values_are_one_line_errors(options, message):
    model = ui.load_unet("tiny")
    with pytest.raises(UnetInspectError) as caught:
        ui.cache(model, **options)
    assert message in caught.value.one_line() and "\n" not in caught.value.one_line()
    assert "forward" not in model.down_blocks[0].__dict__


def test_a_module_without_unet_blocks_is_refused_for_deepcaches_schedule():
    with pytest.raises(UnetInspectError, match="no down_blocks and up_blocks"):
        ui.cache(torch.nn.Linear(2, 2), interval=2)
