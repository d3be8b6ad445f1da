"""Per-round metrics of the evaluation, their scales, satisfaction@t and bootstrap intervals.

Every number carries its scale (``SCALES``), the paper's where it has one:

* ``t2i_clip``: CLIP score of the image against the target's full caption — cosine of the
  L2-normalised CLIP embeddings, clipped at 0, on the paper's 0-1 scale (``tdri_engine.metrics``;
  torchmetrics' CLIPScore is 100 x this). Paper table 1 "T2I CLIPscore".
* ``i2i_clip``: CLIP score of the image against the target image (same scale). Table 1
  "I2I CLIPscore".
* ``t2i_blip``: BLIP image-text matching probability against the full caption, 0-1. Table 1
  "T2I BLIPscore".
* ``i2i_blip``: cosine of BLIP's projected image features, image vs target, 0-1. Table 1
  "I2I BLIPscore".
* ``judge_aspects``: in the Atelier world, how many of the seven aspects the judge (a classifier
  trained only on renderings, never used by the loop) reads as the target's, 0-7.
* ``consistency``: CLIP score of this round's image against the previous round's (0-1); the
  paper's table 3 "consistency" of editing vs generating anew.
* ``satisfied``: 1 when the user would be satisfied by this round's image, else 0. In the world:
  the judge finds at least ``SATISFIED_ASPECTS`` = 6 of 7 aspects matching the target (the issue's
  definition). Elsewhere: ``i2i_clip`` >= ``threshold`` (default ``I2I_SATISFIED`` = 0.80, about the
  paper's TDRI I2I CLIP of 0.812, stated with every report). satisfaction@t is its mean over the
  sessions at round t, in percent.

Intervals: percentile bootstrap over sessions (resampling sessions with replacement,
``BOOTSTRAP_SAMPLES`` = 2000 draws, fixed seed), 95 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SATISFIED_ASPECTS = 6
I2I_SATISFIED = 0.80
BOOTSTRAP_SAMPLES = 2000

SCALES: dict[str, str] = {
    "t2i_clip": "CLIP cosine, image vs target caption, 0-1 (paper scale; torchmetrics x100)",
    "i2i_clip": "CLIP cosine, image vs target image, 0-1",
    "t2i_blip": "BLIP ITM match probability vs target caption, 0-1",
    "i2i_blip": "BLIP image-feature cosine vs target image, 0-1",
    "judge_aspects": "aspects the judge reads as the target's, 0-7",
    "consistency": "CLIP cosine, image vs the previous round's image, 0-1",
    "satisfied": "share of sessions satisfied, %",
}
METRICS: tuple[str, ...] = tuple(SCALES)


@dataclass
class Scorers:
    """The measuring models: the scoring profile's CLIP (required), BLIP and the judge (optional)."""

    clip: Any
    blip: Any = None
    judge: Any = None
    threshold: float = I2I_SATISFIED

    def satisfaction_rule(self, in_world: bool) -> str:
        if in_world and self.judge is not None:
            return f"the judge reads at least {SATISFIED_ASPECTS} of 7 aspects as the target's"
        return f"I2I CLIP >= {self.threshold:.2f}"

    def round_metrics(self, image: Any, target: Any, previous: Any | None = None) -> dict[str, Any]:
        """Every metric of one round's image against the target (None where a model is missing)."""
        out: dict[str, Any] = {}
        out["t2i_clip"] = float(self.clip.image_text(image, [target.prompt])[0])
        out["i2i_clip"] = float(self.clip.image_image(image, target.image))
        out["consistency"] = float(self.clip.image_image(image, previous)) if previous is not None else None
        if self.blip is not None:
            out["t2i_blip"] = float(self.blip.match_probability(image, target.prompt))
            out["i2i_blip"] = float(self.blip.image_image(image, target.image))
        else:
            out["t2i_blip"] = out["i2i_blip"] = None
        if self.judge is not None and target.record is not None:
            agree = self.judge.agreement(image, target.record)
            out["judge"] = {a: bool(v) for a, v in agree.items()}
            out["judge_aspects"] = int(sum(agree.values()))
            out["satisfied"] = int(out["judge_aspects"] >= SATISFIED_ASPECTS)
        else:
            out["judge_aspects"] = None
            out["satisfied"] = int(out["i2i_clip"] >= self.threshold)
        return out


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan


def bootstrap_ci(
    values: Sequence[float], *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high): the percentile bootstrap interval of the mean over ``values``.

    One value gives a zero-width interval; no values give NaNs (the report prints "n/a")."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return math.nan, math.nan, math.nan
    m = mean(vals)
    if len(vals) == 1:
        return m, m, m
    import numpy as np

    arr = np.asarray(vals, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(arr), size=(samples, len(arr)))
    means = np.sort(arr[idx].mean(axis=1))
    lo_i = int(math.floor((1 - level) / 2 * samples))
    hi_i = min(samples - 1, int(math.ceil((1 + level) / 2 * samples)) - 1)
    return m, float(means[lo_i]), float(means[hi_i])


def overlap(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
    """Do two (mean, low, high) intervals overlap?"""
    return not (a[1] > b[2] or b[1] > a[2])
