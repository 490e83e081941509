"""What is in a checkpoint, read from its headers alone: layout, parts, dtypes, sizes, config, parameters per block.

Nothing here reads tensor data from safetensors files, so a multi-GB checkpoint is described in milliseconds (a
pickle the user allowed is memory-mapped; its tensors are still not read). A file whose config cannot be
determined — an unsupported structure, diffusers keys with no config.json beside them — is still described,
with the reason in `config_note`: that is when a look inside helps most.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, NamedTuple

from unetinspect.configs.unet import UNetConfig, read_json_config
from unetinspect.configs.video import ADAPTER_CLASS
from unetinspect.errors import ConfigError, OptionsError, SourceError, WeightsError
from unetinspect.families import FamilyConfig, family_with_layout, load_preset, original_family, registered
from unetinspect.files import not_regular
from unetinspect.presets import PRESETS
from unetinspect.sources.kinds import MOTION_MODULE, FileKind, file_kind
from unetinspect.sources.resolve import PICKLE_SUFFIXES, WEIGHTS_NAME, Source, find_weight_files, resolve_source
from unetinspect.weights import ldm
from unetinspect.weights.pickle import read_pickle, refuse_pickle
from unetinspect.weights.safetensors import TORCH_DTYPE_NAMES, read_header

# The order of the UNet's top-level modules in a forward pass, for listing blocks as the data flows.
BLOCK_ORDER = ("conv_in", "time_proj", "time_embedding", "class_embedding", "encoder_hid_proj", "add_embedding",
               "down_blocks", "mid_block", "up_blocks", "conv_norm_out", "conv_out",
               # a ControlNet's own parts, after its copy of the encoder
               "controlnet_cond_embedding", "controlnet_down_blocks", "controlnet_mid_block")
# The state-dict key of every saved buffer our models have — AnimateDiff's position tables, SinusoidalPositionalEmbedding's
# `pe` in models/attention.py: what a checkpoint holds that is no parameter. Written out here, not read off the
# models, since reading a checkpoint never imports torch; tests/test_video_views.py checks it against every model.
SAVED_BUFFER = re.compile(r"(?:^|\.)pos_embed\.pe$")
ADAPTER_NOTE = ("a motion adapter: AnimateDiff's motion modules alone, which diffusers' UNetMotionModel.from_unet2d "
                "puts into an image UNet of its block_out_channels")
# Parts of a checkpoint, as listed: the UNet first, then the rest of a full SD checkpoint.
# The group of tensors outside every UNet block (and, for full checkpoints, outside every known component).
OTHER = "other"
OTHER_EXAMPLES = 3
COMPONENT_ORDER = ("UNet", *dict.fromkeys(label for _, label in ldm.COMPONENT_PREFIXES), OTHER)


class TensorEntry(NamedTuple):
    """One tensor of the checkpoint; `ours` is its name in our (diffusers') UNet, None outside the UNet.

    A tuple, not a dataclass: a hostile header names up to 100,000 of them, and a tuple is made 3x faster.
    """

    name: str
    ours: str | None
    component: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    file: str
    buffer: bool = False  # a saved buffer (AnimateDiff's position table): in the file, but no parameter

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def short_name(self) -> str:
        """The name without the `model.diffusion_model.` prefix every UNet tensor of a full checkpoint has."""
        return self.name.removeprefix(ldm.UNET_PREFIX)


@dataclass(frozen=True)
class Part:
    """A component of the checkpoint (UNet, VAE, text encoder, ...) or a top-level block of the UNet."""

    name: str
    tensors: int
    params: int
    nbytes: int
    examples: tuple[str, ...] = ()  # for "other": a few of its tensors, as it stands for any number of them


@dataclass(frozen=True)
class PresetMatch:
    """The preset closest to a config: `differences` names the fields that differ (none: exactly that preset)."""

    name: str
    differences: tuple[str, ...]

    @property
    def exact(self) -> bool:
        return not self.differences


@dataclass(frozen=True)
class WeightsReport:
    """Everything `unetinspect weights` shows, as plain data."""

    source: str
    layout: str  # "ldm" (original single file) or "diffusers"
    format: str  # a phrase: "single file, original (LDM) layout", "diffusers folder, sharded in 3 files", ...
    files: tuple[tuple[str, int], ...]  # (path, bytes on disk)
    tensors: tuple[TensorEntry, ...]
    config: FamilyConfig | None  # any family's: a ControlNet's, a video UNet's too
    config_origin: str  # where the config came from; "" when there is none
    config_note: str | None  # why there is no config
    nearest_preset: PresetMatch | None
    metadata: dict[str, str]
    config_mismatch: str | None = None  # how the tensors disagree with the config (None: they fit it)
    kind: FileKind = FileKind("unknown", None)  # what the file is (unet, controlnet, lora, ...), said first

    @property
    def disk_bytes(self) -> int:
        return sum(size for _, size in self.files)

    @property
    def memory_bytes(self) -> int:
        """Bytes of all tensors in their stored dtypes: what loading the whole file takes."""
        return sum(t.nbytes for t in self.tensors)

    @property
    def dtypes(self) -> dict[str, int]:
        """Tensor count per dtype, commonest first."""
        return dict(Counter(t.dtype for t in self.tensors).most_common())

    @property
    def components(self) -> list[Part]:
        """UNet, VAE, text encoder(s), EMA weights, other: what the file carries, UNet first."""
        return _parts(self.tensors, lambda t: t.component, order=COMPONENT_ORDER)

    @property
    def blocks(self) -> list[Part]:
        """The UNet's parameters per top-level block (conv_in, time_embedding, down_blocks.0, ...), in forward order;
        a motion adapter's per motion module (down_blocks.0.motion_modules.1, ...)."""
        block = _motion_module_of if self.kind.kind == "motion adapter" else _block_of
        return _parts([t for t in self.tensors if t.ours is not None], lambda t: block(t.ours or ""), order=())

    def matching(self, pattern: str | None) -> list[TensorEntry]:
        """Tensors matching a shell-style glob by any of their names: in the file, in the file without the
        `model.diffusion_model.` prefix, or ours (all tensors for None)."""
        if pattern is None:
            return list(self.tensors)
        return [t for t in self.tensors
                if any(fnmatchcase(name, pattern) for name in (t.name, t.short_name, t.ours) if name is not None)]


def inspect_weights(spec: str | Path, *, config: str | Path | UNetConfig | None = None, variant: str | None = None,
                    allow_pickle: bool = False, motion_adapter: str | Path | None = None) -> WeightsReport:
    """Describe a checkpoint file or diffusers folder from its headers; `config` overrides the one it implies.

    One checkpoint's files: a motion adapter is described on its own (`spec`), not joined to another's."""
    if motion_adapter is not None:
        raise OptionsError("weights describes one checkpoint's own files: --motion-adapter joins two",
                           f"run `unetinspect weights {motion_adapter}` for the adapter's, or another command "
                           "(summary, profile, memory, …) with --motion-adapter for the joined UNet")
    path = Path(spec).expanduser()
    files, source, note = _open(path, str(spec), config, variant, allow_pickle)
    stored, metadata = _read_tensors(files)
    original = original_family(t.name for t in stored)
    layout = source.layout if source else (original.layout if original else "diffusers")
    cfg = source.config if source else None
    kind = file_kind(t.name for t in stored)
    if kind.kind == "motion adapter":  # its keys are the motion modules' own in an AnimateDiff UNet
        ours, note = {t.name: t.name for t in stored}, ADAPTER_NOTE
    # a model of its own is a registered family's; an adapter's keys are no UNet's: no blocks, no config
    elif kind.kind not in {f.kind for f in registered()} and source is None:
        ours, note = {}, f"not a model: a {kind.label} file (see the first line)"
    else:
        ours = _our_names({t.name: t.shape for t in stored}, layout, cfg)
    tensors = tuple(
        TensorEntry(t.name, ours.get(t.name), ldm.component_of(t.name) if layout == "ldm" else kind.label, t.dtype,
                    t.shape, t.nbytes, t.file, SAVED_BUFFER.search(ours.get(t.name) or t.name) is not None)
        for t in stored
    )
    # a config inferred from the tensors agrees with them
    inferred = source is not None and source.layout == source.family.layout and config is None
    mismatch = _mismatch(source) if source is not None and not inferred else None
    return WeightsReport(
        source=str(spec), layout=layout, format=_format(path, files, layout),
        files=tuple((str(f), f.stat().st_size) for f in files), tensors=tensors, config=cfg,
        config_origin=_config_origin(source, config), config_note=note,
        nearest_preset=nearest_preset(cfg) if cfg is not None and mismatch is None else None, metadata=metadata,
        config_mismatch=mismatch, kind=kind,
    )


def _mismatch(source: Source) -> str | None:
    """How the tensors disagree with the config that came with them (a config.json beside the file, --config),
    from their shapes alone; None when they fit. Without this check, the report would name the config's preset
    for tensors of another model."""
    from unetinspect.sources.loading import build_model, check_weights

    try:
        check_weights(source, build_model(source.config))
    except WeightsError as exc:
        return exc.message
    return None


def nearest_preset(config: FamilyConfig) -> PresetMatch:
    """The built-in preset of the same kind of model (a video UNet is no image UNet, however alike their fields)
    with the fewest differing config fields (ties: the first listed: `min` keeps the first of equals)."""
    alike = [name for name in PRESETS if type(load_preset(name)) is type(config)]
    # a ControlNet (no preset of its own): the UNet it copies
    mine = (config if alike else getattr(config, "unet", config)).to_dict()

    def match(name: str) -> PresetMatch:
        theirs = load_preset(name).to_dict()
        return PresetMatch(name, tuple(k for k in mine
                                       if not k.startswith("_") and (k not in theirs or mine[k] != theirs[k])))

    return min((match(name) for name in alike or PRESETS), key=lambda m: len(m.differences))


# ---- reading ------------------------------------------------------------------------------------------------------


class _Stored(NamedTuple):
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    file: str


def _open(path: Path, spec: str, config: str | Path | UNetConfig | None, variant: str | None,
          allow_pickle: bool) -> tuple[tuple[Path, ...], Source | None, str | None]:
    """The weight files of a checkpoint or folder, its source, and why there is none.

    A folder must resolve (its config.json says what it is). A single file that is readable and safe is described
    even when its config cannot be determined — unless `--config` was given, which must fit.
    """
    if not path.exists():
        hint = (f"{spec!r} is a preset, which has no weights: try `unetinspect summary {spec}`" if spec in PRESETS
                else "give a .safetensors file, a pickle checkpoint with --allow-pickle, or a diffusers folder")
        raise SourceError(f"no such file or folder: {spec!r}", hint)
    if not path.is_dir() and not path.is_file():
        raise not_regular(path, path.stat().st_mode, SourceError)
    if path.is_dir() and config is None and _is_adapter_folder(path):
        files = find_weight_files(path, variant, allow_pickle)
        if not files:
            raise WeightsError(f"{path} has a config but no weight files ({WEIGHTS_NAME}.safetensors)")
        return files, None, ADAPTER_NOTE
    if path.is_dir():
        source = resolve_source(path, config=config, variant=variant, allow_pickle=allow_pickle)
        if not source.has_weights:
            raise WeightsError(f"{path} has a config but no weight files ({WEIGHTS_NAME}.safetensors)")
        return source.weight_files, source, None
    if path.suffix not in (".safetensors", *PICKLE_SUFFIXES):
        raise SourceError(f"{spec}: not a checkpoint ({path.suffix or 'no suffix'})",
                          "give a .safetensors file, a .ckpt/.pt/.pth/.bin with --allow-pickle, or a diffusers folder")
    if path.suffix in PICKLE_SUFFIXES:
        refuse_pickle(path, allow_pickle)
    try:
        return (path,), resolve_source(path, config=config, allow_pickle=allow_pickle), None
    # an unreadable file fails again when its tensors are read; a config beside it that is no UNet's (a motion
    # adapter's) leaves the file to be described from its tensors
    except (WeightsError, SourceError, ConfigError) as exc:
        if config is not None:
            raise
        return (path,), None, exc.one_line()


def _is_adapter_folder(folder: Path) -> bool:
    """A diffusers folder of a MotionAdapter (its config.json says so): described, though no model of its own."""
    config = folder / "config.json"
    if not config.is_file():
        return False
    data = read_json_config(config)
    return isinstance(data, dict) and data.get("_class_name") == ADAPTER_CLASS


def _read_tensors(files: tuple[Path, ...]) -> tuple[list[_Stored], dict[str, str]]:
    """Every tensor of the files, and their safetensors `__metadata__` merged (shards repeat {"format": "pt"})."""
    tensors: list[_Stored] = []
    metadata: dict[str, str] = {}
    for path in files:
        if path.suffix == ".safetensors":
            header = read_header(path)
            tensors += [_Stored(t.name, t.dtype, t.shape, t.nbytes, path.name) for t in header.tensors.values()]
            metadata.update(header.metadata)
        else:
            tensors += _pickle_tensors(path)
    return tensors, metadata


def _pickle_tensors(path: Path) -> list[_Stored]:
    """The tensors of a pickle the user allowed (weights_only, memory-mapped: their data is not read)."""
    return [_Stored(name, _dtype_name(t.dtype), tuple(t.shape), t.numel() * t.element_size(), path.name)
            for name, t in read_pickle(path).items()]


def _dtype_name(dtype: Any) -> str:
    name = str(dtype).removeprefix("torch.")
    return TORCH_DTYPE_NAMES.get(name, name.upper())


def _our_names(shapes: dict[str, tuple[int, ...]], layout: str, config: FamilyConfig | None) -> dict[str, str]:
    """File name → our name of the model's tensors (identity for diffusers files; nothing for a file in an original
    layout without a config)."""
    if layout == "diffusers":
        return {name: name for name in shapes}
    if config is None:
        return {}
    family = family_with_layout(layout)
    if family is None:
        return {}
    return {theirs: ours for ours, theirs in family.original_key_map(shapes, config).items()}


# ---- describing ---------------------------------------------------------------------------------------------------


def _format(path: Path, files: tuple[Path, ...], layout: str) -> str:
    kind = "pickle" if any(f.suffix in PICKLE_SUFFIXES for f in files) else "safetensors"
    if path.is_file():
        return f"single {kind} file, {'original (LDM)' if layout.startswith('ldm') else 'diffusers'} layout"
    where = "diffusers pipeline folder (unet/)" if (path / "model_index.json").is_file() else "diffusers folder"
    shards = len(files)
    parts = [where, f"sharded in {shards} {kind} files" if shards > 1 else f"one {kind} file"]
    variant = re.match(rf"{WEIGHTS_NAME}\.([^.-]+)[.-]", files[0].name)
    if variant and variant[1] not in ("safetensors", "bin"):
        parts.append(f"{variant[1]} variant")
    return ", ".join(parts)


def _config_origin(source: Source | None, config: str | Path | UNetConfig | None) -> str:
    if source is None:
        return ""
    if config is not None:
        return f"--config {config}" if not isinstance(config, UNetConfig) else "given"
    if source.layout.startswith("ldm"):
        return "inferred from tensor shapes"
    return "config.json"


def _motion_module_of(name: str) -> str:
    match = MOTION_MODULE.match(name)
    return match.group(0) if match else OTHER


def _block_of(name: str) -> str:
    """The top-level UNet block a tensor belongs to (`down_blocks.1`, `mid_block`, ...), or OTHER.

    Everything that is not a block of the UNet is one group: a hostile file of a million oddly named tensors is
    then one row, not a million.
    """
    head, _, rest = name.partition(".")
    if head in ("down_blocks", "up_blocks"):
        index = rest.partition(".")[0]
        return f"{head}.{index}" if index.isdigit() and len(index) <= 2 else OTHER
    return head if head in BLOCK_ORDER else OTHER


def _parts(tensors: Iterable[TensorEntry], key: Callable[[TensorEntry], str], order: tuple[str, ...]) -> list[Part]:
    """Tensors grouped by `key`, counted, and listed in `order`, then in forward order, then by first appearance;
    OTHER comes last, with a few example names."""
    groups: dict[str, list[TensorEntry]] = {}
    for tensor in tensors:
        groups.setdefault(key(tensor), []).append(tensor)

    def rank(name: str) -> tuple[int, int, int, int]:
        head, _, index = name.partition(".")
        forward = BLOCK_ORDER.index(head) if head in BLOCK_ORDER else len(BLOCK_ORDER)
        return (name == OTHER, order.index(name) if name in order else len(order), forward,
                int(index) if index.isdigit() and len(index) <= 2 else 0)

    return [Part(name, len(group), sum(t.numel for t in group if not t.buffer), sum(t.nbytes for t in group),
                 tuple(t.name for t in group[:OTHER_EXAMPLES]) if name == OTHER else ())
            for name, group in sorted(groups.items(), key=lambda item: rank(item[0]))]
