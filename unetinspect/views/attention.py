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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from unetinspect.engine.attention import AttentionGrid, AttentionMaps, AttentionOptions, AttentionRecorder, TokenLabels
from unetinspect.errors import RunError
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.live import left_as_found
from unetinspect.sources.open import open_session
from unetinspect.sources.session import Setup

if TYPE_CHECKING:
    from unetinspect.views.report import Report

START, END, PAD = "<sot>", "<eot>", "<pad>"
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
    """The maps of one forward pass, with the setup header of what ran."""

    setup: Setup | None = None

    def shown_tokens(self) -> list[int]:
        """The token positions a picture shows: the prompt's words (up to 16) when labelled, else (or for an
        empty prompt) the first 8."""
        if self.kind == "self":
            return [0]
        count = next(iter(self.layers.values())).shape[-3]
        words = self.tokens.words()[:16] if self.tokens is not None else []
        return words or list(range(min(8, count)))

    def label(self, token: int) -> str:
        if self.kind == "self":
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
        title = f"{what}, {self.batch_note}"
        return AttentionGrid(title, [self.label(t) for t in tokens], list(columns), cells, column_max)


def attention_maps(
    source: Any = None,
    inputs: dict[str, Any] | None = None,
    spec: InputSpec = InputSpec(),
    *,
    kind: str = "cross",
    blocks: Sequence[str] = (),
    heads: bool = False,
    query: tuple[int, int] | None = None,
    batch: str = "all",
    tokens: Any = None,
    prompt: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    impl: str = "ours",
    **source_options: Any,
) -> AttentionResult:
    """The attention maps of one forward pass of `source` (`model(**inputs)` for a live module).

    `kind` cross or self (with `query` (y, x) in latent coordinates), `blocks` path prefixes to keep, `heads`
    kept apart (needed by `aggregate("daam")`), `batch` the rows (see `AttentionOptions`); `tokens` a tokenizer,
    a pipeline or a list of words, with `prompt` for a tokenizer, to label the maps (`token_labels`).
    """
    options = AttentionOptions(kind=kind, blocks=tuple(blocks), heads=heads, query=query, batch=batch)
    session = open_session(source, spec, device=device, dtype=dtype, impl=impl, inputs=inputs, **source_options)
    if session.device.type == "meta":
        raise RunError("attention maps are computed from real activations, not on the meta device",
                       "use --device cpu or cuda")
    with left_as_found(session.model), torch.no_grad(), AttentionRecorder(session.model, options) as recorder:
        session.model.eval()
        session.model(**session.inputs)
    maps = recorder.latest()
    labels = None
    if tokens is not None:
        length = next(iter(maps.layers.values())).shape[-3] if kind == "cross" else 0
        labels = token_labels(tokens, prompt, length) if kind == "cross" else None
    return AttentionResult(**vars(maps) | {"tokens": labels}, setup=session.setup)


def attention_report(result: AttentionResult, source: Any = None, spec: InputSpec = InputSpec(),
                     method: str = "mean", **source_options: Any) -> Report:
    """The HTML report of `source` with an attention section: hovering a token shows its map in every block."""
    from unetinspect.views.report import build_report  # the diagrams' machinery, only for the report

    return dataclasses.replace(build_report(source, spec, **source_options), attention=result.grid(method))


def parse_query(text: str) -> tuple[int, int]:
    """`--query 32,32`: a pixel of the latent as (y, x)."""
    parts = text.replace(" ", "").split(",")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise RunError(f"{text!r} is not a query pixel", "give it as Y,X in latent coordinates, e.g. --query 32,32")
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
