"""What a SOURCE names — a preset, a config.json, a diffusers folder, a checkpoint file, or a config held in Python
(a dict such as diffusers' `unet.config`, any family's config object: a `UNetConfig`, an `SVDConfig`, …) —
resolved to a config and the weight files that go with it. Every entry point resolves here, so each takes every
kind of source. Nothing here reads tensor data.
"""

from __future__ import annotations

import dataclasses
import json
import os
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from unetinspect.configs.unet import read_json_config
from unetinspect.configs.video import ADAPTER_CLASS
from unetinspect.errors import ConfigError, SourceError, UnsupportedConfigError, WeightsError
from unetinspect.families import (
    Family,
    FamilyConfig,
    config_from_dict,
    family_of,
    is_model_config,
    load_preset,
    original_family,
)
from unetinspect.files import not_regular, read_capped
from unetinspect.presets import DEFAULT_PRESET, PRESETS
from unetinspect.weights.pickle import read_pickle_shapes, refuse_pickle
from unetinspect.weights.safetensors import SafetensorsHeader, read_header

WEIGHTS_NAME = "diffusion_pytorch_model"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# SDXL's shard index is about 100 KB; an index this big is not one.
MAX_INDEX_BYTES = 64 << 20
CONFIG_DICT = "config dict"  # how a config given as a Python mapping is named in headings and messages
SOURCE_KINDS = ("a preset name", "a path (config.json, diffusers folder, checkpoint file)", "a config dict",
                "a config object (UNetConfig, SVDConfig, ...)")
CONFIG_KINDS = ("a preset name", "a config.json path", "a config dict", "a config object (UNetConfig, SVDConfig, ...)")

# What a config may be given as: a preset name or a config.json path, its contents as a mapping, or built (the
# config object of any registered family).
ConfigLike = str | os.PathLike[str] | Mapping[str, Any] | FamilyConfig


