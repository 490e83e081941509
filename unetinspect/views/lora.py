"""What a LoRA file does to a UNet: which blocks it touches, at what rank and strength, and whether it fits a base.

Every UNet module of the file is mapped onto a module path of our UNet (see `weights.lora`) — of the base given
with `--base`, else of the preset it fits best — and the report is grouped by block and by LoRA-Block-Weight
name. The strength of an update is the Frobenius norm of ΔW = scale · up @ down, computed from the factors
without forming ΔW: ‖U D‖²_F = trace((UᵀU)(DDᵀ)), two rank × rank matrices.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from unetinspect.configs.unet import UNetConfig
from unetinspect.errors import OptionsError, SourceError, WeightsError
from unetinspect.families import load_preset
from unetinspect.presets import PRESETS
from unetinspect.sources.resolve import PICKLE_SUFFIXES, resolve_source
from unetinspect.weights.block_names import BASE, lbw_id, lbw_ids, lora_ids
from unetinspect.weights.lora import (
    BaseModules,
    LoraFile,
    LoraModule,
    base_modules,
    block_of,
    mismatch,
    parse_lora,
)
from unetinspect.weights.pickle import refuse_pickle
from unetinspect.weights.safetensors import load_tensors, read_header

NO_SUCH_MODULE = "no such module"


@dataclass(frozen=True)
class ModuleReport:
    """One adapted layer: where it lands in the base (path None: nowhere, `reason` says why)."""

    name: str
    target: str
    variant: str
    path: str | None
    block: str | None
    block_weight: str | None
    rank: int | None
    alpha: float | None
    params: int
    norm: float | None
    reason: str | None  # None: matched

    @property
    def matched(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class BlockReport:
    """The modules of one block (and one LoRA Block Weight unit) together."""

    block: str
    block_weight: str | None
    modules: int
    ranks: tuple[int, ...]
    alphas: tuple[float, ...]
    params: int
    norm: float | None  # ‖ΔW‖_F over all the block's updates together

    def to_dict(self) -> dict[str, Any]:
        rank: int | list[int] | None = self.ranks[0] if len(self.ranks) == 1 else list(self.ranks) or None
        return {"block": self.block, "block_weight": self.block_weight, "modules": self.modules, "rank": rank,
                "alpha": list(self.alphas), "params": self.params, "norm": self.norm}


@dataclass
class LoraReport:
    source: str
    format: str
    base: str  # the base the modules were mapped onto
    base_given: bool
    likely_base: str | None
    likely_base_matches: int
    modules: list[ModuleReport]
    unparsed: list[str]
    metadata: dict[str, str] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)  # the base's LoRA Block Weight IDs, in the extension's order
    lora_ids: list[str] = field(default_factory=list)  # those a LoRA of the attention layers can touch
    lbw: LbwPreview | None = None  # what a block-weight vector (`--lbw`) would keep of it

    @property
    def unet_modules(self) -> list[ModuleReport]:
        return [m for m in self.modules if m.target == "unet"]

    @property
    def text_encoder_modules(self) -> list[ModuleReport]:
        return [m for m in self.modules if m.target != "unet"]

    @property
    def matched(self) -> list[ModuleReport]:
        return [m for m in self.unet_modules if m.matched]

    @property
    def unmatched(self) -> list[ModuleReport]:
        return [m for m in self.unet_modules if not m.matched]

    @property
    def variants(self) -> dict[str, int]:
        return dict(Counter(m.variant for m in self.modules).most_common())

    @property
    def params(self) -> int:
        return sum(m.params for m in self.modules)

    @property
    def blocks(self) -> list[BlockReport]:
        """Matched UNet modules per (block, block-weight name), in forward order."""
        groups: dict[tuple[str, str | None], list[ModuleReport]] = {}
        for module in self.matched:
            groups.setdefault((module.block or "?", module.block_weight), []).append(module)
        return [_block_report(block, weight, members)
                for (block, weight), members in sorted(groups.items(), key=lambda item: _forward_rank(*item[0]))]

    def strength_by_id(self) -> dict[str, float | None]:
        """‖ΔW‖_F of the LoRA's updates per LoRA Block Weight ID (BASE: the text encoders), 0 for an ID it leaves
        alone, None where a module's update has no computed norm (Tucker cores). Layers are distinct, so the norms
        of an ID's modules add as squares."""
        squares: dict[str, float | None] = dict.fromkeys(self.ids, 0.0)
        for module in [*self.matched, *self.text_encoder_modules]:
            weight = module.block_weight
            if weight not in squares:
                continue
            old = squares[weight]
            squares[weight] = None if old is None or module.norm is None else old + module.norm ** 2
        return {i: None if v is None else math.sqrt(v) for i, v in squares.items()}

    def block_weight_vector(self) -> str:
        """The block-weight string, in the extension's order, that keeps exactly the blocks this LoRA touches:
        1 where it has modules, 0 elsewhere; the short form (17 IDs for SD 1.x, 12 for SDXL) when it touches only
        the blocks a LoRA usually does, the full one (26, 20) otherwise."""
        strengths = self.strength_by_id()
        touched = {i for i, v in strengths.items() if v is None or v > 0}
        ids = self.lora_ids if touched <= set(self.lora_ids) else self.ids
        return ",".join("1" if i in touched else "0" for i in ids)

    def to_dict(self) -> dict[str, Any]:
        text = self.text_encoder_modules
        return {
            "source": self.source, "format": self.format, "variants": self.variants,
            "modules": len(self.modules), "params": self.params,
            "unet_modules": len(self.unet_modules),
            "text_encoder_modules": {target: sum(1 for m in text if m.target == target)
                                     for target in dict.fromkeys(m.target for m in text)},
            "base": self.base, "base_given": self.base_given,
            "likely_base": self.likely_base, "likely_base_matches": self.likely_base_matches,
            "matched": len(self.matched),
            "unmatched": [{"key": m.name, "reason": m.reason} for m in self.unmatched],
            "unparsed_keys": self.unparsed,
            "blocks": [b.to_dict() for b in self.blocks],
            "module_list": [{"key": m.name, "target": m.target, "variant": m.variant, "path": m.path,
                             "block": m.block, "block_weight": m.block_weight, "rank": m.rank, "alpha": m.alpha,
                             "params": m.params, "norm": m.norm, "reason": m.reason} for m in self.modules],
            "metadata": self.metadata,
            "lbw": {"ids": self.ids, "strength": self.strength_by_id(), "vector": self.block_weight_vector(),
                    "preview": self.lbw.to_dict() if self.lbw else None},
        }


