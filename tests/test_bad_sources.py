"""Bad sources: files that are not regular files, configs too big or too deep, pickles that are not checkpoints,
and names that carry rich markup — each a quick one-line refusal, through the CLI and the library."""

from __future__ import annotations

import json
import os
import re
import reprlib
import stat
import types

import pytest
import torch
from bad_input import refused, untouched
from conftest import tiny

from unetinspect.configs.unet import MAX_CONFIG_BYTES, UNetConfig
from unetinspect.errors import ConfigError, SourceError, UnetInspectError, WeightsError
from unetinspect.sources.resolve import resolve_source
from unetinspect.weights.pickle import read_pickle
from unetinspect.weights.safetensors import read_header

COMMANDS = [["summary"], ["weights"], ["compare", "sd15"]]


def _fifo(tmp_path, name):
    path = tmp_path / name
    os.mkfifo(path)
    return path


def _zero_device(tmp_path, name):
    """A character device like /dev/zero (it never ends), made in tmp_path: needs root."""
    path = tmp_path / name
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".json", ".ckpt"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_fifo_source_is_refused_without_blocking(command, suffix, tmp_path, invoke):
    fifo = _fifo(tmp_path, f"model{suffix}")
    message = refused(invoke, tmp_path, command[0], fifo, *command[1:], "--allow-pickle", words="FIFO")
    assert str(fifo) in message


@pytest.mark.parametrize("make", [_fifo, _zero_device], ids=["fifo", "zero-device"])
def test_special_config_files(make, tmp_path, invoke):
    node = make(tmp_path, "node")
    link = tmp_path / "config.json"
    link.symlink_to(node)
    with untouched(tmp_path, "library: special config"):
        with pytest.raises(ConfigError, match="not a regular file"):
            UNetConfig.from_json(link)
        with pytest.raises(SourceError, match="not a regular file"):
            resolve_source(link)
    refused(invoke, tmp_path, "summary", link, words="not a regular file")
    refused(invoke, tmp_path, "summary", "sd15", "--config", link, words="not a regular file")


def test_special_weight_files(tmp_path):
    fifo = _fifo(tmp_path, "w.safetensors")
    with pytest.raises(WeightsError, match="FIFO"):
        read_header(fifo)
    with pytest.raises(WeightsError, match="FIFO"):
        read_pickle(_fifo(tmp_path, "w.ckpt"))


