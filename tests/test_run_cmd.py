"""`unetinspect run PIPELINE_FOLDER --prompt TEXT` on tiny SD and SDXL pipelines saved offline: the image is the one
diffusers' own pipeline makes from the same seed, the rows are labelled by the pipeline's own tokenizer, the page,
the PNG and the JSON are written through the one output layer (the page shows a prompt's HTML as text), and
`attention FOLDER --prompt` feeds the folder's real text encoder (its maps equal diffusers' UNet fed
`pipe.encode_prompt`'s embeddings)."""

from __future__ import annotations

import dataclasses
import io
import json
from html.parser import HTMLParser

import pytest
import torch
from tiny_pipelines import save_sdxl

from unetinspect.render.formats import emit
from unetinspect.render.run_view import RunView, run_html

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
PIL = pytest.importorskip("PIL.Image")

PROMPT = "a cat"


@pytest.fixture(scope="module")
def sd_folder(tiny_pipeline, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd") / "pipe"
    tiny_pipeline.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory):
    return save_sdxl(tmp_path_factory.mktemp("sdxl") / "pipe")


@pytest.fixture(scope="module")
def result(sd_folder):
    from unetinspect.views.run import run_pipeline

    return run_pipeline(sd_folder, PROMPT, steps=2, seed=3, device="cpu")


def _diffusers_pipeline(folder):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_image_is_diffusers_own_from_the_same_seed(result, sd_folder):
    pipe = _diffusers_pipeline(sd_folder)
    image = pipe(PROMPT, num_inference_steps=2, generator=torch.Generator().manual_seed(3)).images[0]
    assert result.image.size == image.size == (32, 32)  # the UNet's 16x16 latent times the tiny VAE's 2
    assert result.image.tobytes() == image.tobytes()


def test_every_block_is_timed_in_every_step_and_drift_follows_the_steps(result):
    assert result.profile.calls and len(result.profile.calls) == 2
    assert all(c.batch == 2 for c in result.profile.calls)  # both guidance halves in one batch
    for block, times in result.block_ms.items():
        assert len(times) == 2 and all(ms >= 0 for ms in times), block
    for call, ms in enumerate(c.ms for c in result.profile.calls):
        outer = sum(times[call] for block, times in result.block_ms.items())
        assert outer <= ms * 1.01  # the blocks run inside the call
    assert result.drift.rel_l1["mid_block"][0] is None and result.drift.rel_l1["mid_block"][1] > 0


def test_rows_are_labelled_by_the_pipelines_tokenizer(result, tiny_pipeline):
    labels = result.attention.tokens
    words = [labels.labels[i] for i in labels.words()]
    assert words == [t.removesuffix("</w>") for t in tiny_pipeline.tokenizer.tokenize(PROMPT)]
    assert result.attention.text == "the prompt 'a cat'" and "random" not in result.attention.grid().title
    assert result.attention.steps == 2 and "conditional half" in result.attention.batch_note


def test_json_png_and_table_through_the_one_output_layer(result, tmp_path):
    out = emit(RunView(), "json", result, output=tmp_path / "run.json")
    data = json.loads(out.read_text())
    assert data["kind"] == "run" and data["pipeline"] == "StableDiffusionPipeline"
    assert (data["prompt"], data["steps"], data["seed"], data["image"]) == (PROMPT, 2, 3, {"width": 32,
                                                                                          "height": 32})
    assert {"name", "median_ms", "ms_per_step"} <= set(data["blocks"][0]) and len(data["calls"]) == 2
    assert data["attention"]["tokens"][0] == "<sot>" and data["drift"]["rel_l1"]["mid_block"][0] is None
    assert data["cache"] is None and data["notes"] == []
    png = emit(RunView(), "png", result, output=tmp_path / "image.png")
    assert PIL.open(io.BytesIO(png.read_bytes())).tobytes() == result.image.tobytes()
    table = emit(RunView(), "table", result, output=tmp_path / "run.txt").read_text()
    assert "up_blocks.1" in table and "the prompt 'a cat'" in table


