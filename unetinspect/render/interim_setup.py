"""The setup header of results made before `analysis.session` carries one (SESSION.md's `Setup` and `Sizes`).

Temporary: when `open_session` lands, every result has `.setup` and this module goes, with the latent/pixel
arithmetic it holds (the session's `Sizes` own it then).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unetinspect.analysis.profile import Profile, Sweep
    from unetinspect.analysis.summary import Summary


@dataclass(frozen=True)
class Sizes:
    batch: int
    latent: tuple[int, int]
    pixels: tuple[int, int] | None
    text_len: int


@dataclass(frozen=True)
class Setup:
    label: str
    kind: str
    model_type: str
    impl: str
    device: str
    dtype: str
    sizes: Sizes
    weights: str
    notes: tuple[str, ...] = ()


def summary_setup(summary: Summary, impl: str = "ours") -> Setup:
    spec, config = summary.spec, summary.config
    sizes = Sizes(spec.batch, spec.latent_size(config), spec.pixel_size(config), spec.text_len)
    weights = "weights " + "/".join(summary.weights_dtypes) if summary.weights_dtypes else "no weights needed"
    return Setup(summary.source.label, summary.source.kind, summary.trace.model_type, impl, summary.device,
                 summary.dtype, sizes, weights)


def profile_setup(profile: Profile) -> Setup:
    sizes = Sizes(profile.batch, profile.latent, (profile.height, profile.width), profile.text_len)
    return Setup(profile.source, "", profile.model_type, "ours", profile.device.type, profile.dtype, sizes,
                 "")


def sweep_setup(sweep: Sweep) -> Setup:
    first = sweep.variants[0] if sweep.variants else None
    sizes = Sizes(first.batch if first else 1, (0, 0), None, sweep.text_len)
    return Setup(sweep.source, "", sweep.model_type, "ours", sweep.device.type, sweep.dtype, sizes,
                 "")