@dataclass(frozen=True)
class LbwPreview:
    """What a LoRA Block Weight vector does to a LoRA: each ID's weight, the layers it scales (by how much), and
    how much of the LoRA's norm is left (‖Σ w_id ΔW_id‖_F / ‖Σ ΔW_id‖_F; layers are distinct, so per-ID norms add
    as squares)."""

    vector: str
    weights: dict[str, float]  # ID → its weight
    scaled: dict[str, int]  # ID → how many of the LoRA's modules it scales by a weight other than 1
    norm_left: float | None  # share of the LoRA's norm left, 0–1+ (None: a norm not computed)

    def to_dict(self) -> dict[str, Any]:
        return {"vector": self.vector, "weights": self.weights, "scaled": self.scaled, "norm_left": self.norm_left}


def parse_lbw(vector: str, ids: list[str], lora_ids: list[str]) -> dict[str, float]:
    """A block-weight string → ID → weight: as many numbers as the base's full ID list (26 SD 1.x, 20 SDXL) or its
    LoRA list (17, 12), as the extension reads them; anything else is refused naming both lengths."""
    try:
        values = [float(v) for v in vector.split(",")]
    except ValueError:
        raise OptionsError(f"--lbw {vector!r} is not a comma-separated list of numbers",
                           "e.g. --lbw 1,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1") from None
    if not all(math.isfinite(v) for v in values):
        raise OptionsError(f"--lbw {vector!r} has a weight that is not a finite number")
    for names in (lora_ids, ids):
        if len(values) == len(names):
            return dict(zip(names, values))
    raise OptionsError(f"--lbw has {len(values)} weights; this base takes {len(lora_ids)} ({','.join(lora_ids)}) "
                       f"or {len(ids)}", "one weight per LoRA Block Weight ID, in the extension's order")


