"""LoRA files in the formats people have, parsed from tensor names and mapped onto our UNet's module paths.

A LoRA stores, per adapted layer (a Linear or Conv2d of the UNet or text encoder), a low-rank update
ΔW = scale · up @ down with scale = alpha / rank. The same update is written many ways:

    kohya (sd-scripts)   lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight   (SD 1.x: diffusers names)
                         lora_unet_input_blocks_4_1_proj_in.lora_up.weight / .alpha      (SDXL: original names)
                         lora_te_… / lora_te1_… / lora_te2_…                               text encoders
    diffusers / PEFT     unet.down_blocks.0.attentions.0.proj_in.lora_A.weight / lora_B   (A = down, B = up)
    diffusers (older)    unet.….to_q.lora.down.weight, ….attn1.processor.to_q_lora.down.weight
    LyCORIS              ….hada_w1_a / hada_w1_b / hada_w2_a / hada_w2_b  (LoHa: (w1a w1b) ⊙ (w2a w2b))
                         ….lokr_w1 / lokr_w2 (or their _a/_b factors)      (LoKr: w1 ⊗ w2, a Kronecker product)

kohya's names replace every dot by an underscore, so they are matched against our module paths written the same
way — both in diffusers' naming and in the original (LDM) naming, which `ldm`'s table gives for every module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from unetinspect.configs.unet import UNetConfig
from unetinspect.weights import ldm

# What follows a module's name in a key → the tensor's role in the update.
ROLES = (
    (r"\.lora_down\.weight|\.lora_A(\.default)?\.weight|\.lora\.down\.weight|_lora\.down\.weight", "down"),
    (r"\.lora_up\.weight|\.lora_B(\.default)?\.weight|\.lora\.up\.weight|_lora\.up\.weight", "up"),
    (r"\.lora_mid\.weight", "mid"),
    (r"\.alpha", "alpha"),
    (r"\.dora_scale|\.lora_magnitude_vector(\.default)?(\.weight)?", "dora"),
    (r"\.hada_(w[12]_[ab]|t[12])", None),  # role: the suffix itself (hada_w1_a, ...)
    (r"\.lokr_(w[12](_[ab])?|t2)", None),
    (r"\.diff|\.diff_b", "diff"),
)
ROLE_PATTERN = re.compile(r"^(?P<module>.+?)(?P<role>" + "|".join(f"(?:{p})" for p, _ in ROLES) + r")$")

# Name prefixes → what the module belongs to.
TARGETS = (
    ("lora_unet_", "unet"), ("lora_te2_", "text encoder 2"), ("lora_te1_", "text encoder"), ("lora_te_", "text encoder"),
    ("base_model.model.", "unet"), ("unet.", "unet"), ("text_encoder_2.", "text encoder 2"),
    ("text_encoder.", "text encoder"),
)


@dataclass
class LoraModule:
    """One adapted layer: its name in the file, what it adapts, and its tensors by role."""

    name: str  # as in the file, without the role suffix (and without the target prefix)
    target: str  # "unet" | "text encoder" | "text encoder 2"
    keys: dict[str, str] = field(default_factory=dict)  # role → key in the file
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # role → shape

    @property
    def variant(self) -> str:
        """LoRA, LoCon (a LoRA on a 3x3 conv), LoHa, LoKr, DoRA, or 'full diff'."""
        roles = set(self.keys)
        if any(r.startswith("hada_") for r in roles):
            return "LoHa"
        if any(r.startswith("lokr_") for r in roles):
            return "LoKr"
        if "diff" in roles:
            return "full diff"
        if "dora" in roles:
            return "DoRA"
        if len(self.shapes.get("down", ())) == 4 and self.shapes["down"][2:] != (1, 1):
            return "LoCon"
        return "LoRA"

    @property
    def rank(self) -> int | None:
        """The inner dimension of the update (None where it has no single one, e.g. a full LoKr)."""
        if "down" in self.shapes:
            return self.shapes["down"][0]
        if "hada_w1_b" in self.shapes:
            return self.shapes["hada_w1_b"][0]
        for role in ("lokr_w1_b", "lokr_w2_b"):
            if role in self.shapes:
                return self.shapes[role][0]
        return None

    @property
    def params(self) -> int:
        return sum(math.prod(shape) for role, shape in self.shapes.items() if role != "alpha")

    def update_shape(self) -> tuple[int, int] | None:
        """(out features, in features × kernel) of ΔW, from the factors' shapes (None when they do not say)."""
        s = self.shapes
        if "up" in s and "down" in s:
            return s["up"][0], math.prod(s["down"][1:])
        if "hada_w1_a" in s and "hada_w1_b" in s:
            return s["hada_w1_a"][0], math.prod(s["hada_w1_b"][1:])
        w1 = _kron_factor(s, "lokr_w1")
        w2 = _kron_factor(s, "lokr_w2")
        if w1 and w2:
            return w1[0] * w2[0], w1[1] * w2[1]
        if "diff" in s:
            return s["diff"][0], math.prod(s["diff"][1:])
        return None


def _kron_factor(shapes: Mapping[str, tuple[int, ...]], name: str) -> tuple[int, int] | None:
    """(rows, columns) of one LoKr factor, stored whole or as _a @ _b (a 4-D w2 counts its kernel as columns)."""
    if name in shapes:
        return shapes[name][0], math.prod(shapes[name][1:])
    if f"{name}_a" in shapes and f"{name}_b" in shapes:
        return shapes[f"{name}_a"][0], math.prod(shapes[f"{name}_b"][1:])
    return None


