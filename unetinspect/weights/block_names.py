"""The three names of every block: diffusers' module paths, the original LDM paths, and LoRA Block Weight IDs.

Most Stable Diffusion users never see diffusers' names. A1111, Forge, ComfyUI and sgm run the original LDM
`UNetModel` (`input_blocks.4.1`, `middle_block.1`, `output_blocks.2.1`); the LoRA Block Weight extension and the
merge tools weight blocks by IDs (`IN04`, `M00`, `OUT05`), one per LDM input/output block, plus `BASE` for the
text encoder. All three are read here off ONE table, `ldm.module_table(config)` — the very table that renames an
original single-file checkpoint's keys — so a name printed by a view is the name the checkpoint loader uses.

How the table gives a name to a module it does not list:
- a layer inside a listed module takes the module's name and its own (`input_blocks.4.0.in_layers.2` for
  `down_blocks.1.resnets.0.conv1`; resnet layers are renamed by position);
- a module whose listed parts all sit at the same depth under one original module takes that module's name
  (`down_blocks.0.downsamplers.0` → `input_blocks.3.0`, whose `op` is its `conv`; `time_embedding` → `time_embed`);
- a diffusers block that spans several numbered original blocks is named by their range (`down_blocks.1` →
  `input_blocks.4-6`, IDs `IN04-IN06`);
- what has no weights in the original (`time_proj`, the activation `conv_act`) has no original name (None).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from unetinspect.configs.unet import UNetConfig
from unetinspect.errors import OptionsError
from unetinspect.weights import ldm

NAMINGS = ("diffusers", "ldm", "lbw")
# The original UNet's lists of numbered blocks (and the empty name above them): never a module's name themselves.
_LISTS = ("", "input_blocks", "output_blocks")

# The IDs of the LoRA Block Weight extension, in its order (BLOCKID26 of SD 1.x/2.x, BLOCKID20XL of SDXL): BASE is
# the text encoder(s); the rest are the original UNet's input blocks, its middle block and its output blocks.
BASE = "BASE"


@dataclass(frozen=True)
class BlockName:
    """One module's name in the original layout (`input_blocks.4.1`) and as a LoRA Block Weight ID (`IN04`)."""

    ldm: str | None
    lbw: str | None

    def __getitem__(self, naming: str) -> str | None:  # names[path]["ldm"], as the JSON reads
        return {"ldm": self.ldm, "lbw": self.lbw}[naming]


def names_of(config: UNetConfig, paths: Iterable[str]) -> dict[str, BlockName]:
    """diffusers module path → its LDM path and LBW ID, for each of `paths` (modules at any depth)."""
    naming = Naming(config)
    return {path: naming.of(path) for path in paths}


def lbw_ids(config: UNetConfig) -> list[str]:
    """The extension's IDs for this UNet, in its order: BASE, IN00…, M00, OUT00… (26 for SD 1.x, 20 for SDXL)."""
    numbers: dict[str, set[int]] = {"input": set(), "output": set()}
    middle = False
    for theirs in ldm.module_table(config):
        if m := re.match(r"(input|output)_blocks\.(\d+)\.", theirs):
            numbers[m[1]].add(int(m[2]))
        middle = middle or theirs.startswith("middle_block.")
    return [BASE, *(f"IN{n:02d}" for n in sorted(numbers["input"])), *(["M00"] if middle else []),
            *(f"OUT{n:02d}" for n in sorted(numbers["output"]))]


def lora_ids(config: UNetConfig) -> list[str]:
    """The IDs a LoRA of the attention layers touches, in the extension's order (17 for SD 1.x, 12 for SDXL): BASE
    and every ID holding a transformer (kohya's and PEFT's default targets all lie inside them)."""
    naming = Naming(config)
    touched = {naming.of(ours).lbw for ours, _ in ldm.module_table(config).values() if ".attentions." in ours}
    return [i for i in lbw_ids(config) if i == BASE or i in touched]


def lbw_id(ldm_path: str | None) -> str | None:
    """The LoRA Block Weight ID of an original module path: INnn, M00, OUTnn; None outside the numbered blocks."""
    if ldm_path is None:
        return None
    if m := re.match(r"(input|output)_blocks\.(\d+)(?:-(\d+))?(\.|$)", ldm_path):
        side = "IN" if m[1] == "input" else "OUT"
        first = f"{side}{int(m[2]):02d}"
        return f"{first}-{side}{int(m[3]):02d}" if m[3] else first
    return "M00" if ldm_path == "middle_block" or ldm_path.startswith("middle_block.") else None


