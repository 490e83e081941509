"""Shared fixtures: small configs that together cover every feature of the UNet, models and folders made from
them with our own code, the CLI as a user runs it, and diffusers references for the parity tests only.

The tests are organised by module: `test_<module>.py` tests one module of unetinspect through its Python API
(test_profile.py: views/profile.py; test_graph.py: views/graph.py and render/graph.py; test_models.py: the
models/ package), and `test_<command>_cmd.py` one command as a user types it. Promises that every module keeps
have a file of their own: test_bad_input.py (no traceback, no partial file), test_api.py, test_cli_docs.py.
Only tests that compare against diffusers need it installed; they skip, one by one, without it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner, Result

from unetinspect.cli import app
from unetinspect.configs.unet import UNetConfig
from unetinspect.models.unet import UNet2DConditionModel
from unetinspect.presets import load_preset_dict
from unetinspect.sources.loading import build_model, init_random_weights
from unetinspect.sources.resolve import WEIGHTS_NAME

warnings.filterwarnings("ignore", category=FutureWarning)

# The FLOP rate duration estimates are made from, pinned for the tests (see `pinned_rate`).
PINNED_FLOPS_PER_S = 10e9


@pytest.fixture(autouse=True)
def pinned_rate(request, monkeypatch):
    """profile (and every long run) estimates its duration from one run's measured FLOP rate; on a busy machine
    the rate drops and a command gains a "this will run about…" line, so a test's outcome would depend on the
    machine's speed. Every test sees a fixed 10 GFLOP/s instead: `tiny` (0.36 GFLOPs) is estimated at 36 ms a step,
    3000 of them at 108 s. Tests of the measurement itself opt out with `@pytest.mark.measured_rate`."""
    if request.node.get_closest_marker("measured_rate"):
        return
    import unetinspect.views.profile as profile_module

    def pinned(timed, flops: int):
        return profile_module._Rate(flops / PINNED_FLOPS_PER_S, PINNED_FLOPS_PER_S, "cpu (rate pinned by the tests)",
                                    whole_step=False)

    monkeypatch.setattr(profile_module, "_measure_rate", pinned)


def tiny(**changes) -> dict:
    """The tiny preset with some fields changed: a full diffusers config dict."""
    config = load_preset_dict("tiny")
    config.update(changes)
    return config


# Each config exercises different features; all are small enough to run in milliseconds.
SMALL_CONFIGS: dict[str, dict] = {
    "sd15-like": tiny(),
    "sd21-like": tiny(attention_head_dim=[2, 4, 4], use_linear_projection=True, upcast_attention=True,
                      cross_attention_dim=40),
    "sdxl-like": tiny(
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        attention_head_dim=[2, 4, 8], transformer_layers_per_block=[1, 2, 2], use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=1280 + 48,
        cross_attention_dim=80,
    ),
    "class-and-extras": tiny(
        num_class_embeds=10, resnet_time_scale_shift="scale_shift", time_cond_proj_dim=16,
        timestep_post_act="silu", time_embedding_act_fn="mish", center_input_sample=True, conv_in_kernel=5,
        conv_out_kernel=1, downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, mid_block_scale_factor=1.5,
        norm_eps=1e-6, act_fn="mish", encoder_hid_dim=24, time_embedding_dim=96,
    ),
    "class-projection-concat": tiny(
        class_embed_type="projection", projection_class_embeddings_input_dim=12, class_embeddings_concat=True,
        attention_head_dim=[2, 4, 4], only_cross_attention=[True, False, False], mid_block_type=None,
        layers_per_block=[1, 2, 1],
    ),
    "class-timestep": tiny(class_embed_type="timestep", only_cross_attention=True),
    "class-simple-projection": tiny(class_embed_type="simple_projection", projection_class_embeddings_input_dim=7),
    "class-identity": tiny(class_embed_type="identity"),
}


def diffusers_unet(config: dict, seed: int = 0):
    """diffusers' own model for a config, with seeded random weights: the reference of the parity tests, which
    skip (through this call) where diffusers is not installed."""
    pytest.importorskip("diffusers")
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return UNet2DConditionModel.from_config(config).eval()


def our_unet(config: dict, seed: int = 0) -> UNet2DConditionModel:
    """Our model for a config, on the CPU with seeded random weights: what every test that needs weights but
    not diffusers' numbers starts from."""
    model = build_model(UNetConfig.from_dict(config)).to_empty(device="cpu")
    init_random_weights(model, seed)
    return model


