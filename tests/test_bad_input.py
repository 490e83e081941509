"""Bad input never hurts: every broken, hostile or mistaken input ends with exit code 1 and one line on stderr —
no traceback, no partial output file, no huge allocation — and the library raises the matching error kind."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bad_input import OUTPUT, assert_one_line_failure
from conftest import our_unet, save_folder, tiny
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from unetinspect.errors import ConfigError, UnsupportedConfigError, WeightsError
from unetinspect.sources.loading import load_unet
from unetinspect.sources.resolve import resolve_source
from unetinspect.weights.safetensors import ITEM_SIZES

# Every command that takes a SOURCE, with what it needs to run fast.
SOURCE_COMMANDS = [["weights"], ["summary"], ["profile", "--device", "cpu"], ["diagram"], ["compare", "sd15"]]


def _source_args(command: list[str], path: Path | str) -> list:
    """The command with `path` as its (first) source."""
    return [command[0], path, *command[1:]]


def _weights_file(folder: Path) -> Path:
    return folder / "diffusion_pytorch_model.safetensors"


# ---- sources and configs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", SOURCE_COMMANDS, ids=lambda c: c[0])
def test_missing_file(command, tmp_path, invoke):
    path = tmp_path / "nope.safetensors"
    message = assert_one_line_failure(invoke(*_source_args(command, path), "-o", tmp_path / OUTPUT), tmp_path)
    assert "nope.safetensors" in message


@pytest.mark.parametrize("text,error,words", [
    ('{"in_channels": 4,', ConfigError, "not valid JSON"),
    ("[1, 2]", ConfigError, "expected a JSON object"),
    (json.dumps(tiny(down_block_types=["FancyDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"])), ConfigError,
     "unknown block type down_block_types[0]='FancyDownBlock2D'"),
    (json.dumps(tiny(down_block_types=["DownEncoderBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"])),
     UnsupportedConfigError, "down_block_types[0]='DownEncoderBlock2D'"),
    (json.dumps(tiny(mid_block_type="UNetMidBlock2DFancy")), ConfigError, "mid_block_type"),
    (json.dumps(tiny(block_out_channels=[32, 64, 60])), ConfigError, "not divisible"),
    (json.dumps(tiny(_class_name="UNet2DModel")), UnsupportedConfigError, "_class_name"),
])
def test_bad_configs(text, error, words, tmp_path, invoke):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(error) as caught:
        resolve_source(path)
    assert words in caught.value.one_line()
    assert words in assert_one_line_failure(invoke("summary", path, "-o", tmp_path / OUTPUT), tmp_path)


def test_bad_config_beside_weights(tiny_folder, tmp_path, invoke):
    (tiny_folder / "config.json").write_text("{oops")
    assert "not valid JSON" in assert_one_line_failure(invoke("weights", tiny_folder))


# ---- weights that do not fit ----------------------------------------------------------------------------------------


def test_wrong_shape_weights(tiny_folder, tmp_path, invoke):
    config = json.loads((tiny_folder / "config.json").read_text())
    (tiny_folder / "config.json").write_text(json.dumps({**config, "cross_attention_dim": 64}))
    with pytest.raises(WeightsError, match="has shape"):
        load_unet(tiny_folder, device="cpu")
    message = assert_one_line_failure(invoke("summary", tiny_folder, "-o", tmp_path / OUTPUT), tmp_path)
    assert "attn2.to_k.weight" in message


def test_missing_keys(tiny_folder, tmp_path, invoke):
    tensors = load_file(_weights_file(tiny_folder))
    del tensors["conv_out.bias"]
    save_file(tensors, _weights_file(tiny_folder))
    with pytest.raises(WeightsError, match="missing"):
        load_unet(tiny_folder, device="cpu")
    assert "conv_out.bias" in assert_one_line_failure(invoke("summary", tiny_folder))


def test_unexpected_keys(tiny_folder, invoke):
    tensors = load_file(_weights_file(tiny_folder))
    tensors["extra_head.weight"] = torch.zeros(3)
    save_file(tensors, _weights_file(tiny_folder))
    assert "extra_head.weight" in assert_one_line_failure(invoke("summary", tiny_folder))


def test_missing_variant(tiny_folder, invoke):
    assert "fp16" in assert_one_line_failure(invoke("weights", tiny_folder, "--variant", "fp16"))


def test_missing_shard(tiny_folder, invoke):
    save_folder(our_unet(tiny()), tiny_folder, shards=3)
    _weights_file(tiny_folder).unlink()
    shard = next(tiny_folder.glob("*-00002-of-*.safetensors"))
    shard.unlink()
    assert shard.name in assert_one_line_failure(invoke("weights", tiny_folder))


# ---- broken and hostile files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["weights", "summary"])
@pytest.mark.parametrize("keep", [0, 5, 8, 100, -1])
def test_truncated_safetensors(tiny_folder, tmp_path, command, keep, invoke):
    data = _weights_file(tiny_folder).read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    (tmp_path / "config.json").write_text((tiny_folder / "config.json").read_text())
    with pytest.raises(WeightsError):
        resolve_source(path)
    assert_one_line_failure(invoke(command, path, "-o", tmp_path / OUTPUT), tmp_path)


def _safetensors_bytes(header: object, data: bytes = b"", declared: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if declared is None else declared) + raw + data


@pytest.mark.parametrize("content,words", [
    (_safetensors_bytes(b"{}", declared=2**63), "over the"),
    (_safetensors_bytes(b"not json at all"), "not valid JSON"),
    (_safetensors_bytes(b"\xff\xfe{}"), "not valid JSON"),
    (_safetensors_bytes(b"[" * 100_000 + b"]" * 100_000), "not valid JSON"),
    (_safetensors_bytes([1, 2, 3]), "not a JSON object"),
    (_safetensors_bytes({"__metadata__": {"a": 1}}), "__metadata__"),
    (_safetensors_bytes({"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 4), "outside"),
    (_safetensors_bytes({"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 4]}}, b"\0" * 4), "needs 8"),
    (_safetensors_bytes({"a": {"dtype": "F16", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4), "shape"),
    (_safetensors_bytes({"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4), "dtype"),
    (_safetensors_bytes({"a": {"dtype": ["F16"], "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4), "dtype"),
    (_safetensors_bytes({"a": {"dtype": {}, "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4), "dtype"),
    (_safetensors_bytes({"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
                         "b": {"dtype": "F16", "shape": [2], "data_offsets": [2, 6]}}, b"\0" * 6), "overlaps"),
    (_safetensors_bytes({"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 40), "after the last"),
    (_safetensors_bytes({"a": {"dtype": "F16", "shape": [2], "data_offsets": [4, 8]}}, b"\0" * 8), "gap"),
    (_safetensors_bytes({"a": {"dtype": "F16", "shape": [2**40, 2**40], "data_offsets": [0, 4]}}, b"\0" * 4),
     "needs"),
])
def test_garbage_headers(content, words, tmp_path, invoke):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError):
        resolve_source(path)
    assert words in assert_one_line_failure(invoke("weights", path, "-o", tmp_path / OUTPUT), tmp_path)


_dims = st.lists(st.one_of(st.integers(-2, 4), st.integers(0, 2**70), st.text(max_size=2)), max_size=3)
_entries = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F16", "F32", "I8", "BOOL", "U16", "X", 3, None, ["F16"], {}]),
    "shape": st.one_of(_dims, st.none(), st.integers()),
    "data_offsets": st.one_of(st.lists(st.one_of(st.integers(-3, 64), st.integers(0, 2**70)), max_size=3),
                              st.none(), st.text(max_size=3)),
})
_headers = st.dictionaries(
    st.one_of(st.text(max_size=12), st.just("__metadata__")),
    st.one_of(_entries, st.dictionaries(st.text(max_size=3), st.one_of(st.text(max_size=3), st.integers())),
              st.integers(), st.none()),
    max_size=4,
)


def _check_never_hurts(invoke, path: Path, out: Path) -> None:
    """Either a description of a file that safetensors itself accepts, or a one-line error; never a crash."""
    result = invoke("weights", path, "--keys", "-f", "json", "-o", out)
    if result.exit_code == 0:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:  # we accepted it: so must the reference reader
            assert {t["name"] for t in json.loads(out.read_text())["tensors"]} == set(f.keys())
        out.unlink()
    else:
        assert_one_line_failure(result, out.parent)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=_headers, data=st.binary(max_size=48), declared=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_generated_broken_headers(header, data, declared, tmp_path, invoke):
    path = tmp_path / "gen.safetensors"
    path.write_bytes(_safetensors_bytes(header, data, declared))
    _check_never_hurts(invoke, path, tmp_path / OUTPUT)


@st.composite
def _near_valid_files(draw) -> tuple[bytes, bool]:
    """A valid safetensors file of a few small tensors, maybe broken by one small mutation; and whether it was."""
    header: dict[str, object] = {}
    offset = 0
    for name in draw(st.lists(st.text(max_size=6).filter(lambda n: n != "__metadata__"), unique=True, max_size=4)):
        dtype = draw(st.sampled_from(sorted(ITEM_SIZES)))
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        nbytes = ITEM_SIZES[dtype] * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2))
    data = bytes(offset)
    tensors = [entry for name, entry in header.items() if name != "__metadata__"]
    mutation = draw(st.sampled_from(["none", "shift", "swap", "grow", "shrink"]))
    if mutation in ("shift", "swap") and tensors:
        offsets = draw(st.sampled_from(tensors))["data_offsets"]
        delta = draw(st.sampled_from([-2, -1, 1, 2]))
        offsets[:] = offsets[::-1] if mutation == "swap" else [offsets[0] + delta, offsets[1] + delta]
    elif mutation == "grow":
        data += b"\0"
    elif mutation == "shrink" and data:
        data = data[:-1]
    else:
        mutation = "none"
    return _safetensors_bytes(header, data), mutation != "none"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_near_valid_files())
def test_generated_near_valid_files(case, tmp_path, invoke):
    """Valid files are read (as safetensors reads them); one wrong byte or offset is a one-line error."""
    content, broken = case
    path = tmp_path / "near.safetensors"
    path.write_bytes(content)
    if not broken:
        assert invoke("weights", path).exit_code == 0
    _check_never_hurts(invoke, path, tmp_path / OUTPUT)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=200))
def test_generated_garbage_bytes(content, tmp_path, invoke):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    _check_never_hurts(invoke, path, tmp_path / OUTPUT)


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
@pytest.mark.parametrize("command", SOURCE_COMMANDS, ids=lambda c: c[0])
def test_pickle_without_allow_pickle(suffix, command, tmp_path, invoke):
    """Every command that takes a source refuses a pickle before opening it (a hostile pickle's code never runs),
    and offers --allow-pickle, which then reads it with weights_only=True."""
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x80\x04crunme\nnever\n.")  # unpickling this would import a module named `runme`
    message = assert_one_line_failure(invoke(*_source_args(command, path), "-o", tmp_path / OUTPUT), tmp_path)
    assert "pickle" in message and "--allow-pickle" in message
    allowed = assert_one_line_failure(invoke(*_source_args(command, path), "--allow-pickle", "-o", tmp_path / OUTPUT),
                                      tmp_path)
    assert "weights-only" in allowed
    with pytest.raises(WeightsError, match="pickle"):
        load_unet(path, device="meta")


def test_hostile_pickle_with_allow_pickle_runs_no_code(tmp_path, invoke):
    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": Boom()}}, path)
    message = assert_one_line_failure(invoke("weights", path, "--allow-pickle"))
    assert "weights-only" in message
    assert not (tmp_path / "pwned").exists()


def test_pickle_folder_weights_refused(tiny_folder, invoke):
    state = load_file(_weights_file(tiny_folder))
    _weights_file(tiny_folder).unlink()
    torch.save(state, tiny_folder / "diffusion_pytorch_model.bin")
    assert "--allow-pickle" in assert_one_line_failure(invoke("weights", tiny_folder))
    assert invoke("weights", tiny_folder, "--allow-pickle").exit_code == 0


# ---- output paths ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", SOURCE_COMMANDS, ids=lambda c: c[0])
def test_output_to_a_directory(command, tiny_folder, tmp_path, invoke):
    (tmp_path / "out").mkdir()
    result = invoke(*_source_args(command, tiny_folder), "-o", tmp_path / "out")
    assert "is a directory" in assert_one_line_failure(result)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("command", SOURCE_COMMANDS[1:], ids=lambda c: c[0])
def test_output_over_the_input_config(command, tmp_path, write_config, invoke):
    config = write_config(tiny(), "tiny.json")
    before = config.read_text()
    assert "overwrite an input" in assert_one_line_failure(invoke(*_source_args(command, config), "-o", config))
    assert config.read_text() == before


def test_output_over_the_input_file(tiny_folder, invoke):
    source = _weights_file(tiny_folder)
    before = source.read_bytes()
    message = assert_one_line_failure(invoke("weights", source, "-o", source))
    assert "overwrite an input" in message and source.read_bytes() == before


def test_output_over_the_config_given(tiny_folder, tmp_path, invoke):
    config = tiny_folder / "config.json"
    before = config.read_text()
    assert_one_line_failure(invoke("weights", _weights_file(tiny_folder), "--config", config, "-o", config))
    assert config.read_text() == before


def test_output_into_a_missing_folder(tiny_folder, tmp_path, invoke):
    assert "does not exist" in assert_one_line_failure(invoke("weights", tiny_folder, "-o", tmp_path / "no/x.json"))


# ---- the real process -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args,words", [
    (["weights", "missing-model.safetensors"], "no such file"),
    (["summary", "{bad}.json", "--config", "nope"], "nope"),
])
def test_process_exits_1_with_one_line(args, words, tmp_path):
    process = subprocess.run([sys.executable, "-m", "unetinspect", *args], capture_output=True, text=True,
                             cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"}, timeout=120)
    assert process.returncode == 1
    assert process.stdout == "" and "Traceback" not in process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0]