@dataclass
class LoraFile:
    """The modules of a LoRA file, the keys that fit no known format, and the naming it uses."""

    modules: list[LoraModule]
    unparsed: list[str]
    format: str


def parse_lora(shapes: Mapping[str, tuple[int, ...]]) -> LoraFile:
    """Group a file's keys into modules by role; name the format from the key style."""
    modules: dict[tuple[str, str], LoraModule] = {}
    unparsed: list[str] = []
    for key, shape in shapes.items():
        match = ROLE_PATTERN.match(key)
        if not match:
            unparsed.append(key)
            continue
        target, name = _split_target(match["module"])
        role = _role(match["role"])
        module = modules.setdefault((target, name), LoraModule(name, target))
        module.keys[role] = key
        module.shapes[role] = tuple(shape)
    return LoraFile(list(modules.values()), unparsed, _format_name(list(shapes)))


def _role(suffix: str) -> str:
    for pattern, role in ROLES:
        if re.fullmatch(pattern, suffix):
            return role or suffix.lstrip(".")
    raise AssertionError(suffix)  # ROLE_PATTERN only matches these


def _split_target(module: str) -> tuple[str, str]:
    for prefix, target in TARGETS:
        if module.startswith(prefix):
            return target, module[len(prefix):]
    return "unet", module  # diffusers' attention-processor files name UNet modules bare


def _format_name(keys: list[str]) -> str:
    if any(k.startswith(("lora_unet_", "lora_te")) for k in keys):
        naming = ("original (SGM) block names" if any(k.startswith("lora_unet_") and
                                                        re.match(r"lora_unet_(input|output)_blocks|lora_unet_middle_block", k)
                                                        for k in keys) else "diffusers block names")
        return f"kohya ({naming})"
    if any(".lora_A." in k or ".lora_B." in k for k in keys):
        return "diffusers / PEFT (lora_A, lora_B)"
    if any("lora.down" in k or "_lora.down" in k for k in keys):
        return "diffusers (older lora.down / lora.up)"
    return "unknown naming"


# ---- the base model's modules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseModules:
    """Every Linear/Conv2d of a UNet config: path → weight shape, and lookups from kohya-style names."""

    weights: dict[str, tuple[int, ...]]
    by_flat_name: dict[str, str]  # "down_blocks_0_attentions_0_proj_in" or "input_blocks_1_1_proj_in" → our path
    ldm_paths: dict[str, str]  # our path → original (LDM) path

    def find(self, name: str) -> str | None:
        """Our path for a module name in dotted or kohya (underscored) form, diffusers or original naming."""
        name = _normalise_dotted(name)
        if name in self.weights:
            return name
        return self.by_flat_name.get(name.replace(".", "_"))


def _normalise_dotted(name: str) -> str:
    """diffusers' attention-processor names → module paths (….attn1.processor.to_out → ….attn1.to_out.0)."""
    name = name.replace(".processor.", ".")
    return re.sub(r"\.to_out$", ".to_out.0", name) if ".attn" in name else name


def base_modules(config: UNetConfig, weights: dict[str, tuple[int, ...]]) -> BaseModules:
    """The adaptable layers of a UNet of this config, found under every name a LoRA format gives them, from
    `weights`: each Linear or Conv2d path of the model → its weight's shape."""
    ldm_paths = _ldm_paths(config, weights)
    flat = {path.replace(".", "_"): path for path in weights}
    flat.update({ldm_path.replace(".", "_"): path for path, ldm_path in ldm_paths.items()})
    return BaseModules(weights, flat, ldm_paths)


def _ldm_paths(config: UNetConfig, paths: Mapping[str, object]) -> dict[str, str]:
    """Our module path → its original (LDM) path, by inverting `ldm`'s renaming table."""
    ours_to_ldm = {ours: (theirs, {v: k for k, v in layers.items()})
                   for theirs, (ours, layers) in ldm.module_table(config).items()}
    result = {}
    for path in paths:
        parts = path.split(".")
        for cut in range(len(parts), 0, -1):
            entry = ours_to_ldm.get(".".join(parts[:cut]))
            if entry is None:
                continue
            theirs, layers = entry
            rest = parts[cut:]
            if rest and layers:
                rest = [layers.get(rest[0], rest[0]), *rest[1:]]
            result[path] = ".".join([theirs, *rest])
            break
    return result


def block_of(path: str) -> str:
    """The top-level block of a module path: down_blocks.1, mid_block, up_blocks.0, conv_in, time_embedding, ..."""
    parts = path.split(".")
    return ".".join(parts[:2]) if parts[0] in ("down_blocks", "up_blocks") else parts[0]


def mismatch(module: LoraModule, weight_shape: tuple[int, ...]) -> str | None:
    """Why the update does not fit the layer's weight (None when it fits, or the factors do not say)."""
    update = module.update_shape()
    expected = (weight_shape[0], math.prod(weight_shape[1:]))
    if update is not None and update != expected:
        return f"shape mismatch: update {update[0]}×{update[1]}, layer {expected[0]}×{expected[1]}"
    down = module.shapes.get("down")
    if down is not None and (len(down) == 4) != (len(weight_shape) == 4):  # SD 1.x proj_in is a conv, SDXL's linear
        theirs, ours = ("Conv2d", "Linear") if len(down) == 4 else ("Linear", "Conv2d")
        return f"shape mismatch: an update for a {theirs}, the layer is a {ours}"
    return None
