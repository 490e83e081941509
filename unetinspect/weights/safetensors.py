"""Reading safetensors files safely: the header alone (instant on multi-GB files), and tensors memory-mapped.

A safetensors file is 8 bytes of little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
then the raw bytes. Files from strangers can lie in every part of that, so the header is checked against the
file's real size before anything is read or allocated: a bad file is an error, never a crash or a huge allocation.

The tensors themselves are read by the `safetensors` package (`load_tensors`). The header is read here, not by
it, for what it does not offer: the views that need only names, dtypes and shapes (weights, lora, resolving a
source) must not import torch (a second and a half) and must describe a file in milliseconds; a hostile header's
tensor count is bounded before the JSON is parsed; and every defect is named in one line (which tensor, which
bytes) instead of a bare `MetadataIncompleteBuffer`.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from unetinspect.errors import WeightsError
from unetinspect.files import check_regular, open_regular

if TYPE_CHECKING:
    import torch

# safetensors itself refuses headers over 100 MB; the header of a full SD checkpoint is about 200 KB.
MAX_HEADER_BYTES = 100_000_000

# A full SDXL checkpoint (UNet, VAE, both text encoders) has about 2,500 tensors, a LoRA a few thousand: a header
# naming more than this is not a model we could show, and parsing it would cost seconds and a GB of memory.
MAX_TENSORS = 100_000

# Bytes per element of each dtype that safetensors reads into torch (kept free of torch, so headers are read
# without importing it; the bit-packed F4/F6 formats are left out: their sizes are not whole bytes per element).
ITEM_SIZES: dict[str, int] = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2,
    "U8": 1, "BOOL": 1, "C64": 8, "F8_E4M3": 1, "F8_E4M3FNUZ": 1, "F8_E5M2": 1, "F8_E5M2FNUZ": 1,
}
# torch's dtype names → the format's, so that pickles can be described in the same terms.
TORCH_DTYPE_NAMES: dict[str, str] = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL",
    "complex64": "C64", "float8_e4m3fn": "F8_E4M3", "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2": "F8_E5M2",
    "float8_e5m2fnuz": "F8_E5M2FNUZ",
}


class TensorInfo(NamedTuple):
    """One tensor as the header describes it; `nbytes` is checked against its shape and dtype.

    A tuple, not a dataclass: a hostile header names up to MAX_TENSORS of them, and a tuple is made 3x faster.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    offset: int = 0  # where its bytes begin, counted from the start of the file

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """The validated header of one file: its tensors (in file order) and the free-form `__metadata__`."""

    path: Path
    file_size: int
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)


def read_header(path: str | Path) -> SafetensorsHeader:
    """Read and validate the header of a safetensors file without touching the tensor data.

    Resolving a source, checking it against the model and loading it each want the header: it is read once per
    version of the file (path, size and modification time).
    """
    path = Path(path)
    status = check_regular(path, WeightsError)  # a FIFO would block the read below, a device never end
    return _read_header(path, status.st_size, status.st_mtime_ns)


@lru_cache(maxsize=64)
def _read_header(path: Path, file_size: int, mtime_ns: int) -> SafetensorsHeader:
    try:
        with os.fdopen(open_regular(path, WeightsError), "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise WeightsError(f"{path} is not a safetensors file: only {len(prefix)} bytes long")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > MAX_HEADER_BYTES:
                raise WeightsError(f"{path}: header claims {header_len:,} bytes, over the {MAX_HEADER_BYTES:,} limit",
                                   "the file is corrupt or not a safetensors file")
            if 8 + header_len > file_size:
                raise WeightsError(f"{path} is truncated: header needs {8 + header_len:,} bytes, file has {file_size:,}",
                                   "download or copy the file again")
            raw = f.read(header_len)
    except OSError as exc:
        raise WeightsError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw.count(b'"data_offsets"') > MAX_TENSORS:  # counted before parsing: parsing is what costs
        raise _too_many(path, raw.count(b'"data_offsets"'))
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise WeightsError(f"{path}: the safetensors header is not valid JSON",
                           "the file is corrupt or not a safetensors file") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: the safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise WeightsError(f"{path}: __metadata__ in the header is not an object of strings",
                           "the file is corrupt or not a safetensors file")
    if len(header) > MAX_TENSORS:  # names that escape their JSON (data\u005foffsets) are counted here
        raise _too_many(path, len(header))
    data_size = file_size - 8 - header_len
    tensors = {name: _tensor_info(path, name, entry, data_size, 8 + header_len) for name, entry in header.items()}
    _check_tiling(path, header, data_size)
    return SafetensorsHeader(path, file_size, tensors, metadata)


def _too_many(path: Path, count: int) -> WeightsError:
    return WeightsError(f"{path}: the header names {count:,} tensors, over the limit of {MAX_TENSORS:,}",
                        "a full SDXL checkpoint has about 2,500: this is not a UNet checkpoint")


def _tensor_info(path: Path, name: str, entry: object, data_size: int, file_offset: int) -> TensorInfo:
    def bad(what: str) -> WeightsError:
        return WeightsError(f"{path}: tensor {name!r} {what}", "the file is corrupt or not a safetensors file")

    if not isinstance(entry, dict):
        raise bad("has no dtype/shape/data_offsets entry")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in ITEM_SIZES:  # a list or object is not even hashable
        raise bad(f"has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad(f"has a malformed shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise bad(f"has malformed data_offsets {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise bad(f"points outside the file (bytes {begin:,}-{end:,} of {data_size:,}); the file may be truncated")
    nbytes = math.prod(shape) * ITEM_SIZES[dtype]
    if end - begin != nbytes:
        raise bad(f"has {end - begin:,} bytes for shape {shape} {dtype} (needs {nbytes:,})")
    return TensorInfo(name, dtype, tuple(shape), nbytes, file_offset + begin)


def _check_tiling(path: Path, header: dict[str, dict], data_size: int) -> None:
    """The tensors must cover the data exactly, without overlap or gap, as safetensors itself requires: overlapping
    tensors would alias each other, and a hole can hide a second file inside the first (a polyglot)."""
    position = 0
    for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"]):
        begin, end = entry["data_offsets"]
        if begin != position:
            what = ("overlaps the tensor before it" if begin < position
                    else f"starts after a {begin - position:,}-byte gap")
            raise WeightsError(f"{path}: tensor {name!r} {what}", "the file is corrupt or not a safetensors file")
        position = end
    if position != data_size:
        raise WeightsError(f"{path}: {data_size - position:,} bytes after the last tensor belong to none",
                           "the file is corrupt or not a safetensors file")


def load_tensors(header: SafetensorsHeader, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a validated file, read through safetensors' own `safe_open`: it memory-maps the file privately
    (pages are read from disk only when a tensor is used, moved or converted) and knows every dtype the format
    has, new ones included. The header was already checked by `read_header`, so a file that fails here changed
    on disk in between."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(header.path), framework="pt") as f:
            return {name: f.get_tensor(name) for name in (names if names is not None else list(header.tensors))}
    except (OSError, SafetensorError) as exc:
        raise WeightsError(f"cannot read tensors from {header.path}: {exc}",
                           "the file changed while it was read, or is corrupt: copy it again") from None
