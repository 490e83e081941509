"""`unetinspect run` and `attention --prompt` given what they cannot run: a folder that is no pipeline, a pipeline
class not run here, zero steps, nonsensical cache options, a negative threshold. One line, a non-zero exit,
nothing written, and — where the folder alone tells — before diffusers is imported."""

from __future__ import annotations

import json
import sys

import pytest
from bad_input import refused

PROMPT = ["--prompt", "a cat"]


@pytest.fixture
def pipeline_folder(tmp_path):
    """A folder that names a pipeline run here: enough for every option check, which comes before loading."""
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return folder


def test_a_folder_that_is_no_pipeline(tmp_path, invoke):
    (tmp_path / "unet").mkdir()
    refused(invoke, tmp_path, "run", tmp_path / "unet", *PROMPT, "-o", tmp_path / "run.html",
            words="no model_index.json")
    refused(invoke, tmp_path, "run", tmp_path / "missing", *PROMPT, words="does not exist")


@pytest.mark.parametrize("index", [{"_class_name": "KandinskyV22Pipeline"}, {}, [1, 2]],
                         ids=["kandinsky", "no-class", "a-list"])
def test_a_pipeline_class_not_run_here_names_those_that_are(index, tmp_path, invoke):
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps(index))
    message = refused(invoke, tmp_path, "run", folder, *PROMPT, "-o", tmp_path / "run.html", words="not run here")
    assert "StableDiffusionPipeline (SD 1.x/2.x)" in message and "StableDiffusionXLPipeline (SDXL)" in message


def test_an_unreadable_model_index(tmp_path, invoke):
    (tmp_path / "model_index.json").write_text("{not json")
    refused(invoke, tmp_path, "run", tmp_path, *PROMPT, words="cannot be read as JSON")


@pytest.mark.parametrize("options, words", [
    (["--steps", 0], "--steps 0"),
    (["--steps", -5], "--steps -5"),
    (["--height", 0], "--height 0"),
    (["--guidance", "nan"], "--guidance nan"),
    (["--cache", "interval=0"], "no interval ≥ 1"),
    (["--cache", "interval=three"], "not 'three'"),
    (["--cache", "branch=1"], "no interval"),
    (["--cache", "speed=max"], "'speed=max' is not interval=N"),
    (["--cache", "interval=2,interval=3"], "once each"),
    (["--cache", ""], "is not interval=N"),
    (["--cache", "interval=3", "--cache-threshold", "0.1"], "one run applies one"),
], ids=lambda v: "_".join(map(str, v)) if isinstance(v, list) else None)
def test_nonsensical_numbers_are_usage_errors(options, words, pipeline_folder, tmp_path, invoke):
    refused(invoke, tmp_path, "run", pipeline_folder, *PROMPT, *options, "-o", tmp_path / "run.html",
            words=words, exit_code=2)


@pytest.mark.parametrize("threshold", ["-0.1", "inf"])
def test_a_threshold_below_zero_or_infinite(threshold, pipeline_folder, tmp_path, invoke):
    refused(invoke, tmp_path, "run", pipeline_folder, *PROMPT, "--cache-threshold", threshold, "-o",
            tmp_path / "run.html", words="is not a number ≥ 0")


def test_a_picture_or_page_without_a_file_fails_before_the_run(pipeline_folder, tmp_path, invoke):
    refused(invoke, tmp_path, "run", pipeline_folder, *PROMPT, "--format", "png", words="add -o FILE.png")


def test_a_branch_out_of_range_fails_before_anything_is_written(tiny_pipeline, tmp_path, invoke):
    """Checked against the real UNet (DeepCache numbers 3 branches per down block), so after loading."""
    folder = tmp_path / "pipe"
    tiny_pipeline.save_pretrained(folder)
    refused(invoke, tmp_path, "run", folder, *PROMPT, "--steps", 1, "--device", "cpu", "--cache",
            "interval=2,branch=99", "-o", tmp_path / "run.html", words="branch 99 is out of range")


def test_without_diffusers_one_line_names_the_extra(pipeline_folder, tmp_path, invoke, monkeypatch):
    for name in ("diffusers", "diffusers.pipelines.pipeline_utils"):
        monkeypatch.setitem(sys.modules, name, None)  # what `import` finds when the package is not installed
    message = refused(invoke, tmp_path, "run", pipeline_folder, *PROMPT, "-o", tmp_path / "run.html",
                      words="needs diffusers and transformers")
    assert 'pip install "unetinspect[pipelines]"' in message
