"""What a SOURCE string names — a preset, a config.json, a diffusers folder, or a checkpoint file — resolved to a
config and the weight files that go with it. Nothing here reads tensor data.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from unetinspect.config import UNetConfig, read_json_config
from unetinspect.controlnet_config import ControlNetConfig
from unetinspect.errors import SourceError, WeightsError
from unetinspect.families import Family, config_from_dict, family_of, is_model_config, original_family
from unetinspect.presets import DEFAULT_PRESET, PRESETS, load_preset
from unetinspect.files import not_regular, read_capped
from unetinspect.weights.pickle import read_pickle_shapes, refuse_pickle
from unetinspect.weights.safetensors import SafetensorsHeader, read_header

WEIGHTS_NAME = "diffusion_pytorch_model"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# SDXL's shard index is about 100 KB; an index this big is not one.
MAX_INDEX_BYTES = 64 << 20


@dataclass(frozen=True)
class Source:
    """A resolved SOURCE: its config and where its weights are (none: random weights are made).

    `layout` is "diffusers" (keys as our model names them) or the original single-file layout of its family
    ("ldm", "ldm-controlnet": keys renamed on load). `config` is its family's config class (a `ControlNetConfig`
    for a ControlNet).
    `headers` are the safetensors headers of the weight files, read once while resolving and carried from there
    to checking and loading. `config_origin` names a config that replaced the source's own (`--config`).
    """

    spec: str
    kind: str  # "preset" | "config" | "diffusers" | "single-file"
    config: UNetConfig | ControlNetConfig
    weight_files: tuple[Path, ...] = ()
    layout: str = "diffusers"
    headers: tuple[SafetensorsHeader, ...] = ()
    config_origin: str | None = None

    @property
    def has_weights(self) -> bool:
        return bool(self.weight_files)

    @property
    def is_pickle(self) -> bool:
        return any(f.suffix in PICKLE_SUFFIXES for f in self.weight_files)

    @property
    def family(self) -> Family:
        return family_of(self.config)

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
            return f"{name} with config {self.config_origin}"
        return name

    @property
    def weight_dtypes(self) -> tuple[str, ...]:
        """The dtypes the weight files store (from their headers), e.g. ("F16",)."""
        return tuple(sorted({info.dtype for h in self.headers for info in h.tensors.values()}))


def resolve_source(
    spec: str | Path | Source | None = None,
    *,
    variant: str | None = None,
    config: str | Path | UNetConfig | None = None,
    allow_pickle: bool = False,
) -> Source:
    """Turn what the user typed into a `Source`.

    `config` (a preset name, a config.json path or a `UNetConfig`) overrides the config a source carries or
    implies — for single files whose shapes are ambiguous, or to check weights against another architecture.
    A `Source` is returned as it is, so every library entry point can take either.
    """
    if isinstance(spec, Source):
        return spec
    override = _config_override(config)
    origin = _config_origin(config)
    if spec is None and override is not None:  # only a config: it is what was opened
        kind = "preset" if origin in PRESETS else "config" if isinstance(config, (str, Path)) else "config-object"
        return Source(origin, kind, override)
    source = _resolve(str(spec) if spec is not None else DEFAULT_PRESET, variant, override, allow_pickle)
    if override is None:
        return source
    return dataclasses.replace(source, config_origin=origin)


def _config_origin(config: str | Path | UNetConfig | None) -> str | None:
    """How a `--config` is named in headings: the preset name, the file's name, or "a UNetConfig"."""
    if config is None:
        return None
    if is_model_config(config):
        return f"a {type(config).__name__}"
    return str(config) if str(config) in PRESETS and not Path(config).exists() else Path(config).name


def _resolve(spec: str, variant: str | None, override: UNetConfig | None, allow_pickle: bool) -> Source:
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
        return Source(spec, "config", override or read_config(path))
    if path.suffix == ".safetensors":
        return _resolve_safetensors_file(spec, path, override)
    if path.suffix in PICKLE_SUFFIXES:
        refuse_pickle(path, allow_pickle)
        return _resolve_pickle_file(spec, path, override)
    raise SourceError(f"{spec}: not a recognised source ({path.suffix or 'no suffix'})",
                      "give a preset name, a config.json, a diffusers folder or a .safetensors file")


