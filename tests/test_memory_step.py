"""Training memory as the trainer's machine sees it: the attention kernel it runs and the optimizer step it takes,
checked against diffusers' own UNet on the CPU — saved tensors counted with autograd's hooks under torch's own
flash kernel, and a real step's allocation events from torch.profiler."""

from __future__ import annotations

import json

import pytest
import torch
from bad_input import assert_one_line_failure
from conftest import SMALL_CONFIGS, diffusers_unet, tiny
from torch.nn.attention import SDPBackend, sdpa_kernel

from unetinspect.engine.optimizer_step import step_temporary_bytes
from unetinspect.sources.inputs import InputSpec, make_inputs
from unetinspect.views.memory import Training, memory

SPEC = InputSpec(latent=(8, 8), text_len=4)
SIZE = ["--latent", "8", "--text-len", "4"]


def saved_per_block(model: torch.nn.Module, inputs: dict) -> dict[str, int]:
    """Every storage autograd saves in one forward, charged once to the top-level block running when it is first
    saved, parameters left out: the independent count, written simply."""
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    seen: set[int] = set()
    kept, blocks, now = [], {}, [""]
    lists = {name for name, child in model.named_children() if isinstance(child, torch.nn.ModuleList)}
    for name, child in model.named_modules():
        if name.count(".") > (1 if name.split(".")[0] in lists else 0) or not name or name in lists:
            continue
        child.register_forward_pre_hook(lambda m, a, name=name: now.__setitem__(0, name))
        child.register_forward_hook(lambda m, a, o: now.__setitem__(0, ""))

    def pack(t):
        kept.append(t)
        key = t.untyped_storage()._cdata
        if key not in params and key not in seen:
            seen.add(key)
            blocks[now[0]] = blocks.get(now[0], 0) + t.untyped_storage().nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**inputs)
    return blocks


@pytest.mark.parametrize("name", ["sd15-like", "sdxl-like"])
def test_flash_on_meta_equals_torchs_flash_kernel_on_diffusers_unet(name, invoke, tmp_path, one_thread):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(SMALL_CONFIGS[name]))
    result = invoke("memory", config, "--train", "--attention", "flash", *SIZE, "-f", "json")
    assert result.exit_code == 0, result.output
    ours = json.loads(result.stdout)
    theirs = diffusers_unet(SMALL_CONFIGS[name]).train()
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        reference = saved_per_block(theirs, make_inputs(theirs.config, SPEC))
    total = sum(reference.values())
    assert ours["totals"]["activation_bytes"] == pytest.approx(total, rel=0.02)
    math_kernel = memory(config, SPEC, train=True, attention="math").totals.activation_bytes
    assert math_kernel > total  # the kernel matters, so the check above means something
    for module in ours["modules"]:
        assert module["saved_bytes"] == pytest.approx(reference.get(module["path"], 0), rel=0.02, abs=64), \
            module["path"]


def test_the_default_kernel_is_the_devices_training_kernel():
    meta = memory("tiny", SPEC, train=True)
    assert meta.attention == "efficient" and "CUDA GPU" in meta.notes[0]
    assert memory("tiny", SPEC, train=True, training=Training(mixed="bf16")).attention == "flash"
    cpu = memory("tiny", SPEC, train=True, device="cpu")
    assert cpu.attention == "flash" and "CPU" in cpu.notes[0]
    assert "math" not in cpu.notes[0]


def profiled_step_peak(model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: dict) -> int:
    """The most bytes alive in a steady training step, from torch.profiler's allocation events: what exists
    before the step (weights, optimizer state, inputs) plus the highest running sum of the step's allocations."""
    def step() -> None:
        model(**inputs).sample.float().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # the warm-up step makes the optimizer state
    before = sum(p.nbytes for p in model.parameters()) + sum(
        v.nbytes for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)) + sum(
        v.nbytes for v in inputs.values() if isinstance(v, torch.Tensor))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")  # every allocation (+) and free (−), in time order
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return before + peak


