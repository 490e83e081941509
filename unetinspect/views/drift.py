"""Drift across the steps of a real loop: `with watch(pipe.unet, drift=True) as w: pipe(...)`, then `w.drift()`.

For every watched block and every call after the first: the relative L1 change of its output,
‖o_t − o_{t−1}‖₁ / ‖o_{t−1}‖₁ (the change relative to what a cache would hold: Block Caching's measure, Wimbauer
et al. 2024) and the cosine similarity of the flattened outputs (DeepCache's, Ma et al. 2024). The heatmap of the
first over blocks × steps is Block Caching's Fig. 2b for the user's own model.

`cache_plan(threshold=δ)` turns the measured drift into a per-block schedule the Block Caching way: a block is
recomputed at a call when its change accumulated since its last computation exceeds δ, else its stored output is
reused; `cache(module, plan=plan)` applies it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from unetinspect.engine.cache import CachePlan, check_threshold
from unetinspect.errors import RunError
from unetinspect.sources.session import Setup

DRIFT_CONVENTIONS = (
    "rel L1 = ‖o_t − o_{t−1}‖₁ / ‖o_{t−1}‖₁ between a block's outputs at consecutive calls of the model "
    "(Block Caching's measure); cosine = o_t·o_{t−1} / (‖o_t‖ ‖o_{t−1}‖) of the flattened outputs (DeepCache's)",
    "a block's output is its hidden state (the first element of a tuple) over the whole batch: both halves of a "
    "classifier-free-guidance batch",
    "reduced on the device during the loop and read after it; one output per block is held meanwhile",
)

# Block Caching caches the UNet's blocks; the stem, the head and the embeddings always run.
UNET_BLOCKS = ("down_blocks.", "mid_block", "up_blocks.")


@dataclass
class Drift:
    """The drift of every watched block over the calls of one watch: `rel_l1[block][call]`, `cosine[block][call]`
    (None at the first call, and where the block did not run), with each call's timestep."""

    setup: Setup
    blocks: list[str]
    timesteps: list[float | None]
    rel_l1: dict[str, list[float | None]]
    cosine: dict[str, list[float | None]]
    held_bytes: int  # what the watch held during the loop to compare with: one output per block
    conventions: tuple[str, ...] = field(default=DRIFT_CONVENTIONS)

    @property
    def calls(self) -> int:
        return len(self.timesteps)

    def cache_plan(self, threshold: float, blocks: list[str] | None = None) -> CachePlan:
        """Block Caching's schedule from this drift: at every call after the first, a block runs when its relative
        L1 change accumulated since it last ran exceeds `threshold`, else its stored output is reused.

        `blocks`: the blocks the plan may reuse; by default the UNet's down, mid and up blocks among the watched
        ones (the stem, the head and the time embedding always run), every watched block in another module.
        Blocks called more than once per call (`name#2`) cannot be planned. δ = 0 reuses only outputs that did
        not change at all.
        """
        check_threshold(threshold)
        chosen = self._plannable(blocks)
        compute: dict[str, tuple[bool, ...]] = {}
        for block in chosen:
            flags, accumulated = [], 0.0
            for call, change in enumerate(self.rel_l1[block]):
                if call == 0:
                    flags.append(True)
                    continue
                accumulated += math.inf if change is None or math.isnan(change) else change
                runs = accumulated > threshold
                flags.append(runs)
                if runs:
                    accumulated = 0.0
            compute[block] = tuple(flags)
        return CachePlan(compute=compute, description=f"Block Caching plan, δ={threshold:g}, from measured drift")

    def _plannable(self, blocks: list[str] | None) -> list[str]:
        if blocks is None:
            unet = any(b.startswith(UNET_BLOCKS) for b in self.blocks)
            return [b for b in self.blocks if "#" not in b and (not unet or b.startswith(UNET_BLOCKS))]
        for block in blocks:
            if block not in self.rel_l1:
                raise RunError(f"no drift was recorded for block {block!r}",
                               f"choose among the watched blocks: {', '.join(self.blocks[:8])}"
                               f"{'…' if len(self.blocks) > 8 else ''}")
            if "#" in block:
                raise RunError(f"block {block!r} runs more than once per call: its outputs cannot be reused by call",
                               "plan blocks that run once per call of the model")
        return list(blocks)
