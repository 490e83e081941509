"""Regenerate docs/addons.md: ControlNets, LoRAs, IP-Adapters and fine-tunes, with real runs on files made here.

    python docs/make_addons_docs.py

The files are made with the test suite's helpers (tests/ldm_files.py, tests/lora_files.py), from our own models:
a tiny original-format ControlNet, a kohya LoRA with SDXL's real shapes, an IP-Adapter header with SD 1.5's real
shapes (read from the header only), and a tiny base model with a fine-tune that changed two blocks.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))
sys.path.insert(0, str(DOCS))
sys.path.insert(0, str(DOCS.parent))  # this checkout's package, not an installed one

import make_cli_docs  # noqa: E402
from make_cli_docs import run  # noqa: E402

make_cli_docs.WIDTH = "130"  # the summary's skip column and the LoRA tables fit without folding

INTRO = """\
# Add-ons: ControlNet, LoRA, IP-Adapter, and what a fine-tune changed

A UNet rarely runs alone. This page shows how unetinspect reads what people put on it. Every output below is a
real run (`python docs/make_addons_docs.py`) on files made from our own models: a tiny ControlNet in the original
single-file layout, a kohya LoRA with SDXL's real shapes, an IP-Adapter with SD 1.5's real shapes, and a tiny
fine-tune whose `down_blocks.1` and `mid_block` were changed.

## What is this file? `unetinspect weights FILE`

The first line says what a file is — `unet`, `controlnet`, `lora`, `ip-adapter`, `text encoder`, `VAE` or `unknown`,
from its tensor names — and which command reads it. A LoRA or a ControlNet is no longer shown as a broken UNet.
"""

CONTROLNET = """\
## ControlNet

Our `ControlNetModel` (`unetinspect.models.controlnet`) has diffusers' structure and state-dict keys: the
conditioning image's encoder (`controlnet_cond_embedding`: 3×3 convs, three of them stride 2, pixels → latent
size), a copy of the UNet's `conv_in`, time embedding, down blocks and mid block, and one zero-initialised 1×1
convolution per skip (`controlnet_down_blocks.N`) and after the mid block (`controlnet_mid_block`). Its outputs are
the residuals the UNet adds to its skips and to its mid block's output. It matches diffusers' `ControlNetModel`
to 1e-4, alone and as one step with the UNet (tests/test_controlnet.py).

A ControlNet is a SOURCE like a UNet: a diffusers folder or `config.json` (`_class_name: ControlNetModel`), or an
original single file (`control_model.input_hint_block`, `zero_convs`, `middle_block_out`, the encoder in LDM
names, SD 1.5 or SDXL — with or without the `control_model.` prefix). Its config is inferred from the shapes as
for single-file UNets. From Python: `ControlNetModel.from_unet(unet)` and `ControlNetConfig.from_unet(config)`.
"""

LORA = """\
## LoRA: `unetinspect lora FILE [--base SOURCE]`

Reads kohya files (`lora_unet_…` with `.lora_down`/`.lora_up`/`.alpha`, in diffusers' block names as SD 1.x
LoRAs have them, or the original names `input_blocks`/`middle_block`/`output_blocks` as SDXL LoRAs have them),
diffusers/PEFT files (`unet.….lora_A`/`lora_B`, `….lora.down`/`up`, attention-processor names), and names the
LyCORIS variants (LoHa `hada_w1_a…`, LoKr `lokr_w1…`, LoCon, DoRA). Every module is mapped onto our UNet's
module paths (checked against diffusers' own kohya conversion in tests/test_lora.py).

Per block, and per **LoRA Block Weight** unit (the names of hako-mikan's sd-webui-lora-block-weight: `INnn` and
`OUTnn` are the numbers of the original UNet's `input_blocks` / `output_blocks`, `MID` its middle block — `M00` in
that extension's code; `BASE` is the text encoder): modules, rank, alpha, parameters and the Frobenius norm of the
update `scale · up @ down` (scale = alpha / rank), computed without forming the product:
‖U D‖²_F = trace((UᵀU)(DDᵀ)), two rank × rank matrices. The norm of a block is that of all its updates together.

Without `--base` the modules are mapped onto the preset the file fits best; with `--base` every module is checked
against that UNet: an SDXL LoRA on SD 1.5 matches some self-attention layers of SD 1.5's second level (the same
width) and nothing else — the "lora key not loaded" a loader prints.
"""

IP_ADAPTER = """\
## IP-Adapter: `summary SOURCE --ip-adapter FILE`

An IP-Adapter file holds an image projection (`image_proj.*`: CLIP image embedding → T image tokens) and, for
every cross-attention, `ip_adapter.N.to_k_ip` / `to_v_ip`, numbered in diffusers' processor order (down blocks,
up blocks, mid block; N odd). `--ip-adapter` maps them onto the UNet's cross-attentions (checked against
diffusers' loader), and adds its parameters per block and the FLOPs of the image tokens to the step: per
cross-attention with L queries of width I, T tokens of width C and batch b, 2·(2·b·T·C·I) for their keys and
values, 4·b·L·T·I for the attention, 2·b·L·I to scale and add it.
"""

FINETUNE = """\
## What a fine-tune changed: `compare A B --weights`

Two checkpoints of one structure, read memory-mapped tensor by tensor under our key names — so a diffusers
folder can face an original single file. Per block: ‖B − A‖ / ‖A‖ and the cosine of all its weights taken as one
vector, and how many of its tensors differ at all. The verdict names the blocks whose weights differ; the JSON has
a `weight_change` per pair (`null` for blocks without weights).
"""

STEP = """\
## The step with ControlNets: `summary` / `profile SOURCE --controlnet CN [--controlnet CN2]`