@pytest.mark.parametrize("impl", [{"foreach": False}, {"foreach": True}, {"fused": True}])
def test_the_peak_is_a_real_cpu_adamw_steps(impl, one_thread):
    model = diffusers_unet(tiny()).train()
    inputs = make_inputs(model.config, SPEC)
    real = profiled_step_peak(model, torch.optim.AdamW(model.parameters(), **impl), inputs)
    predicted = memory(model, SPEC, train=True, training=Training(**impl), device="cpu", inputs=inputs)
    assert predicted.peak_at == ("optimizer step" if "foreach" in impl else "backward at down_blocks.0")
    assert predicted.totals.peak_bytes == pytest.approx(real, rel=0.03)


def test_foreach_makes_a_temporary_as_large_as_the_parameters():
    params = [(torch.Size((64, 32)), torch.float32)] * 6 + [(torch.Size((64,)), torch.float32)]
    everything = (6 * 64 * 32 + 64) * 4
    assert step_temporary_bytes("adamw", params, foreach=True) >= everything
    assert 0 < step_temporary_bytes("adamw", params, foreach=False) < everything / 2
    assert step_temporary_bytes("adamw", params, foreach=False, fused=True) == 0
    assert step_temporary_bytes("sgd", params, foreach=True) == 0


@pytest.mark.parametrize("options,words", [
    (["--attention", "fast"], "'fast'"), (["--attention", "efficient", "--device", "cpu"], "no CPU"),
    (["--fused", "--optimizer", "adafactor"], "adafactor"), (["--fused", "--foreach"], "--fused"),
])
def test_bad_kernel_and_step_options_are_one_line_errors(options, words, invoke, tmp_path):
    result = invoke("memory", "tiny", "--train", *SIZE, *options, "-o", tmp_path / "out.json")
    assert words in assert_one_line_failure(result, tmp_path)


class KohyaModule(torch.nn.Module):
    """kohya's sd-scripts LoRAModule, written from its description: lora_down like the base layer (a conv with its
    kernel, stride and padding) to `rank`, lora_up back (1×1 for a conv), added to the base's output, scaled."""

    def __init__(self, base: torch.nn.Module, rank: int) -> None:
        super().__init__()
        if isinstance(base, torch.nn.Conv2d):
            self.lora_down = torch.nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding,
                                             bias=False)
            self.lora_up = torch.nn.Conv2d(rank, base.out_channels, 1, 1, bias=False)
        else:
            self.lora_down = torch.nn.Linear(base.in_features, rank, bias=False)
            self.lora_up = torch.nn.Linear(rank, base.out_features, bias=False)
        self.base_forward = base.forward
        base.forward = self.forward

    def forward(self, x):
        return self.base_forward(x) + self.lora_up(self.lora_down(x)) * 1.0


def apply_kohya_locon(unet: torch.nn.Module, rank: int, conv_rank: int) -> list[torch.nn.Parameter]:
    """kohya's selection: Linear and 1×1 convs in Transformer2DModel at `rank`; with conv_dim, those in
    ResnetBlock2D / Downsample2D / Upsample2D too, 3×3 convs at `conv_rank`."""
    modules = []
    for _, block in unet.named_modules():
        if type(block).__name__ not in ("Transformer2DModel", "ResnetBlock2D", "Downsample2D", "Upsample2D"):
            continue
        for _, child in block.named_modules():
            is_1x1 = isinstance(child, torch.nn.Conv2d) and child.kernel_size == (1, 1)
            if isinstance(child, torch.nn.Linear) or is_1x1:
                modules.append(KohyaModule(child, rank))
            elif isinstance(child, torch.nn.Conv2d):
                modules.append(KohyaModule(child, conv_rank))
    return [p for m in modules for p in m.parameters()]


def test_locon_equals_kohyas_modules_on_diffusers_unet(one_thread):
    ours = memory("tiny", SPEC, train=True, attention="flash", device="cpu",
                  training=Training(lora_rank=4, lora_targets=("locon",), lora_conv_rank=2))
    unet = diffusers_unet(tiny()).train().requires_grad_(False)
    adapters = apply_kohya_locon(unet, 4, 2)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        reference = saved_per_block(unet, make_inputs(unet.config, SPEC))
    assert ours.totals.trainable_params == sum(p.numel() for p in adapters)
    assert ours.totals.activation_bytes == sum(reference.values())


