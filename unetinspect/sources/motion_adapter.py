"""`--motion-adapter`: AnimateDiff's motion modules put on an image UNet, as diffusers'
`UNetMotionModel.from_unet2d(unet, adapter)` does — so SD 1.5 or SDXL (a preset, a folder, a checkpoint) plus an
adapter is an AnimateDiff UNet in every view, without saving the joined model first.

An adapter is a MotionAdapter folder (its config.json says so), or a lone weight file: diffusers' keys
(`down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.weight`), or the AnimateDiff repository's own, as
ComfyUI and A1111 load them (`….motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.…`),
renamed on load as diffusers' conversion script renames them. A lone file's layout is read off its shapes; the
two numbers its tensors do not hold (heads and norm groups) are those of every adapter AnimateDiff published, and
the setup says so.

Weights are read when both the base and the adapter have them; where one has none, the joined model gets random
weights like any config, and the setup says so.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetinspect.configs.unet import UNetConfig, read_json_config
from unetinspect.configs.video import ADAPTER_CLASS, MotionAdapterConfig, MotionConfig
from unetinspect.errors import SourceError, WeightsError
from unetinspect.sources.kinds import file_kind
from unetinspect.sources.loading import file_shapes, key_map
from unetinspect.sources.resolve import PICKLE_SUFFIXES, Source, find_weight_files, read_headers
from unetinspect.weights.pickle import read_pickle_shapes, refuse_pickle
from unetinspect.weights.safetensors import SafetensorsHeader, read_header

Shapes = dict[str, tuple[int, ...]]

# The AnimateDiff repository's names → diffusers' (what diffusers' convert_animatediff_motion_module_to_diffusers
# does, whose position tables it drops and recomputes; ours are renamed too and checked like any weight).
_ORIGINAL_NAMES = ((".temporal_transformer.", "."), (".attention_blocks.0.", ".attn1."),
                   (".attention_blocks.1.", ".attn2."), (".norms.0.", ".norm1."), (".norms.1.", ".norm2."),
                   (".ff_norm.", ".norm3."), (".pos_encoder.", ".pos_embed."))
_ORIGINAL = re.compile(r"\.(temporal_transformer|attention_blocks)\.")
_MODULE = re.compile(r"^(down_blocks\.(\d+)|mid_block)\.motion_modules\.(\d+)\.")
_LAYER = re.compile(r"\.transformer_blocks\.(\d+)\.")
# Not in the weights: what every adapter AnimateDiff published (v1, v2, v3, SDXL) uses, as diffusers' defaults.
PUBLISHED_HEADS, PUBLISHED_GROUPS = 8, 32
GUESSED_NOTE = (f"motion adapter read from its weights alone: {PUBLISHED_HEADS} heads and {PUBLISHED_GROUPS} norm groups "
                "assumed (AnimateDiff's own); a config.json beside it says otherwise")


@dataclass(frozen=True)
class MotionAdapterSource:
    """An adapter as resolved: its config, its weight files (none: a config alone), their headers, and whether
    its keys are the AnimateDiff repository's (renamed on load)."""

    spec: str
    config: MotionAdapterConfig
    weight_files: tuple[Path, ...] = ()
    headers: tuple[SafetensorsHeader, ...] = ()
    shapes: Shapes = field(default_factory=dict, repr=False)  # its files' tensors as they name them, read once
    original: bool = False
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        path = Path(self.spec)
        return path.name or self.spec


