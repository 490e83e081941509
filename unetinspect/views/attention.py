"""`attention_maps`: which pixels each prompt token steers, layer by layer, in one forward pass of any source.

The source is opened as every view opens it (`open_session`: a preset, a file, our UNet, diffusers' UNet or any
module with `inputs=`), run once under `no_grad` where it is (in eval mode, restored after), and its attention
layers recorded by `engine.attention`. Without a text encoder, a source's text is the random context of its
inputs: the maps then show how the layers spread attention, not what a prompt means — label real tokens by
passing a tokenizer (or a pipeline) and the prompt that made the `encoder_hidden_states`.

`token_labels` names the tokens: HF tokenizers (CLIP's, T5's) are asked for the ids and names of the padded
prompt; a list of words is laid out as CLIP lays a prompt out (start token, the words, end token, padding).
SDXL's context is one 77-token sequence 2048 wide — both text encoders' features of the *same* tokens side by
side — so it gets one label per token; where its two tokenizers name a token differently the label is "a/b".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from unetinspect.engine.attention import (
    AttentionGrid,
    AttentionMaps,
    AttentionOptions,
    AttentionRecorder,
    Batch,
    Kind,
    TokenLabels,
    attention_layers,
)
from unetinspect.errors import RunError
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.live import left_as_found
from unetinspect.sources.open import open_session
from unetinspect.sources.pipeline import encode_prompt, is_pipeline_folder, load_pipeline, prompt_tokens
from unetinspect.sources.session import Session, Setup
from unetinspect.weights.block_names import diffusers_blocks

if TYPE_CHECKING:
    from unetinspect.views.report import Report

START, END, PAD = "<sot>", "<eot>", "<pad>"
RANDOM_TEXT = "random text"
RANDOM_NOTE = ("random text: no prompt was encoded, so these maps show how the layers spread attention, not what a "
               "prompt means; give a pipeline folder and --prompt for a real prompt's maps")
RELABELLED_NOTE = "the token labels name positions only: the text at those positions was random"
LOOP_TEXT = "the text of the watched calls"
_NAMES = {"<|startoftext|>": START, "<|endoftext|>": END, "</s>": END, "<s>": START, "<pad>": PAD}


@dataclass(frozen=True)
class LayerRow:
    """One attention layer in the table: where it is, its size, and what its maps peak at."""

    path: str
    size: tuple[int, int]  # the layer's (h, w)
    heads: int | None  # kept apart: how many; averaged: None
    peak: str  # cross: the token attended most (mean over pixels); self: the pixel attended most, "y,x"
    share: float  # that token's mean attention, or that pixel's


@dataclass
class AttentionResult(AttentionMaps):
    """The maps of one forward pass (or a watch's steps), with the setup header of what ran, what the text was
    (`text`: "random text", a prompt, or the text of the watched calls), what a reader must know (`notes`) and,
    asked for, the report page."""

    setup: Setup | None = None
    text: str = LOOP_TEXT
    notes: list[str] = field(default_factory=list)
    page: Report | None = None  # the HTML report with these maps (`attention_maps(..., page=True)`)

    @classmethod
    def of(cls, maps: AttentionMaps) -> AttentionResult:
        """Maps as a result every output draws: `watch(attention=True)`'s `w.attention.mean()` as it is, its text
        being the one the user's own loop gave."""
        return maps if isinstance(maps, cls) else cls(**vars(maps))

    def shown_tokens(self) -> list[int]:
        """The token positions a picture shows: the prompt's words (up to 16) when labelled, else (or for an
        empty prompt) the first 8."""
        if self.kind == "self":
            return [0]
        count = next(iter(self.layers.values())).shape[-3]
        words = self.tokens.words()[:16] if self.tokens is not None else []
        return words or list(range(min(8, count)))

    def label(self, token: int) -> str:
        if self.kind == "self" and self.query is not None:
            return f"query {self.query[0]},{self.query[1]}"
        return self.tokens.labels[token] if self.tokens is not None else f"#{token}"

    def summary_rows(self) -> list[LayerRow]:
        """Per layer: its size, and the token (cross) or pixel (self) its map peaks at, first batch row."""
        rows = []
        for path, layer in self.layers.items():
            heads = layer.shape[1] if self.heads else None
            layer = layer.mean(1) if self.heads else layer  # [batch, tokens, h, w]
            h, w = layer.shape[-2:]
            if self.kind == "cross":
                shares = layer[0].mean((-1, -2))  # [tokens]
                candidates = (self.tokens.words() if self.tokens is not None else []) or range(len(shares))
                best = max(candidates, key=lambda t: float(shares[t]))
                rows.append(LayerRow(path, (h, w), heads, self.label(best), float(shares[best])))
            else:
                flat = int(layer[0, 0].argmax())
                y, x = flat // w * self.latent[0] // h, flat % w * self.latent[1] // w
                rows.append(LayerRow(path, (h, w), heads, f"{y},{x}", float(layer[0, 0].flatten()[flat])))
        return rows

    def grid(self, method: str = "mean") -> AttentionGrid:
        """Tokens x blocks (each block's layers averaged at the latent size), plus all layers aggregated by
        `method`; the first batch row."""
        columns = {**self.by_block(), "all layers": self.aggregate(method)}  # each [batch, tokens, H, W]
        tokens = self.shown_tokens()
        cells = [[columns[name][0, t].tolist() for name in columns] for t in tokens]
        column_max = [float(columns[name][0, tokens].max()) for name in columns]
        what = "cross-attention per token" if self.kind == "cross" else "self-attention of one pixel"
        title = f"{what} of {self.text}, {self.batch_note}"
        return AttentionGrid(title, [self.label(t) for t in tokens], list(columns), cells, column_max)


def attention_maps(
    source: Any = None,
    inputs: dict[str, Any] | None = None,
    spec: InputSpec = InputSpec(),
    *,
    kind: Kind = "cross",
    blocks: Sequence[str] | str = (),
    heads: bool = False,
    query: tuple[int, int] | str | None = None,
    batch: Batch = "all",
    tokens: Any = None,
    prompt: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    impl: str = "ours",
    page: bool = False,
    **source_options: Any,
) -> AttentionResult:
    """The attention maps of one forward pass of `source` (`model(**inputs)` for a live module).

    `kind` cross or self (with `query` (y, x) in latent coordinates), `blocks` path prefixes to keep (diffusers
    paths, original LDM paths or LoRA Block Weight IDs: `down_blocks.1`, `input_blocks.4.1`, `IN04`), `heads`
    kept apart (needed by `aggregate("daam")`), `batch` the rows (see `AttentionOptions`); `tokens` a tokenizer,
    a pipeline or a list of words, with `prompt` for a tokenizer, to label the maps (`token_labels`). `blocks`
    and `query` may be given as the command line writes them ("down_blocks.2,mid_block", "32,32"). With `page`,
    the HTML report of the source with these maps (`AttentionResult.page`) is built too.

    With a pipeline folder as `source` and a `prompt`, the prompt is encoded by the folder's own text encoder(s)
    and the rows are labelled by its tokenizer(s); without `inputs` or such a prompt the text is random, and the
    result says so (`text`, `notes`) in every output.
    """
    if isinstance(blocks, str):
        blocks = [b.strip() for b in blocks.split(",") if b.strip()]
    if isinstance(query, str):
        query = parse_query(query)
    real_prompt = prompt is not None and inputs is None and is_pipeline_folder(source)
    if prompt is not None and tokens is None and not real_prompt and inputs is None:
        raise RunError(f"a prompt is encoded by a pipeline's text encoder, and {source or 'this source'} is no "
                       "pipeline folder", "give the folder pipe.save_pretrained() wrote (with text_encoder/ and "
                       "tokenizer/), or name the rows of random text with --tokens")
    session = open_session(source, spec, device=device, dtype=dtype, impl=impl, inputs=inputs, **source_options)
    layers = attention_layers(session.model)
    blocks = diffusers_blocks(blocks, session.setup.naming, (p for p, _ in session.model.named_modules()),
                              keep=lambda block: any(p == block or p.startswith(block + ".") for p in layers))
    options = AttentionOptions(kind=kind, blocks=blocks, heads=heads, query=query, batch=batch)
    if session.device.type == "meta":
        raise RunError("attention maps are computed from real activations, not on the meta device",
                       "use --device cpu or cuda")
    notes: list[str] = []
    if real_prompt and prompt is not None:
        pipe, truncation = _encode_prompt_into(session, Path(source).expanduser(), prompt)
        tokens = pipe if tokens is None else tokens
        text = f"the prompt {quoted_prompt(prompt)}"
        notes += [truncation] if truncation else []
    elif inputs is not None:
        text = "the encoder_hidden_states given in inputs"
    else:
        text = RANDOM_TEXT
        notes += [RANDOM_NOTE, *([RELABELLED_NOTE] if tokens is not None else [])]
    with left_as_found(session.model), torch.no_grad(), AttentionRecorder(session.model, options) as recorder:
        session.model.eval()
        session.model(**session.inputs)
    maps = recorder.latest()
    labels = None
    if tokens is not None and kind == "cross":
        labels = token_labels(tokens, prompt, next(iter(maps.layers.values())).shape[-3])
    labelled = dataclasses.replace(maps, tokens=labels)
    result = AttentionResult(**vars(labelled), setup=session.setup, text=text, notes=notes)
    if page:
        result.page = attention_report(result, source, spec, "daam" if heads else "mean", **source_options)
    return result


def _encode_prompt_into(session: Session, folder: Path, prompt: str) -> tuple[Any, str | None]:
    """Put the prompt, as the folder's text encoder(s) make it, into the session's inputs (SDXL: its pooled
    embedding too); returns the pipeline (its tokenizers label the rows) and what truncation dropped, if any."""
    pipe = load_pipeline(folder, session.device, session.dtype, skip=("unet", "vae"))
    context, pooled = encode_prompt(pipe, prompt, session.device)
    inputs = dict(session.inputs)
    current = inputs.get("encoder_hidden_states")
    if not isinstance(current, torch.Tensor) or current.shape[-1] != context.shape[-1]:
        width = current.shape[-1] if isinstance(current, torch.Tensor) else "no"
        raise RunError(f"the pipeline's text encoder makes {context.shape[-1]}-wide tokens and its UNet reads "
                       f"{width}-wide text", "the folder's parts do not belong together")
    batch = current.shape[0]
    inputs["encoder_hidden_states"] = context.to(session.dtype).expand(batch, -1, -1)
    added = inputs.get("added_cond_kwargs")
    if pooled is not None and isinstance(added, dict) and "text_embeds" in added:
        inputs["added_cond_kwargs"] = {**added, "text_embeds": pooled.to(session.dtype).expand(batch, -1)}
    session.inputs = inputs
    return pipe, prompt_tokens(pipe, prompt).note()


def quoted_prompt(prompt: str, limit: int = 60) -> str:
    """The prompt in quotes, cut with an ellipsis where it would crowd a title."""
    return repr(prompt if len(prompt) <= limit else prompt[:limit - 1] + "…")


def attention_report(result: AttentionResult, source: Any = None, spec: InputSpec = InputSpec(),
                     method: str = "mean", **source_options: Any) -> Report:
    """The HTML report of `source` with an attention section: hovering a token shows its map in every block."""
    from unetinspect.views.report import build_report  # the diagrams' machinery, only for the report

    return dataclasses.replace(build_report(source, spec, **source_options), attention=result.grid(method))


def parse_query(text: str) -> tuple[int, int]:
    """`--query 32,32`: a pixel of the latent as (y, x)."""
    parts = text.replace(" ", "").split(",")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):  # '²'.isdigit() is True
        raise RunError(f"--query {text!r} is not a pixel", "give it as Y,X in latent coordinates, e.g. --query 32,32")
    return int(parts[0]), int(parts[1])


