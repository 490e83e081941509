"""A local diffusers pipeline folder, opened whole: its text encoders, tokenizers, scheduler and VAE beside the UNet.

`unetinspect run` generates an image with the pipeline as it is, and `attention FOLDER --prompt` encodes a real
prompt with the folder's own text encoder; both need diffusers and transformers, an optional extra
(`pip install "unetinspect[pipelines]"`), imported here only when a folder is opened. Everything that can be
checked without them is checked first — a folder with no `model_index.json`, a pipeline class not run here —
so a wrong folder fails in a line, before seconds of importing.

Only the text-to-image pipelines of the conditional UNet are run: their `__call__` takes `prompt`,
`num_inference_steps`, `guidance_scale`, `height`, `width` and `generator`, and their UNet is called once per step
(with both halves of classifier-free guidance in one batch). Others may work but are not tested, so they are
refused with the list of those that are.
"""

from __future__ import annotations

import contextlib
import json
import logging as std_logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unetinspect.errors import RunError, SourceError

# The pipeline classes run here, with the models they are: tested on tiny pipelines of both kinds.
PIPELINES = {"StableDiffusionPipeline": "SD 1.x/2.x", "StableDiffusionXLPipeline": "SDXL"}
INSTALL = 'pip install "unetinspect[pipelines]"'


@dataclass(frozen=True)
class PromptTokens:
    """How the pipeline's first tokenizer reads a prompt: its tokens (start and end included) before truncation,
    and how many it keeps (`model_max_length`, 77 for CLIP)."""

    count: int
    kept: int

    @property
    def truncated(self) -> bool:
        return self.count > self.kept

    def note(self) -> str | None:
        """What was dropped, said in the tokenizer's terms; None when nothing was."""
        if not self.truncated:
            return None
        return (f"the prompt is {self.count} tokens; the tokenizer keeps the first {self.kept} (start and end "
                f"included), as the pipeline does: {self.count - self.kept} were dropped")


def is_pipeline_folder(source: Any) -> bool:
    """A folder diffusers' `save_pretrained` wrote for a whole pipeline: it has a `model_index.json`."""
    return isinstance(source, (str, Path)) and (Path(source).expanduser() / "model_index.json").is_file()


def pipeline_class(folder: str | Path) -> str:
    """The class named in the folder's `model_index.json`, refused unless it is one run here."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise SourceError(f"{folder} is not a folder" if path.exists() else f"{folder} does not exist",
                          "give a diffusers pipeline folder (one with model_index.json)")
    index = path / "model_index.json"
    if not index.is_file():
        raise SourceError(f"{folder} is not a diffusers pipeline folder: it has no model_index.json",
                          "give the folder pipe.save_pretrained() wrote (unet/, vae/, text_encoder/, ...)")
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{index} cannot be read as JSON: {exc}", "re-save the pipeline") from None
    name = data.get("_class_name") if isinstance(data, dict) else None
    if name not in PIPELINES:
        runs = ", ".join(f"{cls} ({what})" for cls, what in PIPELINES.items())
        raise SourceError(f"{folder} holds a {name or 'pipeline of no named class'}, which is not run here",
                          f"the pipelines run are {runs}")
    return name


def load_pipeline(folder: str | Path, device: torch.device, dtype: torch.dtype, *, skip: tuple[str, ...] = ()
                  ) -> Any:
    """The pipeline in `folder`, from local files only, on `device` in `dtype`, its progress bar off; the parts
    named in `skip` (e.g. "unet", "vae") are not loaded."""
    pipeline_class(folder)
    DiffusionPipeline = _pipeline_type()
    with quiet():
        try:
            pipe = DiffusionPipeline.from_pretrained(str(Path(folder).expanduser()), local_files_only=True,
                                                     torch_dtype=dtype, **dict.fromkeys(skip))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SourceError(f"cannot load the pipeline in {folder}: {first}",
                              "check that every part named in model_index.json is in the folder") from None
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prompt_tokens(pipe: Any, prompt: str) -> PromptTokens:
    """How many tokens `prompt` is to the pipeline's (first) tokenizer, and how many it keeps."""
    tokenizer = pipe.tokenizer
    with quiet():  # transformers warns about sequences over the model's length: that is what is measured here
        ids = tokenizer(prompt, truncation=False)["input_ids"]
    return PromptTokens(len(ids), min(len(ids), int(tokenizer.model_max_length)))


def encode_prompt(pipe: Any, prompt: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The prompt's `encoder_hidden_states` (1, tokens, width) as the pipeline makes them, and SDXL's pooled text
    embedding (None for SD); no classifier-free guidance, no negative prompt."""
    with quiet(), torch.no_grad():
        encoded = pipe.encode_prompt(prompt, device=device, num_images_per_prompt=1,
                                     do_classifier_free_guidance=False)
    pooled = encoded[2] if len(encoded) > 2 else None
    return encoded[0], pooled


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """diffusers' and transformers' notices and progress bars held back while we call them, then put back as they
    were: their notices (no accelerate, a truncated prompt, a kernel an installed package could not fetch) are
    said once in our own words or not at all, so a run answers in one line."""
    with _silent_imports():
        libraries = [module.utils.logging for module in _libraries()]
    states = [(logging.get_verbosity(), logging.is_progress_bar_enabled()) for logging in libraries]
    with _silent_imports():
        for logging in libraries:
            logging.set_verbosity_error()
            logging.disable_progress_bar()
        try:
            yield
        finally:
            for logging, (level, bars) in zip(libraries, states):
                logging.set_verbosity(level)
                if bars:
                    logging.enable_progress_bar()


@contextlib.contextmanager
def _silent_imports() -> Iterator[None]:
    """Python warnings and log records below errors dropped (packages imported on the way log at import time)."""
    before = std_logging.root.manager.disable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        std_logging.disable(std_logging.WARNING)
        try:
            yield
        finally:
            std_logging.disable(before)


def _libraries() -> list[Any]:
    import diffusers
    import transformers

    return [diffusers, transformers]


def _pipeline_type() -> Any:
    """diffusers' DiffusionPipeline, with transformers beside it, or one line saying how to install both."""
    try:
        with _silent_imports():
            import transformers  # noqa: F401  the text encoders and tokenizers
            from diffusers.pipelines.pipeline_utils import DiffusionPipeline  # imported here, not on first use

            return DiffusionPipeline
    except ImportError as exc:
        raise RunError(f"running a pipeline needs diffusers and transformers ({exc.name or exc} is not installed)",
                       f"install them with {INSTALL}") from None