@dataclass(frozen=True)
class Source:
    """A resolved SOURCE: its config and where its weights are (none: random weights are made).

    `layout` is "diffusers" (keys as our model names them) or the original single-file layout of its family
    ("ldm", "ldm-controlnet": keys renamed on load). `config` is its family's config class (a `ControlNetConfig`
    for a ControlNet); `family` is settled from it once, when the source is made, and carried from there.
    `headers` are the safetensors headers of the weight files, read once while resolving and carried from there
    to checking and loading. `config_origin` names a config that replaced the source's own (`--config`).
    """

    spec: str
    kind: str  # "preset" | "config" | "diffusers" | "single-file"
    config: FamilyConfig
    weight_files: tuple[Path, ...] = ()
    layout: str = "diffusers"
    headers: tuple[SafetensorsHeader, ...] = ()
    config_origin: str | None = None
    pixel_factor: int | None = None  # pixels per latent element, where the source says (a pipeline's VAE)
    added: tuple[str, ...] = ()  # add-ons its config was joined with, for headings: "motion adapter mm.safetensors"
    notes: tuple[str, ...] = ()  # what the setup should say of it (an assumption, weights left unread)
    key_map: Mapping[str, str] | None = field(default=None, repr=False, compare=False)  # our key → a file's key,
    #   settled while joining parts (sources.motion_adapter); None: from the layout, on load
    family: Family[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", family_of(self.config))

    @property
    def has_weights(self) -> bool:
        return bool(self.weight_files)

    @property
    def is_pickle(self) -> bool:
        return any(f.suffix in PICKLE_SUFFIXES for f in self.weight_files)

    @property
    def is_controlnet(self) -> bool:
        return self.family.kind == "controlnet"

    @property
    def label(self) -> str:
        """What was opened, for headings: the preset name or the path's last part (with its folder when that
        part is a generic `unet`), and the config that replaced the source's own, if one did."""
        if self.kind in ("preset", "config-object"):
            name = self.spec
        else:
            path = Path(self.spec)
            name = f"{path.parent.name}/{path.name}" if path.name == "unet" and path.parent.name else path.name
            name = name or self.spec
        if self.config_origin is not None and self.config_origin != name:
            name = f"{name} with config {self.config_origin}"
        return " + ".join((name, *self.added))

    @property
    def weight_dtypes(self) -> tuple[str, ...]:
        """The dtypes the weight files store (from their headers), e.g. ("F16",)."""
        return tuple(sorted({info.dtype for h in self.headers for info in h.tensors.values()}))


# Anything a source may be: a `Source` already resolved, or what resolves to one.
SourceLike = ConfigLike | Source


def resolve_source(
    spec: SourceLike | None = None,
    *,
    variant: str | None = None,
    config: ConfigLike | None = None,
    allow_pickle: bool = False,
) -> Source:
    """Turn what the user typed (or holds) into a `Source`.

    A config held in Python — a mapping as a config.json holds it (diffusers' `unet.config` too) or the config
    object of any family (`UNetConfig`, `SVDConfig`, …) — is a source the way its config.json is, validated the
    same way. `config` (any of those, or a preset name) overrides the config a source carries or implies — for
    single files whose shapes are ambiguous, or to check weights against another architecture. A `Source` is
    returned as it is, so every library entry point can take either. Anything else is a `SourceError` naming what
    was given and what is accepted.
    """
    if not is_source_like(spec):
        raise not_a_source(spec)
    if isinstance(spec, Source):
        return spec
    if config is None:
        return _resolve_spec(spec, variant, None, allow_pickle)
    if not is_config_like(config):
        raise not_a_source(config, "config", CONFIG_KINDS)
    override, origin = _config_override(config), _config_origin(config)
    if spec is None:  # only a config: it is what was opened
        kind = "preset" if origin in PRESETS else "config" if isinstance(config, (str, os.PathLike)) else "config-object"
        return Source(origin, kind, override)
    return dataclasses.replace(_resolve_spec(spec, variant, override, allow_pickle), config_origin=origin)


def _resolve_spec(spec: ConfigLike | None, variant: str | None, override: FamilyConfig | None,
                  allow_pickle: bool) -> Source:
    """A source that is not yet a `Source`, with the config that replaces its own (`override`) if one does."""
    if spec is not None and not isinstance(spec, (str, os.PathLike)):  # the config itself is the source
        return Source(_config_origin(spec), "config-object", override or _config_override(spec))
    return _resolve(os.fspath(spec) if spec is not None else DEFAULT_PRESET, variant, override, allow_pickle)


def is_source_like(value: object) -> TypeGuard[SourceLike | None]:
    """Whether `value` is a kind of source this module resolves (None too: the default preset, or no config)."""
    return value is None or isinstance(value, Source) or is_config_like(value)


def is_config_like(value: object) -> bool:
    """Whether `value` names or holds a config: a preset name or path, a mapping, a registered family's config."""
    return isinstance(value, (str, os.PathLike, Mapping)) or is_model_config(value)


def not_a_source(value: object, role: str = "source", accepted: tuple[str, ...] = SOURCE_KINDS) -> SourceError:
    """The error for a value that is no source: its type and a short repr, and what is accepted instead. (Left to
    `str()` or `Path()`, an int would be looked up as a file named "3", a list fail as a raw TypeError.)"""
    kinds = ", ".join(accepted[:-1]) + f" or {accepted[-1]}"
    return SourceError(f"cannot open {type(value).__name__} {reprlib.repr(value)} as a {role}", f"give {kinds}")


def _config_origin(config: ConfigLike) -> str:
    """How a config is named in headings: the preset name, the file's name, "config dict" or "a UNetConfig" (the
    config object's class)."""
    if isinstance(config, Mapping):
        return CONFIG_DICT
    if not isinstance(config, (str, os.PathLike)):  # a registered family's config object
        return f"a {type(config).__name__}"
    return str(config) if _names_preset(config) else Path(config).name


def _resolve(spec: str, variant: str | None, override: FamilyConfig | None, allow_pickle: bool) -> Source:
    path = Path(spec).expanduser()
    try:
        exists = path.exists()
    except OSError as exc:  # a name too long for the file system, a loop of symlinks
        raise SourceError(f"cannot read {spec!r}: {exc.strerror or exc}") from None

    if not exists:
        if spec in PRESETS:
            return Source(spec, "preset", override or load_preset(spec))
        raise SourceError(
            f"no such file, folder or preset: {spec!r}",
            f"presets are {', '.join(PRESETS)}; or give a config.json, a diffusers folder or a checkpoint file",
        )
    if path.is_dir():
        return _resolve_folder(spec, path, variant, override, allow_pickle)
    if not path.is_file():  # a FIFO blocks its reader and a device never ends: refused before opening
        raise not_regular(path, path.stat().st_mode, SourceError)
    if path.suffix == ".json":
        return Source(spec, "config", override or read_config(path), pixel_factor=pipeline_pixel_factor(path.parent))
    if path.suffix == ".safetensors":
        return _resolve_safetensors_file(spec, path, override)
    if path.suffix in PICKLE_SUFFIXES:
        refuse_pickle(path, allow_pickle)
        return _resolve_pickle_file(spec, path, override)
    raise SourceError(f"{spec}: not a recognised source ({path.suffix or 'no suffix'})",
                      "give a preset name, a config.json, a diffusers folder or a .safetensors file")


def _config_override(config: ConfigLike) -> FamilyConfig:
    """The config `config` holds or names (a config object is itself)."""
    if isinstance(config, Mapping):
        return read_config(config)
    if not isinstance(config, (str, os.PathLike)):  # a registered family's config object
        return config
    return load_preset(str(config)) if _names_preset(config) else read_config(config)


def _names_preset(config: str | os.PathLike[str]) -> bool:
    """A preset's name, unless a file of that name is there (the path is what the user means then)."""
    return str(config) in PRESETS and not Path(config).exists()


def read_config(config: str | os.PathLike[str] | Mapping[str, Any]) -> FamilyConfig:
    """A diffusers config — a config.json, or its contents as a mapping — as the config of the family its
    `_class_name` names (a UNet's without one)."""
    if isinstance(config, Mapping):
        data, origin = config_data(config), CONFIG_DICT
    else:
        data, origin = read_json_config(config), str(config)
    return config_from_dict(data, origin=origin)


def config_data(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config mapping as its config.json would hold it — plain dicts and lists (a `FrozenDict`, tuples and
    other mappings converted) — so that it meets exactly the validation a config.json does; a key or value that
    no JSON file could hold is refused, naming it."""
    data = {}
    for key, value in config.items():
        if not isinstance(key, str):
            raise ConfigError(f"{CONFIG_DICT}: key {key!r} ({type(key).__name__}) is not a field name",
                              "a config's keys are its field names, as in config.json")
        try:
            data[key] = json.loads(json.dumps(value, default=_mapping_as_dict))
        except (TypeError, ValueError, RecursionError):  # a set, a tensor, a cycle, nesting no config has
            raise ConfigError(f"{CONFIG_DICT}: {key} is {type(value).__name__} {reprlib.repr(value)}, which a "
                              "config.json cannot hold", "give numbers, strings, booleans, None, lists and dicts") \
                from None
    return data


def _mapping_as_dict(value: object) -> dict[Any, Any]:
    """`json.dumps`' fallback: a nested mapping that is not a dict is written as one; anything else is refused."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(type(value).__name__)


def _resolve_folder(spec: str, folder: Path, variant: str | None, override: FamilyConfig | None,
                    allow_pickle: bool) -> Source:
    if (folder / "model_index.json").is_file() and (folder / "unet").is_dir():
        folder = folder / "unet"  # a whole pipeline: the UNet lives in unet/
    factor = pipeline_pixel_factor(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise SourceError(f"{folder} has no config.json",
                          "give a diffusers UNet folder (config.json + diffusion_pytorch_model.safetensors) "
                          "or a pipeline folder with a unet/ subfolder")
    cfg = override or _unet_config(config_path)
    files = find_weight_files(folder, variant, allow_pickle)
    return Source(spec, "diffusers", cfg, files, headers=read_headers(files), pixel_factor=factor)


def _unet_config(path: Path) -> FamilyConfig:
    """A folder's config.json as its model's config; a motion adapter's says what it is, and what reads it."""
    try:
        return read_config(path)
    except UnsupportedConfigError as exc:
        if exc.field == "_class_name" and read_json_config(path).get("_class_name") == ADAPTER_CLASS:
            raise SourceError(f"{path.parent} is a MotionAdapter: AnimateDiff's motion modules alone, no UNet to run",
                              f"read its parameters per motion module with `unetinspect weights {path.parent}`, or "
                              "run it in an AnimateDiff UNet (diffusers' UNetMotionModel.from_unet2d, saved)") \
                from None
        raise


MAX_VAE_LEVELS = 8  # diffusers' autoencoders have 2 to 4; a factor of 2⁷ is already no image model's


def pipeline_pixel_factor(folder: Path) -> int | None:
    """The pixel factor of a UNet folder that is a pipeline's unet/ (a model_index.json beside it), else None."""
    if folder.name != "unet" or not (folder.parent / "model_index.json").is_file():
        return None
    return vae_pixel_factor(folder.parent)


def vae_pixel_factor(pipeline: Path) -> int | None:
    """A pipeline's pixels per latent element, as diffusers' pipelines compute it from their VAE:
    2 ** (len(vae.config.block_out_channels) - 1). None without a vae/ (IF works in pixels: told from channels)."""
    path = pipeline / "vae" / "config.json"
    if not path.is_file():
        return None
    data = read_json_config(path)
    levels = data.get("block_out_channels") if isinstance(data, dict) else None
    if not isinstance(levels, list) or not 1 <= len(levels) <= MAX_VAE_LEVELS:
        raise ConfigError(f"{path}: block_out_channels {levels!r} tells no autoencoder's levels",
                          f"a VAE config lists 1 to {MAX_VAE_LEVELS} channel counts, e.g. [128, 256, 512, 512]")
    return 2 ** (len(levels) - 1)


def find_weight_files(folder: Path, variant: str | None, allow_pickle: bool = False) -> tuple[Path, ...]:
    """The weight files of a diffusers folder: single, sharded (index.json), plain or `variant` (e.g. fp16).

    Without a variant the plain file is preferred, and a lone variant file is used when it is all there is.
    """
    variants = [variant] if variant else [None, *_variants_present(folder)]
    for v in variants:
        single = folder / (f"{WEIGHTS_NAME}.{v}.safetensors" if v else f"{WEIGHTS_NAME}.safetensors")
        if single.is_file():
            return (single,)
        # diffusers puts the variant of a sharded index before ".json" (...safetensors.index.fp16.json)
        index = folder / (f"{WEIGHTS_NAME}.safetensors.index.{v}.json" if v else f"{WEIGHTS_NAME}.safetensors.index.json")
        if index.is_file():
            return _shards_of(index)
    pickled = [folder / f"{WEIGHTS_NAME}.{v}.bin" if v else folder / f"{WEIGHTS_NAME}.bin" for v in variants]
    for candidate in pickled:
        if candidate.is_file():
            refuse_pickle(candidate, allow_pickle)
            return (candidate,)
    if variant:
        raise WeightsError(f"{folder} has no {variant!r} variant ({WEIGHTS_NAME}.{variant}.safetensors)",
                           "drop --variant or pick one that exists")
    return ()


def _variants_present(folder: Path) -> list[str]:
    """Variants with a single file (`NAME.fp16.safetensors`) or a sharded index (`NAME.safetensors.index.fp16.json`)."""
    singles = {p.name.split(".")[1] for p in folder.glob(f"{WEIGHTS_NAME}.*.safetensors")}
    indexed = {p.name.split(".")[3] for p in folder.glob(f"{WEIGHTS_NAME}.safetensors.index.*.json")}
    return sorted(v for v in singles | indexed if "-of-" not in v)


def _shards_of(index: Path) -> tuple[Path, ...]:
    """The shard files of a sharded checkpoint, after checking the whole index against every shard's header.

    A broken index must fail here, naming the file and tensor, rather than as a shape error when profiling — or,
    worse, not at all: an index that maps nothing would open as a model with random weights.
    """
    try:
        text = read_capped(index, MAX_INDEX_BYTES, WeightsError, "a shard index")
        weight_map = json.loads(text, object_pairs_hook=_refuse_repeated_keys)["weight_map"]
    except _RepeatedKey as repeated:
        key, first, second = repeated.args
        raise WeightsError(f"{index} names {key!r} twice (first {first!r}, then {second!r})",
                           "an index maps each tensor to one shard: download the checkpoint again") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, KeyError, TypeError):
        raise WeightsError(f"{index} is not a valid sharded-checkpoint index (needs a weight_map)") from None
    if not isinstance(weight_map, dict):
        raise WeightsError(f"{index}: weight_map is not an object of tensor name → shard file")
    if not weight_map:
        raise WeightsError(f"{index}: weight_map is empty, so it puts no tensor in any shard",
                           "the index is broken: download the checkpoint again")
    bad = next(((k, v) for k, v in weight_map.items() if not isinstance(v, str)), None)
    if bad is not None:
        raise WeightsError(f"{index}: weight_map[{bad[0]!r}] is {bad[1]!r}, not a shard file name")
    files = []
    for name in dict.fromkeys(weight_map.values()):
        shard = index.parent / name
        if Path(name).name != name or name in ("", ".", "..") or not shard.exists():
            raise WeightsError(f"{index} names shard {name!r}, which is not in {index.parent}",
                               "the download is incomplete")
        files.append(shard)
    _check_shards(index, weight_map, {shard.name: read_header(shard) for shard in files})
    return tuple(files)


class _RepeatedKey(Exception):
    """A key that a JSON object of the index gives twice: (key, first value, second value)."""


def _refuse_repeated_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """`json.loads` keeps the last of repeated keys without a word; in a weight_map that hides a tensor mapped to
    two shards, so a repeat is an error instead."""
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise _RepeatedKey(key, seen[key], value)
        seen[key] = value
    return seen


def _check_shards(index: Path, weight_map: dict[str, str], headers: dict[str, SafetensorsHeader]) -> None:
    """The index and the shards' headers name the same tensors, each in exactly one shard: the one the index says.

    So every tensor the config needs (checked against the model after this) is mapped exactly once. A tensor held
    by two shards is refused even when both copies are the same: which copy loads would depend on the order the
    shards are read, and telling whether the copies agree means reading tensor data, which resolving never does.
    """
    holder: dict[str, str] = {}
    for shard, header in headers.items():
        for name in header.tensors:
            first = holder.setdefault(name, shard)
            if first != shard:
                raise WeightsError(f"{index.parent}: tensor {name!r} is in two shards, {first} and {shard}",
                                   "each tensor belongs in one shard: the shards do not belong together, "
                                   "download the checkpoint again")
    for name, shard in weight_map.items():
        if holder.get(name) != shard:
            raise WeightsError(f"{index} puts tensor {name!r} in {shard}, which does not hold it",
                               "the index and its shards do not match: download the checkpoint again")
    unmapped = [name for name in holder if name not in weight_map]
    if unmapped:
        raise WeightsError(f"{index}: {len(unmapped)} tensor(s) of the shards are not in its weight_map, e.g. "
                           f"{unmapped[0]!r} in {holder[unmapped[0]]}",
                           "the index and its shards do not match: download the checkpoint again")


def _resolve_safetensors_file(spec: str, path: Path, override: FamilyConfig | None) -> Source:
    header = read_header(path)
    return _resolve_single_file(spec, path, {n: t.shape for n, t in header.tensors.items()}, override, (header,))


def _resolve_pickle_file(spec: str, path: Path, override: FamilyConfig | None) -> Source:
    return _resolve_single_file(spec, path, read_pickle_shapes(path), override, ())


def _resolve_single_file(spec: str, path: Path, shapes: dict[str, tuple[int, ...]], override: FamilyConfig | None,
                         headers: tuple[SafetensorsHeader, ...]) -> Source:
    """One weight file: in a family's original layout (its config inferred from the shapes unless `--config`
    gives one), else diffusers' keys with their config.json beside the file or given."""
    family = original_family(shapes)
    if family is not None:
        cfg = override or family.infer_original_config(shapes, str(path))
        return Source(spec, "single-file", cfg, (path,), layout=family.layout, headers=headers)
    beside = path.parent / "config.json"
    if override is not None:
        return Source(spec, "single-file", override, (path,), headers=headers)
    if beside.is_file():
        return Source(spec, "diffusers", _unet_config(beside), (path,), headers=headers,
                      pixel_factor=pipeline_pixel_factor(path.parent))
    raise SourceError(f"{path} holds diffusers-style keys but has no config.json beside it",
                      "put its config.json next to it, or pass --config FILE / --config PRESET")


def read_headers(files: tuple[Path, ...]) -> tuple[SafetensorsHeader, ...]:
    return tuple(read_header(f) for f in files if f.suffix == ".safetensors")


def headers_of(source: Source) -> tuple[SafetensorsHeader, ...]:
    """Headers of a source's safetensors files (none for presets and configs), as read when it was resolved."""
    return source.headers