def resolve_motion_adapter(spec: str | os.PathLike[str], *, variant: str | None = None,
                           allow_pickle: bool = False) -> MotionAdapterSource:
    """A MotionAdapter folder or a lone adapter file, with its config (read, or inferred from its shapes)."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"--motion-adapter {os.fspath(spec)!r}: no such file or folder",
                          "give a MotionAdapter folder (config.json + weights) or an adapter file such as "
                          "mm_sd_v15_v2.safetensors")
    if path.is_dir():
        config_path = path / "config.json"
        data = read_json_config(config_path) if config_path.is_file() else {}
        if data.get("_class_name") != ADAPTER_CLASS:
            what = f"a {data['_class_name']}" if isinstance(data.get("_class_name"), str) else "no MotionAdapter"
            raise SourceError(f"--motion-adapter {path}: its config.json says {what}, not {ADAPTER_CLASS}",
                              "give the folder of a MotionAdapter (as AnimateDiff publishes them for diffusers)")
        files = find_weight_files(path, variant, allow_pickle)
        adapter = MotionAdapterSource(os.fspath(spec), MotionAdapterConfig.from_dict(data, origin=str(config_path)),
                                      files, read_headers(files))
        return dataclasses.replace(adapter, shapes={n: s for shapes in file_shapes(adapter).values()
                                                    for n, s in shapes.items()})
    if path.suffix in PICKLE_SUFFIXES:
        refuse_pickle(path, allow_pickle)
        shapes, headers = read_pickle_shapes(path), ()
    elif path.suffix == ".safetensors":
        header = read_header(path)
        shapes, headers = {n: t.shape for n, t in header.tensors.items()}, (header,)
    else:
        raise SourceError(f"--motion-adapter {path}: not a MotionAdapter folder or weight file "
                          f"({path.suffix or 'no suffix'})", "give a folder, a .safetensors or (with --allow-pickle) "
                          "a .ckpt file")
    kind = file_kind(shapes)
    if kind.kind != "motion adapter":
        raise SourceError(f"--motion-adapter {path}: this file is a {kind.label}, not a motion adapter",
                          "give AnimateDiff's motion modules (mm_sd_v15_v2, a MotionAdapter's weights)")
    original = any(_ORIGINAL.search(name) for name in shapes)
    renamed = {_diffusers_name(name) if original else name: shape for name, shape in shapes.items()}
    beside = path.parent / "config.json"
    data = read_json_config(beside) if beside.is_file() else {}
    if data.get("_class_name") == ADAPTER_CLASS:
        config, notes = MotionAdapterConfig.from_dict(data, origin=str(beside)), ()
    else:
        config, notes = infer_adapter_config(renamed, str(path)), (GUESSED_NOTE,)
    return MotionAdapterSource(os.fspath(spec), config, (path,), headers, shapes, original, notes)


def _diffusers_name(name: str) -> str:
    for old, new in _ORIGINAL_NAMES:
        name = name.replace(old, new)
    return name


def infer_adapter_config(shapes: Shapes, origin: str) -> MotionAdapterConfig:
    """An adapter's layout read off its tensors (diffusers' names): levels and their widths, motion modules per
    level and transformer layers per module, the mid block's, the frames its position tables cover."""
    layers: dict[str, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))  # block → module → layers
    widths: dict[int, int] = {}
    max_frames = None
    for name, shape in shapes.items():
        module, layer = _MODULE.match(name), _LAYER.search(name)
        if module is None:
            continue
        block = module.group(1)
        layers[block][int(module.group(3))].update({int(layer.group(1))} if layer else set())
        if module.group(2) is not None and name.endswith(".proj_in.weight") and module.group(3) == "0":
            widths[int(module.group(2))] = shape[0]
        if name.endswith(".pos_embed.pe") and len(shape) == 3:
            max_frames = shape[1]
    levels = sorted(widths)
    if not levels or levels != list(range(len(levels))):
        raise WeightsError(f"{origin}: no motion module of every down block has a proj_in weight",
                           "the file is not a whole motion adapter")

    def depths(block: str) -> list[int]:
        return [len(layers[block][m]) for m in sorted(layers[block])]

    down = [depths(f"down_blocks.{i}") for i in levels]
    mid = depths("mid_block")
    return MotionAdapterConfig.from_dict({
        "block_out_channels": [widths[i] for i in levels],
        "motion_layers_per_block": _one_or_each([len(d) for d in down]),
        "motion_transformer_layers_per_block": _one_or_each([_one_or_each(d) for d in down]),
        "use_motion_mid_block": bool(mid),
        "motion_mid_block_layers_per_block": len(mid) or 1,
        "motion_transformer_layers_per_mid_block": _one_or_each(mid) if mid else 1,
        "motion_num_attention_heads": PUBLISHED_HEADS, "motion_norm_num_groups": PUBLISHED_GROUPS,
        **({"motion_max_seq_length": max_frames} if max_frames else {}),
    }, origin=origin)


def _one_or_each(values: list[Any]) -> Any:
    """One value where all are equal (as configs write it), else the list."""
    return values[0] if values and all(v == values[0] for v in values) else values


def with_motion_adapter(base: Source, adapter: MotionAdapterSource) -> Source:
    """`base` (a resolved image-UNet source) as the AnimateDiff UNet that `adapter` makes of it.

    The joined source's weight files are both parts' and its key map is settled here, once: the base's keys as
    its own layout maps them (an original SD checkpoint's renamed), the adapter's renamed where they are the
    AnimateDiff repository's. Loading and checking then read it like any source's."""
    reason = base.family.refusals.get("motion-adapter")
    if reason is not None:
        raise SourceError(f"--motion-adapter: {reason}", "put the adapter on an image UNet (SD 1.5, SDXL)")
    assert isinstance(base.config, UNetConfig)  # the one family that takes the add-on (refusals above)
    both = base.has_weights and bool(adapter.weight_files)
    if adapter.config.conv_in_channels and both:
        raise SourceError(f"--motion-adapter {adapter.spec}: diffusers joins its own conv_in "
                          f"({adapter.config.conv_in_channels} channels) to the UNet's; this tool does not yet",
                          "give the base without weights (a preset or a config) to see its shapes and costs")
    config = MotionConfig.from_unet2d(base.config, adapter.config)
    notes = adapter.notes
    if base.has_weights != bool(adapter.weight_files):
        without = "the adapter" if base.has_weights else "the base"
        notes += (f"random weights: {without} has none, so neither's are read",)
    joined = dataclasses.replace(base, config=config, added=(*base.added, f"motion adapter {adapter.label}"),
                                 notes=(*base.notes, *notes), weight_files=(), headers=())
    if not both:
        return joined
    base_names = {n: s for shapes in file_shapes(base).values() for n, s in shapes.items()}
    names = key_map(base, base_names) | {
        (_diffusers_name(name) if adapter.original else name): name for name in adapter.shapes}
    return dataclasses.replace(joined, weight_files=(*base.weight_files, *adapter.weight_files),
                               headers=(*base.headers, *adapter.headers), key_map=names)