def test_config_over_the_size_cap(tmp_path, invoke):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(tiny(padding="x" * MAX_CONFIG_BYTES)))
    refused(invoke, tmp_path, "summary", path, words="too large")


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_config(depth, tmp_path, invoke):
    path = tmp_path / "deep.json"
    path.write_text('{"in_channels": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(ConfigError):
        UNetConfig.from_json(path)
    refused(invoke, tmp_path, "summary", path, words="deep.json")


def test_a_folder_whose_config_is_a_fifo(tmp_path, invoke):
    folder = tmp_path / "unet"
    folder.mkdir()
    _fifo(folder, "config.json")
    refused(invoke, tmp_path, "summary", folder, words="config.json")


# ---- pickles the user allowed ---------------------------------------------------------------------------------------


def _legacy_pickle(path):
    torch.save({"x": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)


def _malformed(path):
    path.write_bytes(b"\x80\x02}q\x00(X\x01")


def _text(path):
    path.write_text("hello, I am not a checkpoint")


def _empty(path):
    path.write_bytes(b"")


def _list(path):
    torch.save([torch.zeros(2)], path)


@pytest.mark.parametrize("make,words", [(_malformed, "not a readable checkpoint"),
                                        (_text, "not a readable checkpoint"),
                                        (_empty, "ends early"),
                                        (_list, "not a state dict")])
def test_pickles_that_are_not_checkpoints(make, words, tmp_path, invoke):
    path = tmp_path / "model.ckpt"
    make(path)
    message = refused(invoke, tmp_path, "weights", path, "--allow-pickle", words=words)
    assert "\x1b" not in message and "mmap" not in message


def test_legacy_pickle_is_read_without_mmap(tmp_path):
    path = tmp_path / "old.ckpt"
    _legacy_pickle(path)
    assert list(read_pickle(path)) == ["x"]


def test_malicious_pickle_runs_no_code(tmp_path, invoke):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": Payload()}}, path)
    message = refused(invoke, tmp_path, "summary", path, "--allow-pickle", words="no code from it was run")
    assert "system" in message
    with pytest.raises(UnetInspectError):
        read_pickle(path)
    assert not (tmp_path / "pwned").exists()


# ---- markup and control characters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["[/]", "[red]boom[/red]", "[bold]x", "a\x1b[31mred", "[link=file:///etc]x[/link]"])
def test_markup_in_arguments_is_printed_as_typed(name, tmp_path, invoke):
    message = refused(invoke, tmp_path, "summary", name, words="no such file")
    printable = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    assert printable in message


def test_markup_in_a_config_field_name_warns_in_one_line(tmp_path, invoke):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(tiny(**{"[red]odd[/]": 1})))
    result = invoke("summary", path, "-f", "json")
    assert result.exit_code == 0
    warning = result.stderr.strip()
    assert warning.startswith("warning:") and "\n" not in warning and "[red]odd[/]" in warning


# ---- a config held in Python ----------------------------------------------------------------------------------------


class _FrozenDict(dict):
    """What diffusers' `unet.config` is: an OrderedDict subclass that refuses changes."""

    def __setitem__(self, key, value):
        raise TypeError("FrozenDict is frozen")


@pytest.mark.parametrize("wrap", [dict, _FrozenDict, types.MappingProxyType], ids=["dict", "frozen", "proxy"])
def test_a_config_dict_is_a_source_everywhere(wrap):
    import unetinspect as ui

    config = wrap(tiny())
    assert ui.summarize(config).setup.label == "config dict"
    assert ui.open_session(config).setup.label == "config dict"
    assert ui.load_unet(config, device="meta").config == UNetConfig.from_dict(tiny())
    assert ui.branch_costs(config).setup.label == "config dict"
    assert ui.diagram_graph(config).setup.label == "config dict"
    assert ui.build_report(config).summary.setup.label == "config dict"
    assert ui.compare(config, "tiny").identical
    assert ui.summarize("tiny", config=config).setup.label == "tiny with config config dict"


def test_a_controlnet_config_dict_is_a_controlnet():
    import unetinspect as ui

    controlnet = ui.ControlNetConfig.from_unet(UNetConfig.from_dict(tiny())).to_dict()
    assert type(ui.load_unet(controlnet, device="meta")).__name__ == "ControlNetModel"
    assert ui.summarize("tiny", controlnets=(controlnet,)).setup.label == "tiny + controlnet config dict"


@pytest.mark.parametrize("config,error,words", [
    (tiny(block_out_channels="x"), ConfigError, "block_out_channels"),  # the checks of a config.json
    (tiny(block_out_channels={32, 64}), ConfigError, "block_out_channels is set"),  # no config.json holds a set
    ({1: 2}, ConfigError, "key 1 (int)"),
], ids=["bad-value", "set", "int-key"])
def test_a_bad_config_dict_is_refused_as_its_json_would_be(config, error, words):
    import unetinspect as ui

    with pytest.raises(error, match=re.escape(words)):
        ui.summarize(config)


@pytest.mark.parametrize("value", [3, [1, 2], b"tiny", 2.5, object()], ids=["int", "list", "bytes", "float", "object"])
def test_what_is_no_source_is_named(value):
    import unetinspect as ui

    for call in (ui.summarize, ui.load_unet, ui.diagram_graph, ui.branch_costs, lambda v: ui.compare(v, "tiny"),
                 lambda v: ui.summarize("tiny", config=v)):
        with pytest.raises(SourceError) as caught:
            call(value)
        message = caught.value.one_line()
        assert f"cannot open {type(value).__name__} {reprlib.repr(value)}" in message and "config dict" in message