def token_labels(tokens: Any, prompt: str | None, length: int) -> TokenLabels:
    """A label for each of `length` context tokens, from a tokenizer, a pipeline (its `.tokenizer`, and SDXL's
    `.tokenizer_2`), a list of words or a comma-separated string of them."""
    if isinstance(tokens, str):
        tokens = [word.strip() for word in tokens.split(",") if word.strip()]
    if isinstance(tokens, (list, tuple)):
        return _laid_out(list(tokens), length)
    tokenizers = [t for t in (getattr(tokens, "tokenizer", None), getattr(tokens, "tokenizer_2", None)) if t]
    labelled = [_from_tokenizer(t, prompt, length) for t in tokenizers or [tokens]]
    first = labelled[0]
    for other in labelled[1:]:  # SDXL: one sequence, both tokenizers' names of each token
        first = TokenLabels(
            tuple(a if a == b or sa or sb else f"{a}/{b}"
                  for a, b, sa, sb in zip(first.labels, other.labels, first.special, other.special)),
            tuple(sa or sb for sa, sb in zip(first.special, other.special)))
    return first


def _laid_out(words: list[str], length: int) -> TokenLabels:
    """Words placed as CLIP places a prompt: the start token, the words, the end token, padding to `length`."""
    labels = [START, *words, END][:length]
    labels += [PAD] * (length - len(labels))
    return TokenLabels(tuple(labels), tuple(i == 0 or i > len(words) for i in range(length)))


