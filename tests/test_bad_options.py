"""CLI options that ask for absurd work: a batch, text length or image size whose activations fit on no real
device is refused before any tensor is made (saying the limit and why); inputs are made on the target device."""

from __future__ import annotations

import json

import pytest
from bad_input import refused
from conftest import tiny
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unetinspect.errors import RunError
from unetinspect.families import load_preset
from unetinspect.sources.inputs import InputSpec, make_inputs


@pytest.mark.parametrize("options", [["--batch", 1_000_000_000], ["--text-len", 10_000_000_000],
                                     ["--height", 8_000_000, "--width", 8_000_000]],
                         ids=["batch", "text-len", "size"])
@pytest.mark.parametrize("command", [["summary", "sd15"], ["diagram", "sd15"], ["compare", "sd15", "tiny"]],
                         ids=lambda c: c[0])
def test_absurd_sizes_are_refused(command, options, tmp_path, invoke):
    refused(invoke, tmp_path, *command, *options, "-o", tmp_path / "out.txt", words="more than")


def test_the_device_memory_is_the_limit_off_meta(tmp_path, invoke):
    message = refused(invoke, tmp_path, "profile", "tiny", "--device", "cpu", "--batch", 10**9, words="more than")
    assert "this machine's memory" in message


@pytest.mark.parametrize("options", [["--batch", 0], ["--batch", -3], ["--text-len", 0], ["--batch", "many"],
                                     ["--height", "1e9"]])
def test_malformed_option_values_are_usage_errors(options, invoke):
    result = invoke("summary", "tiny", *options)
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_meta_inputs_allocate_nothing():
    """Made directly on meta: a 20 GiB sample costs no memory (it used to be made on the CPU, then moved)."""
    inputs = make_inputs(load_preset("sd15"), InputSpec(batch=4096), device="meta")
    assert inputs["sample"].device.type == "meta" and inputs["sample"].shape[0] == 4096


def test_library_checks_sizes_too():
    with pytest.raises(RunError, match="more than"):
        make_inputs(load_preset("tiny"), InputSpec(batch=10**12), device="meta")
    with pytest.raises(RunError, match="positive integer"):
        make_inputs(load_preset("tiny"), InputSpec(batch=0), device="meta")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 2**40), text_len=st.integers(1, 2**40),
       side=st.one_of(st.none(), st.integers(1, 2**30).map(lambda n: n * 8)))
def test_generated_sizes_run_or_refuse(batch, text_len, side, tmp_path_factory, invoke):
    """Any size on the meta device: a summary, or a one-line refusal; never a crash or an allocation."""
    folder = tmp_path_factory.mktemp("sizes")
    options = ["--batch", batch, "--text-len", text_len] + (["--height", side, "--width", side] if side else [])
    result = invoke("summary", "tiny", *options, "-f", "json", "-o", folder / "out.json")
    if result.exit_code != 0:
        refused(invoke, folder, "summary", "tiny", *options, "-f", "json", "-o", folder / "out.json",
                words="more than")


def test_a_model_bigger_than_this_machine_is_refused_before_allocating(tmp_path, invoke):
    """Each field in range, but 207G parameters on the CPU: refused, not promised by Linux and then killed."""
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(tiny(block_out_channels=[16384] * 3, cross_attention_dim=16384)))
    refused(invoke, tmp_path, "summary", path, "--device", "cpu", words="out of memory placing")


def test_a_size_whose_attention_no_tensor_can_address_is_refused(tmp_path, invoke):
    """Found by the generated sizes: 220440² px made torch overflow its storage size ("internal error")."""
    refused(invoke, tmp_path, "summary", "tiny", "--height", 220440, "--width", 220440, words="no tensor can address")