`--controlnet` (repeatable, for MultiControlNet) makes the step what diffusers' ControlNet pipelines run: every
ControlNet on the same latent, timestep and text, with its own conditioning image at pixel size; their residuals
summed; then the UNet with them added to its skips and its mid block (`ControlledUNet`, through `open_session`:
tested against diffusers' `MultiControlNetModel` + UNet call to 1e-4). Module paths say which model a call is in
(`controlnets.0.down_blocks.1`, `unet.up_blocks.2`); `--depth` defaults to 2, both models' blocks. A ControlNet
made for another base is refused before anything runs. `profile` times both models block by block the same way.
`diagram --controlnet` is not done: the diagram still draws the UNet alone.
"""


def make_files(workdir: Path) -> None:
    import torch
    from conftest import SMALL_CONFIGS
    from ldm_files import full_checkpoint, meta_shapes, to_ldm_controlnet, write_header_only
    from lora_files import adapted_layers, kohya_lora
    from safetensors.torch import save_file
    from test_ip_adapter import ip_adapter_tensors

    from unetinspect.configs.unet import UNetConfig
    from unetinspect.models.controlnet import ControlNetModel
    from unetinspect.models.unet import UNet2DConditionModel
    from unetinspect.presets import load_preset_dict
    from unetinspect.sources.loading import init_random_weights

    generator = torch.Generator().manual_seed(0)
    controlnet = ControlNetModel.from_unet(UNet2DConditionModel(UNetConfig.from_dict(SMALL_CONFIGS["sd15-like"])))
    state = {k: torch.randn(v.shape, generator=generator) * 0.02 for k, v in controlnet.state_dict().items()}
    save_file(to_ldm_controlnet(state, controlnet.config.to_dict()), workdir / "control_tiny.safetensors")

    sdxl = load_preset_dict("sdxl")
    save_file(kohya_lora(adapted_layers(meta_shapes(sdxl)), rank=8, alpha=4.0, config=sdxl),
              workdir / "sdxl_style_lora.safetensors")

    sd15 = load_preset_dict("sd15")
    ip_shapes = {k: tuple(v.shape) for k, v in ip_adapter_tensors(sd15, clip_dim=1024, tokens=4).items()}
    write_header_only(workdir / "ip-adapter_sd15.safetensors", ip_shapes)

    tiny = load_preset_dict("tiny")
    base = UNet2DConditionModel(UNetConfig.from_dict(tiny))
    init_random_weights(base, seed=1)
    for name, params in (("base", base.state_dict()), ("finetune", _finetuned(base.state_dict()))):
        folder = workdir / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(tiny))
        save_file({k: v.contiguous() for k, v in params.items()}, folder / "diffusion_pytorch_model.safetensors")
    save_file(full_checkpoint(base, tiny), workdir / "base_single_file.safetensors")


def _finetuned(state: dict) -> dict:
    import torch

    generator = torch.Generator().manual_seed(2)
    return {k: v + torch.randn(v.shape, generator=generator) * 0.01 if k.startswith(("down_blocks.1.", "mid_block."))
            else v for k, v in state.items()}


SECTIONS = [
    (INTRO, [["weights", "sdxl_style_lora.safetensors"], ["weights", "control_tiny.safetensors"]]),
    (CONTROLNET, [["summary", "control_tiny.safetensors", "--height", "256", "--width", "256"]]),
    (LORA, [["lora", "sdxl_style_lora.safetensors"], ["lora", "sdxl_style_lora.safetensors", "--base", "sd15"],
            ["lora", "sdxl_style_lora.safetensors", "-f", "json", "-o", "lora.json"]]),
    (IP_ADAPTER, [["summary", "sd15", "--ip-adapter", "ip-adapter_sd15.safetensors"]]),
    (FINETUNE, [["compare", "base", "finetune", "--weights", "--height", "128", "--width", "128"],
                ["compare", "base_single_file.safetensors", "base", "--weights", "--height", "128", "--width",
                 "128"]]),
    (STEP, [["summary", "tiny", "--controlnet", "control_tiny.safetensors", "--controlnet",
              "control_tiny.safetensors"]]),
]
SHOWN_LINES = 80


def _json_excerpt(path: Path) -> str:
    """The LoRA JSON with its first block, first unmatched entry and first module only."""
    data = json.loads(path.read_text())
    for key in ("blocks", "unmatched", "module_list"):
        count = len(data[key])
        data[key] = data[key][:1] + ([f"… {count - 1} more"] if count > 1 else [])
    return "```json\n" + json.dumps(data, indent=2) + "\n```\n"


def main() -> None:
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        make_files(workdir)
        for text, runs in SECTIONS:
            parts.append(text)
            for args in runs:
                lines = run(args, workdir).splitlines()
                shown = "\n".join(lines[:SHOWN_LINES] + ([f"… ({len(lines) - SHOWN_LINES} more lines)"]
                                                         if len(lines) > SHOWN_LINES else []))
                parts.append(f"```\n$ unetinspect {' '.join(args)}\n{shown}\n```\n")
                if "lora.json" in args:
                    parts.append(_json_excerpt(workdir / "lora.json"))
    (DOCS / "addons.md").write_text("\n".join(parts))
    print(f"wrote {DOCS / 'addons.md'}")


if __name__ == "__main__":
    main()