def analyze_lora(path: str | Path, *, base: str | Path | None = None, allow_pickle: bool = False,
                 lbw: str | None = None) -> LoraReport:
    """Read a LoRA file (header, and its tensors memory-mapped for the norms) and map it onto a base UNet; with
    `lbw` (a LoRA Block Weight vector), also preview what that vector keeps of it."""
    path = Path(path).expanduser()
    shapes, reader, metadata = _open(path, allow_pickle)
    lora = parse_lora(shapes)
    if not lora.modules:
        raise WeightsError(f"{path} holds no LoRA modules (no lora_down/lora_up, lora_A/lora_B, hada_ or lokr_ "
                           f"keys; e.g. {next(iter(shapes), 'nothing')!r})", "try `unetinspect weights FILE`")
    image_unets = {name: config for name in PRESETS if isinstance(config := load_preset(name), UNetConfig)}
    scores = _base_scores(lora, image_unets)  # the video presets' LoRAs (motion LoRAs) are not read yet
    # every image-UNet preset is scored, so there always is a likeliest (the first of equals)
    likely, likely_matches = max(scores.items(), key=lambda item: item[1])
    if base is not None:
        source = resolve_source(base)
        reason = source.family.refusals.get("lora")
        if reason is not None or not isinstance(source.config, UNetConfig):
            raise SourceError(f"--base {base}: not an image UNet but a {source.family.label}"
                              + (f": {reason}" if reason else ""),
                              "give the UNet the LoRA is for (a preset, folder, file)")
        config, base_label = source.config, source.label
    else:
        config, base_label = image_unets[likely], likely
    modules = adaptable_layers(config)
    tensors = reader()
    reports = [_module_report(m, modules, tensors) for m in lora.modules]
    report = LoraReport(str(path), lora.format, base_label, base is not None, likely, likely_matches, reports,
                        lora.unparsed, metadata, lbw_ids(config), lora_ids(config))
    if lbw is not None:
        report.lbw = _preview(report, parse_lbw(lbw, report.ids, report.lora_ids), lbw)
    return report


def _preview(report: LoraReport, weights: dict[str, float], vector: str) -> LbwPreview:
    strengths = report.strength_by_id()
    scaled = Counter(m.block_weight for m in [*report.matched, *report.text_encoder_modules]
                     if m.block_weight in weights and weights[m.block_weight] != 1)
    known = [v for v in strengths.values() if v is not None]
    whole = math.sqrt(sum(v * v for v in known))
    left = None if len(known) < len(strengths) or not whole else math.sqrt(
        sum((weights.get(i, 1.0) * v) ** 2 for i, v in strengths.items() if v is not None)) / whole
    # an ID the vector does not name (the short form leaves out blocks a LoRA rarely touches) keeps weight 1
    return LbwPreview(vector, weights, {i: scaled[i] for i in weights if scaled[i]}, left)


# ---- reading ------------------------------------------------------------------------------------------------------


def _open(path: Path, allow_pickle: bool):
    """Shapes of the file's tensors, a function giving all of them (memory-mapped: only what is used is read from
    disk), and the file's metadata."""
    if not path.is_file():
        raise SourceError(f"no such file: {str(path)!r}", "give a LoRA .safetensors file")
    if path.suffix in PICKLE_SUFFIXES:
        refuse_pickle(path, allow_pickle)
        from unetinspect.weights.pickle import read_pickle

        tensors = read_pickle(path)
        return {k: tuple(v.shape) for k, v in tensors.items()}, lambda: tensors, {}
    if path.suffix != ".safetensors":
        raise SourceError(f"{path}: not a LoRA file ({path.suffix or 'no suffix'})", "give a .safetensors file")
    header = read_header(path)
    return {n: t.shape for n, t in header.tensors.items()}, lambda: load_tensors(header), dict(header.metadata)


# ---- mapping ------------------------------------------------------------------------------------------------------


def adaptable_layers(config: UNetConfig) -> BaseModules:
    """The layers a LoRA can adapt in a UNet of this config (built on the meta device: no memory; cached, as finding
    a file's base builds every preset once)."""
    return _adaptable_layers(json.dumps(config.to_dict(), sort_keys=True, default=str))


@lru_cache(maxsize=16)
def _adaptable_layers(config_json: str) -> BaseModules:
    from torch import nn  # only here: reading a LoRA's names and shapes needs no torch

    from unetinspect.sources.loading import build_model

    config = UNetConfig.from_dict(json.loads(config_json))
    weights = {path: tuple(m.weight.shape) for path, m in build_model(config).named_modules()
               if isinstance(m, (nn.Linear, nn.Conv2d))}
    return base_modules(config, weights)