def _from_tokenizer(tokenizer: Any, prompt: str | None, length: int) -> TokenLabels:
    """Labels from an HF-like tokenizer: ids and names when it has `__call__` and `convert_ids_to_tokens`, else
    its `tokenize` laid out as CLIP lays it out. Everything after the first end token is padding."""
    if prompt is None:
        raise RunError("labelling tokens with a tokenizer needs the prompt that was encoded",
                       "pass prompt='...' with tokens=")
    if not hasattr(tokenizer, "convert_ids_to_tokens"):
        if not hasattr(tokenizer, "tokenize"):
            raise RunError(f"a {type(tokenizer).__name__} is not a tokenizer (no convert_ids_to_tokens or tokenize)",
                           "pass pipe.tokenizer, a pipeline, or a list of words")
        return _laid_out([_clean(t) for t in tokenizer.tokenize(prompt)], length)
    ids = tokenizer(prompt, padding="max_length", max_length=length, truncation=True)["input_ids"]
    names = tokenizer.convert_ids_to_tokens(list(ids))
    specials = set(getattr(tokenizer, "all_special_ids", ()))
    labels, special, ended = [], [], False
    for token_id, name in zip(ids, names):
        label = PAD if ended else _clean(name)
        labels.append(label)
        special.append(ended or token_id in specials or label in (START, END, PAD))
        ended = ended or label == END
    labels += [PAD] * (length - len(labels))
    special += [True] * (length - len(special))
    return TokenLabels(tuple(labels), tuple(special))


def _clean(name: str) -> str:
    """A token's name as a label: CLIP's word-end mark and T5's word-start mark dropped, specials shortened."""
    return _NAMES.get(name, name.removesuffix("</w>").removeprefix("▁") or name)