def test_peft_target_modules_may_name_convolutions():
    convs = memory("tiny", SPEC, train=True, training=Training(lora_rank=4, lora_targets=("conv1", "conv2")))
    unet = diffusers_unet(tiny())
    expected = sum(4 * m.in_channels * m.kernel_size[0] * m.kernel_size[1] + m.out_channels * 4
                   for name, m in unet.named_modules() if name.endswith((".conv1", ".conv2")))
    assert convs.totals.trainable_params == expected


def test_sweep_over_heights_and_batches(invoke):
    result = invoke("memory", "tiny", "--train", "--sweep", "height=64,128;batch=1,2", "-f", "json")
    assert result.exit_code == 0, result.output
    points = json.loads(result.stdout)["points"]
    assert [p["label"] for p in points] == ["height 64, batch 1", "height 64, batch 2", "height 128, batch 1",
                                            "height 128, batch 2"]
    saved = [p["totals"]["activation_bytes"] for p in points]
    assert saved[0] < saved[1] and saved[0] < saved[2] < saved[3]


def test_adamw_8bit_state_equals_bitsandbytes(one_thread):
    bnb = pytest.importorskip("bitsandbytes")
    unet = diffusers_unet(tiny()).train()
    for p in unet.parameters():
        p.grad = torch.randn_like(p)
    optimizer = bnb.optim.AdamW8bit(unet.parameters())
    try:
        optimizer.step()
    except Exception as error:  # a build without its CPU kernels: say why, do not fail
        pytest.skip(f"bitsandbytes' AdamW8bit does not step on this CPU: {str(error).splitlines()[0]}")
    storages = {v.untyped_storage()._cdata: v.untyped_storage().nbytes()
                for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)}
    ours = memory("tiny", SPEC, train=True, training=Training(optimizer="adamw-8bit"))
    assert ours.totals.optimizer_bytes == sum(storages.values())


def test_report_train_writes_the_memory_section(invoke, tmp_path):
    result = invoke("report", "tiny", "--train", "--checkpointing", "--no-foreach", "-o", tmp_path / "r.html")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text()
    assert 'id="memory"' in page and "for-loop" in page and '"saved":' in page


@pytest.mark.parametrize("foreach", [False, True])
def test_elementwise_steps_measured_flat_equal_the_plain_run(foreach):
    from unetinspect.engine.optimizer_step import _measured_step

    params = ((torch.Size((8, 4, 3, 3)), torch.float32), (torch.Size((8,)), torch.float32),
              (torch.Size((16, 8)), torch.float32), (torch.Size((8, 4, 3, 3)), torch.float32))
    plain = max(_measured_step("adamw", params[max(i - 1, 0):i + 1], foreach=False) for i in range(4)) \
        if not foreach else _measured_step("adamw", params, foreach=True)
    assert step_temporary_bytes("adamw", list(params), foreach=foreach) == plain


def profiled_optimizer_step(make, shapes: list[tuple[int, ...]], **impl) -> int:
    """The most bytes a real second step of a torch optimizer allocates on the CPU (torch.profiler's events)."""
    params = [torch.nn.Parameter(torch.randn(shape)) for shape in shapes]
    for param in params:
        param.grad = torch.randn_like(param)
    optimizer = make(params, **impl)
    optimizer.step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        optimizer.step()
    running = peak = 0
    for _, nbytes in sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                            if e.name() == "[memory]"):
        running += nbytes
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("name,make", [("adamw", torch.optim.AdamW), ("adafactor", torch.optim.Adafactor),
                                       ("sgd", lambda params, **impl: torch.optim.SGD(params, lr=0.1, **impl))])
@pytest.mark.parametrize("foreach", [False, True])
def test_step_temporaries_equal_a_real_cpu_step(name, make, foreach, one_thread):
    shapes = [(1024, 512), (1024,), (2048, 256), (64, 3, 3, 3), (512, 1024)]
    real = profiled_optimizer_step(make, shapes, foreach=foreach)
    ours = step_temporary_bytes(name, [(torch.Size(s), torch.float32) for s in shapes], foreach=foreach)
    assert ours == pytest.approx(real, abs=64)  # a step's scalars (lr, bias corrections) aside
