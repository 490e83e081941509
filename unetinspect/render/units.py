"""Numbers as people read them: 859.5M parameters, 803.3 GFLOPs, 1.6 GiB, 12.3 ms."""

from __future__ import annotations

from collections.abc import Sequence


def human_count(n: float, unit: str = "", billion: str = "B") -> str:
    """859_520_964 → "859.5M", 2.57e9 → "2.6B"; with unit "FLOPs" → "803.3 GFLOPs" (SI prefixes)."""
    for threshold, suffix in ((1e12, "T"), (1e9, "G" if unit else billion), (1e6, "M"), (1e3, "k")):
        if abs(n) >= threshold:
            value = f"{n / threshold:.1f}{suffix}"
            return f"{value[:-1]} {suffix}{unit}" if unit else value
    return f"{n:g} {unit}".strip() if unit else f"{n:g}"


def human_bytes(n: float) -> str:
    """Bytes in binary units: 3_438_083_856 → "3.20 GiB"."""
    for threshold, suffix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= threshold:
            return f"{n / threshold:.2f} {suffix}"
    return f"{int(n)} B"


def shape_str(shape: Sequence[int] | None) -> str:
    """(1, 320, 64, 64) → "1×320×64×64"; a scalar → "scalar"."""
    if shape is None:
        return ""
    return "×".join(str(d) for d in shape) if len(shape) else "scalar"


def human_flops(n: float) -> str:
    """FLOPs in a narrow column: 109_550_960_640 → "109.6G"."""
    return human_count(n, billion="G") if n else "–"


def share(part: float, whole: float) -> str:
    """`part` as a percentage of `whole`, one decimal: "12.3%"; "–" where there is no whole to share."""
    return f"{100 * part / whole:.1f}%" if whole else "–"