def _config_override(config: str | Path | UNetConfig | ControlNetConfig | None) -> UNetConfig | ControlNetConfig | None:
    if config is None or is_model_config(config):
        return config
    if str(config) in PRESETS and not Path(config).exists():
        return load_preset(str(config))
    return read_config(config)


def read_config(path: str | Path) -> UNetConfig | ControlNetConfig:
    """A diffusers config.json, as the config of the family its `_class_name` names (a UNet's without one)."""
    return config_from_dict(read_json_config(path), origin=str(path))


def _resolve_folder(spec: str, folder: Path, variant: str | None, override: UNetConfig | None,
                    allow_pickle: bool) -> Source:
    if (folder / "model_index.json").is_file() and (folder / "unet").is_dir():
        folder = folder / "unet"  # a whole pipeline: the UNet lives in unet/
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise SourceError(f"{folder} has no config.json",
                          "give a diffusers UNet folder (config.json + diffusion_pytorch_model.safetensors) "
                          "or a pipeline folder with a unet/ subfolder")
    cfg = override or read_config(config_path)
    files = find_weight_files(folder, variant, allow_pickle)
    return Source(spec, "diffusers", cfg, files, headers=_headers(files))


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

    A broken index must fail here, naming the file and tensor, rather than as a shape error when profiling.
    """
    try:
        weight_map = json.loads(read_capped(index, MAX_INDEX_BYTES, WeightsError, "a shard index"))["weight_map"]
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, KeyError, TypeError):
        raise WeightsError(f"{index} is not a valid sharded-checkpoint index (needs a weight_map)") from None
    if not isinstance(weight_map, dict):
        raise WeightsError(f"{index}: weight_map is not an object of tensor name → shard file")
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


def _check_shards(index: Path, weight_map: dict[str, str], headers: dict[str, SafetensorsHeader]) -> None:
    """Every tensor the index names is in its shard, and no tensor is in two shards with different shapes."""
    seen: dict[str, tuple[str, tuple[int, ...]]] = {}
    for shard, header in headers.items():
        for name, info in header.tensors.items():
            first = seen.setdefault(name, (shard, info.shape))
            if first[1] != info.shape:
                raise WeightsError(f"{index.parent}: tensor {name!r} is in {first[0]} with shape {list(first[1])} "
                                   f"and in {shard} with shape {list(info.shape)}", "the shards do not belong "
                                   "together: download the checkpoint again")
    for name, shard in weight_map.items():
        if name not in headers[shard].tensors:
            raise WeightsError(f"{index} puts tensor {name!r} in {shard}, which does not hold it",
                               "the index and its shards do not match: download the checkpoint again")


def _resolve_safetensors_file(spec: str, path: Path, override: UNetConfig | None) -> Source:
    header = read_header(path)
    return _resolve_single_file(spec, path, {n: t.shape for n, t in header.tensors.items()}, override, (header,))


def _resolve_pickle_file(spec: str, path: Path, override: UNetConfig | None) -> Source:
    return _resolve_single_file(spec, path, read_pickle_shapes(path), override, ())


def _resolve_single_file(spec: str, path: Path, shapes: dict[str, tuple[int, ...]], override: UNetConfig | None,
                         headers: tuple[SafetensorsHeader, ...]) -> Source:
    """One weight file: in a family's original layout (its config inferred from the shapes unless `--config`
    gives one), else diffusers' keys with their config.json beside the file or given."""
    family = original_family(shapes)
    if family is not None:
        cfg = override or family.infer_original_config(shapes, origin=str(path))
        return Source(spec, "single-file", cfg, (path,), layout=family.layout, headers=headers)
    beside = path.parent / "config.json"
    if override is not None:
        return Source(spec, "single-file", override, (path,), headers=headers)
    if beside.is_file():
        return Source(spec, "diffusers", read_config(beside), (path,), headers=headers)
    raise SourceError(f"{path} holds diffusers-style keys but has no config.json beside it",
                      "put its config.json next to it, or pass --config FILE / --config PRESET")


def _headers(files: tuple[Path, ...]) -> tuple[SafetensorsHeader, ...]:
    return tuple(read_header(f) for f in files if f.suffix == ".safetensors")


def headers_of(source: Source) -> tuple[SafetensorsHeader, ...]:
    """Headers of a source's safetensors files (none for presets and configs), as read when it was resolved."""
    return source.headers
