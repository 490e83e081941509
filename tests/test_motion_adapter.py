"""`--motion-adapter`: an image UNet and AnimateDiff's motion modules joined as diffusers'
`UNetMotionModel.from_unet2d` joins them — checked against diffusers' own joined model, for an adapter folder, a lone
file in diffusers' names and one in the AnimateDiff repository's names (as ComfyUI and A1111 load them)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from test_video import SMALL_ADAPTER, SMALL_UNET, _max_error, _perturbed

from unetinspect.errors import UnetInspectError
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.open import open_session

SPEC = InputSpec(batch=1, frames=3, latent=(8, 8), text_len=5)
# An adapter as AnimateDiff publishes them: diffusers' default 8 heads and 32 norm groups, which no tensor holds.
PUBLISHED = dict(block_out_channels=[32, 64], motion_layers_per_block=1, motion_max_seq_length=8,
                 motion_transformer_layers_per_block=[1, 2])
# The AnimateDiff repository's module names, from diffusers' (the inverse of diffusers' conversion script).
ORIGINAL_NAMES = ((".attn1.", ".attention_blocks.0."), (".attn2.", ".attention_blocks.1."), (".norm1.", ".norms.0."),
                  (".norm2.", ".norms.1."), (".norm3.", ".ff_norm."), (".pos_embed.", ".pos_encoder."))


def _original_name(name: str) -> str:
    head, _, rest = name.partition(".motion_modules.")
    index, _, rest = rest.partition(".")
    rest = "." + rest
    for ours, theirs in ORIGINAL_NAMES:
        rest = rest.replace(ours, theirs)
    return f"{head}.motion_modules.{index}.temporal_transformer{rest}"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A base UNet folder and adapters saved by diffusers, and diffusers' own joined models as the truth."""
    from safetensors.torch import save_file

    diffusers = pytest.importorskip("diffusers")
    root = tmp_path_factory.mktemp("motion")
    torch.manual_seed(0)
    unet = _perturbed(diffusers.UNet2DConditionModel(**SMALL_UNET))
    adapter = _perturbed(diffusers.MotionAdapter(**SMALL_ADAPTER), seed=1)
    published = _perturbed(diffusers.MotionAdapter(**PUBLISHED), seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unet.save_pretrained(root / "unet")
        adapter.save_pretrained(root / "adapter")
        joined = diffusers.UNetMotionModel.from_unet2d(unet, adapter).eval()
        joined_published = diffusers.UNetMotionModel.from_unet2d(unet, published).eval()
    state = {k: v.contiguous() for k, v in published.state_dict().items()}
    (root / "lone").mkdir()
    save_file(state, root / "lone" / "mm_small.safetensors")
    (root / "original").mkdir()
    save_file({_original_name(k): v for k, v in state.items()}, root / "original" / "mm_small_original.safetensors")
    return root, joined, joined_published


def _output(session, reference):
    with torch.no_grad():
        return _max_error(session.model(**session.inputs), reference(**session.inputs).sample)


def test_a_unet_folder_and_an_adapter_folder_run_as_diffusers_joins_them(parts):
    root, joined, _ = parts
    session = open_session(root / "unet", SPEC, device="cpu", motion_adapter=root / "adapter")
    assert type(session.model).__name__ == "UNetMotionModel"
    assert session.setup.label.endswith("/unet + motion adapter adapter") and session.setup.weights == "weights F32"
    assert sum(p.numel() for p in session.model.parameters()) == sum(p.numel() for p in joined.parameters())
    assert _output(session, joined) <= 1e-4


@pytest.mark.parametrize("file", ["lone/mm_small.safetensors", "original/mm_small_original.safetensors"])
def test_a_lone_adapter_file_is_read_off_its_shapes_in_either_naming(parts, file):
    """No config.json: levels, modules, layers and frames come from the tensors; heads and groups are the
    published ones, and the setup says they were assumed."""
    root, _, joined = parts
    session = open_session(root / "unet", SPEC, device="cpu", motion_adapter=root / file)
    assert any("8 heads and 32 norm groups assumed" in note for note in session.setup.notes)
    assert session.config.motion_max_seq_length == PUBLISHED["motion_max_seq_length"]
    assert _output(session, joined) <= 1e-4


def test_the_cli_takes_it_on_every_view(parts, invoke):
    root, joined, _ = parts
    result = invoke("summary", root / "unet", "--motion-adapter", root / "adapter", "--frames", "2", "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["totals"]["params"] == sum(p.numel() for p in joined.parameters())
    assert data["setup"]["model"] == "UNetMotionModel" and data["setup"]["frames"] == 2
    dot = root / "joined.dot"
    result = invoke("diagram", root / "unet", "--motion-adapter", root / "adapter", "--latent", "8", "-o", dot)
    assert result.exit_code == 0, result.output
    assert "CrossAttnDownBlockMotion" in dot.read_text()
    result = invoke("memory", root / "unet", "--motion-adapter", root / "adapter", "--latent", "8", "--train")
    assert result.exit_code == 0, result.output


def test_a_base_without_weights_says_its_weights_are_random(parts, invoke):
    root, _, _ = parts
    session = open_session("tiny", SPEC, motion_adapter=root / "adapter", config=root / "unet" / "config.json")
    assert session.setup.weights == "no weights needed"
    assert any("random weights: the base has none" in note for note in session.setup.notes)


@pytest.mark.parametrize("base, adapter, words", [
    ("svd", "adapter", "Stable Video Diffusion is a video UNet already"),
    ("animatediff", "adapter", "has motion modules already"),
    ("tiny", "adapter", "the motion adapter is for block_out_channels [32, 64]"),
    ("unet", "missing", "no such file or folder"),
    ("unet", "unet", "its config.json says a UNet2DConditionModel, not MotionAdapter"),
    ("unet", "unet/diffusion_pytorch_model.safetensors", "this file is a UNet, not a motion adapter"),
])
def test_what_cannot_be_joined_is_one_line(parts, invoke, base, adapter, words):
    root, _, _ = parts
    base = root / base if base == "unet" else base
    result = invoke("summary", base, "--motion-adapter", root / adapter)
    assert result.exit_code != 0
    assert words in result.output and "Traceback" not in result.output and "internal error" not in result.output


def test_weights_and_a_live_model_refuse_it(parts, invoke):
    root, joined, _ = parts
    result = invoke("weights", root / "unet", "--motion-adapter", root / "adapter")
    assert result.exit_code != 0 and "--motion-adapter joins two" in result.output
    with pytest.raises(UnetInspectError, match="a live model is used as it is"):
        open_session(joined, motion_adapter=root / "adapter")


def test_hostile_adapters_are_one_line(parts, invoke, tmp_path):
    """A FIFO named like a weight file, a truncated file, a pickle not allowed, a config.json that is no JSON."""
    import os

    root, _, _ = parts
    os.mkfifo(tmp_path / "fifo.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((root / "adapter" / "diffusion_pytorch_model.safetensors").read_bytes()[:100])
    (tmp_path / "mm.ckpt").write_bytes(b"\x80\x02}q\x00.")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    for adapter, words in (("fifo.safetensors", "not a regular file"), ("truncated.safetensors", "truncated.safetensors"),
                           ("mm.ckpt", "pickle"), ("broken", "config.json")):
        result = invoke("summary", root / "unet", "--motion-adapter", tmp_path / adapter)
        assert result.exit_code == 1, (adapter, result.output)
        assert words in result.output and "internal error" not in result.output, (adapter, result.output)



def test_a_wrong_shape_in_the_adapter_names_the_adapter_file(parts, invoke, tmp_path):
    """The joined source's weight files are the base's and the adapter's: the error names the one at fault."""
    from safetensors.torch import load_file, save_file

    root, _, _ = parts
    state = load_file(root / "adapter" / "diffusion_pytorch_model.safetensors")
    name = next(k for k in state if k.endswith("proj_in.weight"))
    state[name] = state[name][:, :-1].contiguous()
    (tmp_path / "config.json").write_text((root / "adapter" / "config.json").read_text())
    save_file(state, tmp_path / "diffusion_pytorch_model.safetensors")
    result = invoke("summary", root / "unet", "--motion-adapter", tmp_path)
    assert result.exit_code == 1
    assert f"{tmp_path / 'diffusion_pytorch_model.safetensors'}: weight {name!r} has shape" in " ".join(
        result.output.split())


def test_an_original_sd_checkpoint_and_an_original_adapter_file(parts, tmp_path):
    """As A1111 and ComfyUI hold them: the base in the LDM layout (whole checkpoint, VAE and text encoder beside
    the UNet) and the adapter in the AnimateDiff repository's names; each part is renamed by its own map."""
    from diffusers import UNet2DConditionModel
    from ldm_files import full_checkpoint
    from safetensors.torch import save_file

    root, _, joined = parts
    unet = UNet2DConditionModel.from_pretrained(root / "unet")
    save_file(full_checkpoint(unet, dict(unet.config)), tmp_path / "sd.safetensors")
    session = open_session(tmp_path / "sd.safetensors", SPEC, device="cpu", config=root / "unet" / "config.json",
                           motion_adapter=root / "original" / "mm_small_original.safetensors")
    assert _output(session, joined) <= 1e-4