def test_cli_writes_the_page_with_image_times_drift_maps_and_the_cache_comparison(sd_folder, tmp_path, invoke):
    out = tmp_path / "run.html"
    run = invoke("run", sd_folder, "--prompt", PROMPT, "--steps", 2, "--device", "cpu",
                 "--cache", "interval=2,branch=0", "-o", out)
    assert run.exit_code == 0, run.output
    assert run.stderr.strip() == f"wrote {out}" and run.stdout == ""
    html = out.read_text()
    for part in ('id="image"', 'id="times"', 'id="drift"', 'id="cache"', 'id="attention"', 'class="over"',
                 "data:image/png;base64,", "DeepCache uniform, interval=2, branch=0", "PSNR"):
        assert part in html, part
    assert "http://" not in html and "https://" not in html  # self-contained


class _Page(HTMLParser):
    """The tags a browser would make of a page, and its text as a reader sees it (entities resolved)."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_the_page_shows_a_prompt_and_notes_full_of_html_as_text(sd_folder):
    from unetinspect.views.run import run_pipeline

    prompt = '<script>alert("p")</script> & <marquee>cat</marquee>'
    result = run_pipeline(sd_folder, prompt, steps=1, seed=0, device="cpu")
    note = "<img src=x onerror=alert(1)> & <blink>n</blink>"
    page = _Page(run_html(dataclasses.replace(result, notes=[note])))
    assert page.tags.count("script") == 2 and "img" not in page.tags[:page.tags.index("main")]  # ours only
    assert "marquee" not in page.tags and "blink" not in page.tags
    text = "".join(page.text)
    assert f"prompt '{prompt}'" in text and note in text


def test_sdxl_runs_with_both_tokenizers(sdxl_folder, tmp_path, invoke):
    out = tmp_path / "run.json"
    run = invoke("run", sdxl_folder, "--prompt", PROMPT, "--steps", 1, "--device", "cpu", "-o", out)
    assert run.exit_code == 0, run.output
    data = json.loads(out.read_text())
    assert data["pipeline"] == "StableDiffusionXLPipeline" and data["image"] == {"width": 32, "height": 32}
    assert data["attention"]["tokens"][:3] == ["<sot>", "a", "c"]


def test_a_prompt_over_the_tokenizers_length_is_cut_as_the_pipeline_cuts_it_and_said(sd_folder, tmp_path, invoke):
    out = tmp_path / "run.json"
    run = invoke("run", sd_folder, "--prompt", "cat " * 2500, "--steps", 1, "--device", "cpu", "-o", out)
    assert run.exit_code == 0, run.output
    warning = run.stderr.splitlines()[0]
    assert warning.startswith("warning:") and "7502 tokens" in warning and "first 77" in warning
    assert "7502 tokens" in json.loads(out.read_text())["notes"][0]


def test_attention_on_a_pipeline_folder_encodes_the_real_prompt(sd_folder, tiny_pipeline, invoke):
    from unetinspect.sources.inputs import InputSpec
    from unetinspect.sources.open import open_session
    from unetinspect.views.attention import attention_maps

    fast = ["--latent", "8", "--device", "cpu", "-f", "json"]
    real = json.loads(invoke("attention", sd_folder, "--prompt", PROMPT, *fast).stdout)
    random = json.loads(invoke("attention", sd_folder, *fast).stdout)
    assert real["text"] == "the prompt 'a cat'" and real["notes"] == [] and real["tokens"][:3] == ["<sot>", "a", "c"]
    assert random["text"] == "random text" and "random text" in random["notes"][0]
    # the truth: diffusers' UNet of the folder fed the pipeline's own encode_prompt, the same sample and timestep
    spec = InputSpec(latent=(8, 8))
    session = open_session(sd_folder, spec, device="cpu")
    with torch.no_grad():
        context = tiny_pipeline.encode_prompt(PROMPT, torch.device("cpu"), 1, False)[0]
    inputs = dict(session.inputs, encoder_hidden_states=context)
    truth = attention_maps(_diffusers_pipeline(sd_folder).unet, inputs=inputs, device="cpu")
    ours = attention_maps(sd_folder, spec=spec, device="cpu", prompt=PROMPT)
    assert ours.layers.keys() == truth.layers.keys()
    for path in ours.layers:
        torch.testing.assert_close(ours.layers[path], truth.layers[path], atol=1e-5, rtol=1e-4)