def save_folder(model: torch.nn.Module, folder: Path, *, variant: str | None = None, shards: int = 1,
                dtype: torch.dtype | None = None) -> Path:
    """Write `model` as a diffusers UNet folder, with the file names diffusers' `save_pretrained` gives (checked
    against it in test_loading.py): config.json, the weights in one file or in `shards` files with an index,
    optionally as a `variant` (e.g. fp16) and in another `dtype`."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "UNet2DConditionModel", **model.config.to_dict()}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    state = {name: (tensor if dtype is None else tensor.to(dtype)).detach().contiguous()
             for name, tensor in model.state_dict().items()}
    stem = f"{WEIGHTS_NAME}.{variant}" if variant else WEIGHTS_NAME
    if shards == 1:
        save_file(state, str(folder / f"{stem}.safetensors"), metadata={"format": "pt"})
        return folder
    names = list(state)
    weight_map = {}
    for number in range(1, shards + 1):
        shard = f"{stem}-{number:05d}-of-{shards:05d}.safetensors"
        part = names[(number - 1) * len(names) // shards:number * len(names) // shards]
        save_file({name: state[name] for name in part}, str(folder / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    index = f"{WEIGHTS_NAME}.safetensors.index.{variant}.json" if variant else f"{WEIGHTS_NAME}.safetensors.index.json"
    total_size = sum(t.numel() * t.element_size() for t in state.values())
    (folder / index).write_text(json.dumps({"metadata": {"total_size": total_size}, "weight_map": weight_map},
                                           indent=2))
    return folder


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """A diffusers folder of the tiny preset, with its weights in one safetensors file."""
    return save_folder(our_unet(tiny()), tmp_path / "unet")


@pytest.fixture(scope="session")
def invoke() -> Callable[..., Result]:
    """Run the CLI in this process as a user types it: `invoke("summary", "tiny", "-f", "json")`.

    Paths and numbers may be passed as they are; `env` sets environment variables for the run (e.g. COLUMNS).
    An exception that escapes the CLI's own error handling fails the test with its traceback.
    """

    def run(*args: object, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(app, [str(arg) for arg in args], env=env, catch_exceptions=False)

    return run


@pytest.fixture
def write_config(tmp_path: Path):
    def write(config: dict, name: str = "config.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(config))
        return path

    return write


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `@pytest.mark.cuda` skip cleanly where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared, busy CPU several threads wait on each other and times scatter by 10x."""
    yield from _single_thread()


@pytest.fixture(scope="module")
def one_thread_per_module():
    """One intra-op thread for a whole module (`pytestmark = pytest.mark.usefixtures(...)`): runs compared bit for
    bit must add up in the same order, and a module's own fixtures run before any function fixture would."""
    yield from _single_thread()


def exhausted_model(monkeypatch) -> None:
    """Make the loaded model run out of memory as CUDA would (the meta trace for FLOPs still runs)."""
    from unetinspect.sources import open as session_module

    load = session_module.load_model

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB.")

    def load_exhausted(source, device, dtype, **kwargs):
        model = load(source, device, dtype, **kwargs)
        if device.type != "meta":
            model.forward = exhausted
        return model

    monkeypatch.setattr(session_module, "load_model", load_exhausted)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """A real diffusers `StableDiffusionPipeline`, built offline in seconds: a tiny CLIP text model and a tokenizer
    whose vocabulary is the 256 byte symbols (written to a temporary folder, no download), a two-level VAE
    (latent = image / 2), diffusers' UNet for the tiny preset, and DDIM."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    symbols = sorted(ByteLevel.alphabet())
    tokens = [*symbols, *(s + "</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")  # no merges: a word is its byte symbols
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=77, local_files_only=True)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokens), hidden_size=tiny()["cross_attention_dim"], intermediate_size=64,
            num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77,
            bos_token_id=len(tokens) - 2, eos_token_id=len(tokens) - 1, pad_token_id=len(tokens) - 1,
        )).eval()
        vae = AutoencoderKL(block_out_channels=[8, 8], down_block_types=["DownEncoderBlock2D"] * 2,
                            up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=8,
                            layers_per_block=1).eval()
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                       unet=diffusers_unet(tiny()), scheduler=DDIMScheduler(), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