def _base_scores(lora: LoraFile, configs: dict[str, UNetConfig]) -> dict[str, int]:
    """How many UNet modules of the file each base has, with the right shape."""
    unet = [m for m in lora.modules if m.target == "unet"]
    scores = {}
    for name, config in configs.items():
        modules = adaptable_layers(config)
        scores[name] = sum(1 for m in unet if (p := modules.find(m.name)) and not mismatch(m, modules.weights[p]))
    return scores


def _module_report(module: LoraModule, base: BaseModules, tensors: dict) -> ModuleReport:
    path = base.find(module.name) if module.target == "unet" else None
    reason = None
    if module.target == "unet":
        reason = NO_SUCH_MODULE if path is None else mismatch(module, base.weights[path])
    alpha = float(tensors[module.keys["alpha"]].float().item()) if "alpha" in module.keys else None
    norm = _norm(module, tensors, alpha) if reason is None else None
    return ModuleReport(
        name=module.name, target=module.target, variant=module.variant, path=path,
        block=block_of(path) if path else None,
        block_weight=(BASE if module.target != "unet" else lbw_id(base.ldm_paths.get(path or ""))),
        rank=module.rank, alpha=alpha, params=module.params, norm=norm, reason=reason,
    )


# ---- norms --------------------------------------------------------------------------------------------------------


def _norm(module: LoraModule, tensors: dict, alpha: float | None) -> float | None:
    """‖scale · ΔW‖_F of one module's update (None for forms not computed: Tucker cores)."""
    import torch

    def get(role: str) -> torch.Tensor:
        return tensors[module.keys[role]].to(torch.float64)

    roles = set(module.keys)
    rank = module.rank
    scale = alpha / rank if alpha is not None and rank else 1.0
    if {"up", "down"} <= roles and "mid" not in roles:
        up, down = get("up"), get("down")
        return scale * factored_norm(up.reshape(up.shape[0], -1), down.reshape(down.shape[0], -1))
    if {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"} <= roles and not roles & {"hada_t1", "hada_t2"}:
        w1 = get("hada_w1_a") @ get("hada_w1_b").reshape(get("hada_w1_b").shape[0], -1)
        w2 = get("hada_w2_a") @ get("hada_w2_b").reshape(get("hada_w2_b").shape[0], -1)
        return scale * float(torch.linalg.norm(w1 * w2))
    if any(r.startswith("lokr_") for r in roles) and "lokr_t2" not in roles:
        factors = []
        for name in ("lokr_w1", "lokr_w2"):
            if name in roles:
                factors.append(float(torch.linalg.norm(get(name))))
            elif {f"{name}_a", f"{name}_b"} <= roles:
                a, b = get(f"{name}_a"), get(f"{name}_b")
                factors.append(factored_norm(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)))
            else:
                return None
        return scale * factors[0] * factors[1]  # ‖A ⊗ B‖_F = ‖A‖_F ‖B‖_F
    if "diff" in roles:
        return float(torch.linalg.norm(get("diff")))
    return None


def factored_norm(up, down) -> float:
    """‖up @ down‖_F without forming the product: ‖U D‖² = trace((UᵀU)(DDᵀ)) = Σ (UᵀU) ⊙ (DDᵀ), both rank × rank."""
    gram_up = up.T @ up  # r × r
    gram_down = down @ down.T  # r × r
    return math.sqrt(max(float((gram_up * gram_down).sum()), 0.0))


def _block_report(block: str, weight: str | None, members: list[ModuleReport]) -> BlockReport:
    norms = [m.norm for m in members]
    return BlockReport(
        block=block, block_weight=weight, modules=len(members),
        ranks=tuple(sorted({m.rank for m in members if m.rank is not None})),
        alphas=tuple(sorted({m.alpha for m in members if m.alpha is not None})),
        params=sum(m.params for m in members),
        norm=math.sqrt(sum(n * n for n in known)) if norms and len(known := [n for n in norms if n is not None]) == len(norms)
        else None,
    )


BLOCK_ORDER = ("conv_in", "time_embedding", "add_embedding", "down_blocks", "mid_block", "up_blocks", "conv_out")


def _forward_rank(block: str, weight: str | None) -> tuple[int, int, str]:
    head, _, index = block.partition(".")
    order = BLOCK_ORDER.index(head) if head in BLOCK_ORDER else len(BLOCK_ORDER)
    return order, int(index) if index.isdigit() else 0, weight or ""