def _name_of(path: str, table: Mapping[str, tuple[str, Mapping[str, str]]]) -> BlockName:
    ldm_path = _ldm_path(path, table)
    return BlockName(ldm_path, lbw_id(ldm_path))


def _ldm_path(path: str, table: Mapping[str, tuple[str, Mapping[str, str]]]) -> str | None:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):  # the module itself, or the listed module it lies in
        entry = table.get(".".join(parts[:cut]))
        if entry is not None:
            theirs, layers = entry
            rest = parts[cut:]
            if rest and layers:
                by_ours = {v: k for k, v in layers.items()}
                rest = [by_ours.get(rest[0], rest[0]), *rest[1:]]
            return ".".join([theirs, *rest])
    # a container of listed modules: the original module they share, or the range of numbered blocks they span
    inside = [(ours[len(path) + 1:], theirs) for ours, (theirs, _) in table.items() if ours.startswith(path + ".")]
    if not inside:
        return None
    parents = {".".join(theirs.split(".")[:-len(rest.split("."))]) for rest, theirs in inside}
    if len(parents) == 1 and (parent := parents.pop()) not in _LISTS:
        return parent
    numbered = {re.match(r"(input_blocks|output_blocks|middle_block)(?:\.(\d+))?", theirs) for _, theirs in inside}
    roots = {m[1] for m in numbered if m}
    if len(roots) != 1:
        return None
    root = roots.pop()
    if root == "middle_block":
        return root
    indices = sorted({int(m[2]) for m in numbered if m})
    return f"{root}.{indices[0]}" if len(indices) == 1 else f"{root}.{indices[0]}-{indices[-1]}"


class Naming:
    """The original names of one model's modules, looked up on demand from its config's LDM table (a model of a
    few thousand modules is named in milliseconds; a view names only the rows it shows)."""

    def __init__(self, config: UNetConfig) -> None:
        self.config = config
        self._table = {ours: (theirs, layers) for theirs, (ours, layers) in ldm.module_table(config).items()}
        self._names: dict[str, BlockName] = {}

    def of(self, path: str) -> BlockName:
        if path not in self._names:
            self._names[path] = _name_of(path.split("#")[0], self._table)  # "nonlinearity#2": a module's 2nd call
        return self._names[path]

    def resolve(self, name: str, paths: Iterable[str]) -> list[str]:
        """The outermost of `paths` (the model's module paths) that an original name or an ID means:
        `input_blocks.4.1` → `down_blocks.1.attentions.0`, `IN04` → its resnet and its transformer,
        `IN04-IN06` → `down_blocks.1`; [] when none is called so."""
        hits = [p for p in paths if name in (self.of(p).ldm, self.of(p).lbw)]
        return [p for p in hits if not any(p.startswith(q + ".") for q in hits)]

    def shown(self, path: str, naming: str) -> str:
        """`path` in `naming`; a module with no name there (time_proj has no weights in the original) keeps its
        diffusers path, so every row still says what it is."""
        if naming == "diffusers":
            return path
        return self.of(path)[naming] or path


def naming_of(config: object) -> Naming | None:
    """The original names of a config's model, or None where the family has no original layout we map: the image
    UNets have one; the video UNets (SVD's sgm files, AnimateDiff's motion modules) and ControlNets are not mapped
    yet."""
    return Naming(config) if isinstance(config, UNetConfig) else None


def diffusers_blocks(names: Iterable[str], naming: Naming | None, paths: Iterable[str],
                     keep: Callable[[str], bool] = lambda path: True) -> tuple[str, ...]:
    """A `--blocks` list in any naming, as diffusers path prefixes: a diffusers path (or prefix) stays as it is,
    an original path or an LBW ID becomes the modules it names that `keep` accepts (IN04 in an attention view: its
    transformer, not its resnet); a name that is none of them is left for the caller to refuse with its own list
    of what there is."""
    paths = list(paths)
    result: list[str] = []
    for name in names:
        is_ours = any(p == name or p.startswith(name + ".") for p in paths)
        named = [] if is_ours or naming is None else [p for p in naming.resolve(name, paths) if keep(p)]
        result.extend(named or [name])
    return tuple(dict.fromkeys(result))


def check_naming(naming: str, available: Naming | None, what: str = "this model") -> None:
    """Refuse `--names ldm|lbw` on a model without an original layout, and an unknown naming, in one line."""
    if naming not in NAMINGS:
        raise OptionsError(f"unknown --names {naming!r}", f"use one of {', '.join(NAMINGS)}")
    if naming != "diffusers" and available is None:
        raise OptionsError(f"--names {naming}: {what} has no original (LDM) layout to name its blocks by",
                           "original names exist for the image UNets (SD 1.x/2.x, SDXL and their kin); "
                           "use --names diffusers")
