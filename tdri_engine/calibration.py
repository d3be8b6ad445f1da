"""Calibration of a profile's two thresholds on its own models: tau and the A&E threshold.

Both thresholds compare CLIP cosines, and what a cosine means depends on the CLIP model: real
CLIP gives matching image-text pairs about 0.2-0.35, a tiny random CLIP anything. A fixed
number therefore asks every round on one profile and never on another. This module measures
instead, over a prompt set (:data:`BUILTIN_PROMPTS` or the user's):

* generate one image per prompt with the profile's generator (text-to-image, the settings'
  steps and size within the profile's limits, seeds ``seed + i``);
* caption it on the seven aspects and score s_i = CLIP(image, caption_i) exactly as the
  Reflector does, then A = sum_i w_i (1 - s_i) with the settings' weights;
* score the misalignment 1 - CLIP(image, prompt) exactly as the session's A&E check does.

tau is then the value that makes the share of rounds with A > tau equal the target question
rate (default 0.5: the paper gives no rate, and a question asked in every round, or in none,
carries no information about the image); the A&E threshold likewise for the misalignment, at
the paper's usage rate of table 6 (31%). With n prompts a rate can only be a multiple of 1/n
(and tied values cannot be split): the threshold is put halfway between two neighbouring
measured values (:func:`threshold_for_rate`), and the rate it really gives on the set is
reported with it.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInput

DEFAULT_QUESTION_RATE = 0.5
DEFAULT_AE_RATE = 0.31  # the paper's table 6: Attend-and-Excite used in about 31% of generations

# Garments, people, objects and places, in the spirit of the paper's two tasks.
BUILTIN_PROMPTS: tuple[str, ...] = (
    "a red silk dress",
    "a woman in a long navy coat",
    "a man wearing a grey wool suit, in a city street",
    "a pair of white leather sneakers on a wooden table",
    "a floral summer dress on a beach at sunset",
    "a leather handbag, studio backdrop",
    "a child in a yellow raincoat in the rain",
    "a knitted beige sweater, close-up",
    "an elegant black evening gown on a runway",
    "a denim jacket with embroidered patches",
    "a model in a pleated skirt, full body, front view",
    "a straw hat on a chair in a garden",
    "a cup of tea with flowers floating on it",
    "a bowl of ramen on a kitchen counter",
    "a cat sleeping on a sofa",
    "a bicycle leaning against a brick wall",
    "a mountain lake at sunrise",
    "a cozy café with wooden tables",
    "a watercolor painting of a lighthouse",
    "a vintage car on a desert road",
    "two friends walking in a park in autumn",
    "a dancer in a flowing white dress, side view",
    "a pair of gold earrings, macro shot",
    "a wool scarf with a tartan pattern",
)


def threshold_for_rate(values: Sequence[float], rate: float) -> float:
    """The threshold whose share of values strictly above it is nearest ``rate``: halfway
    between two neighbouring distinct measured values (just beyond the extremes for the rates 0
    and 1). Equal values cannot be split, so ties make some rates unreachable; among equally
    near rates the higher threshold (fewer questions) wins."""
    if not values:
        raise BadInput("No values to calibrate on.", "Give at least one prompt.")
    if not 0.0 <= rate <= 1.0:
        raise BadInput(f"The target rate {rate} is not in [0, 1].", "Give a share such as 0.5.")
    v = sorted({float(x) for x in values})
    cuts = [v[0] - 1e-3] + [(lo + hi) / 2.0 for lo, hi in zip(v[:-1], v[1:], strict=True)] + [v[-1] + 1e-3]
    return min(reversed(cuts), key=lambda t: abs(rate_above(values, t) - rate))


def rate_above(values: Sequence[float], threshold: float) -> float:
    """The share of values strictly above ``threshold`` (the rule 'ask when A > tau')."""
    return sum(1 for x in values if x > threshold) / len(values) if values else 0.0


@dataclass(frozen=True)
class Sample:
    prompt: str
    seed: int
    scores: dict[str, float]
    ambiguity: float
    misalignment: float


@dataclass(frozen=True)
class CalibrationResult:
    profile: str
    samples: tuple[Sample, ...]
    target_rate: float
    ae_target_rate: float
    tau: float
    ae_threshold: float
    current_tau: float  # the profile's tau before this calibration
    current_ae_threshold: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def ambiguities(self) -> list[float]:
        return [s.ambiguity for s in self.samples]

    @property
    def misalignments(self) -> list[float]:
        return [s.misalignment for s in self.samples]

    @property
    def question_rate(self) -> float:
        return rate_above(self.ambiguities, self.tau)

    @property
    def ae_rate(self) -> float:
        return rate_above(self.misalignments, self.ae_threshold)

    @property
    def current_question_rate(self) -> float:
        return rate_above(self.ambiguities, self.current_tau)

    @property
    def current_ae_rate(self) -> float:
        return rate_above(self.misalignments, self.current_ae_threshold)

    def thresholds(self, source: str = "") -> Any:
        """The profile ``Thresholds`` this calibration sets."""
        from .models import Thresholds

        return Thresholds(
            tau=self.tau,
            ae_threshold=self.ae_threshold,
            question_rate=round(self.question_rate, 4),
            ae_rate=round(self.ae_rate, 4),
            ambiguity=_moments(self.ambiguities),
            misalignment=_moments(self.misalignments),
            calibrated=True,
            source=source or f"tdri models calibrate --profile {self.profile} ({len(self.samples)} prompts)",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "prompts": len(self.samples),
            "target_question_rate": self.target_rate,
            "target_ae_rate": self.ae_target_rate,
            "thresholds": self.thresholds().to_dict(),
            "current": {
                "tau": self.current_tau,
                "question_rate": round(self.current_question_rate, 4),
                "ae_threshold": self.current_ae_threshold,
                "ae_rate": round(self.current_ae_rate, 4),
            },
            "settings": self.settings,
            "samples": [
                {
                    "prompt": s.prompt,
                    "seed": s.seed,
                    "ambiguity": round(s.ambiguity, 6),
                    "misalignment": round(s.misalignment, 6),
                    "scores": {a: round(v, 6) for a, v in s.scores.items()},
                }
                for s in self.samples
            ],
        }

    def summary_lines(self) -> list[str]:
        a, m = self.ambiguities, self.misalignments
        return [
            f"Profile '{self.profile}', {len(self.samples)} prompts.",
            f"ambiguity A:        min {min(a):.4f}  median {statistics.median(a):.4f}  max {max(a):.4f}",
            f"1 - CLIP(I, P):     min {min(m):.4f}  median {statistics.median(m):.4f}  max {max(m):.4f}",
            f"current tau {self.current_tau:.4f} -> question rate {self.current_question_rate:.0%}",
            f"calibrated tau {self.tau:.4f} -> question rate {self.question_rate:.0%} "
            f"(target {self.target_rate:.0%})",
            f"current A&E threshold {self.current_ae_threshold:.4f} -> A&E rate {self.current_ae_rate:.0%}",
            f"calibrated A&E threshold {self.ae_threshold:.4f} -> A&E rate {self.ae_rate:.0%} "
            f"(target {self.ae_target_rate:.0%})",
        ]


def _moments(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    return round(mean, 4), round(sd, 4)


def read_prompts(path: Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with # are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"Could not read the prompts file {path}: {exc}.", "Give a UTF-8 text file.") from None
    prompts = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise BadInput(f"The prompts file {path} has no prompts.", "Write one prompt per line.")
    return prompts


def calibrate(
    engine: Any,
    prompts: Sequence[str] = BUILTIN_PROMPTS,
    *,
    target_rate: float = DEFAULT_QUESTION_RATE,
    ae_target_rate: float = DEFAULT_AE_RATE,
    seed: int = 0,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> CalibrationResult:
    """Generate, caption and score every prompt on ``engine``'s models (see the module docstring)."""
    from .reflector import Reflector, ambiguity

    for name, r in (("target rate", target_rate), ("A&E target rate", ae_target_rate)):
        if not 0.0 <= r <= 1.0 or math.isnan(r):
            raise BadInput(f"The {name} {r} is not in [0, 1].", "Give a share such as 0.5.")
    prompts = [p.strip() for p in prompts if p and p.strip()]
    if not prompts:
        raise BadInput("No prompts to calibrate on.", "Give at least one prompt.")
    engine.ensure_models()
    settings, _ = engine.session_settings(engine.settings)
    gen = engine.generator
    gen.settings = settings
    registry = engine.registry
    clip = registry.get("clip")
    reflector = Reflector(registry.get("vlm"), clip, settings)
    samples = []
    for i, prompt in enumerate(prompts):
        if on_progress is not None:
            on_progress(i, len(prompts), prompt)
        image = gen.generate(prompt, seed=seed + i).image
        scores, _ = reflector.similarities(image, reflector.captions(image))
        a = ambiguity(scores, settings.aspect_weights)
        misalignment = 1.0 - float(clip.image_text(image, [prompt])[0])
        samples.append(Sample(prompt, seed + i, scores, a, misalignment))
    if on_progress is not None:
        on_progress(len(prompts), len(prompts), "done")
    a_values = [s.ambiguity for s in samples]
    m_values = [s.misalignment for s in samples]
    return CalibrationResult(
        profile=engine.profile_name,
        samples=tuple(samples),
        target_rate=target_rate,
        ae_target_rate=ae_target_rate,
        # 4 decimals for people to read; every rate reported is the rounded value's
        tau=round(threshold_for_rate(a_values, target_rate), 4),
        ae_threshold=round(threshold_for_rate(m_values, ae_target_rate), 4),
        current_tau=float(settings.tau),
        current_ae_threshold=float(settings.ae_threshold),
        settings={
            "steps": settings.steps,
            "width": settings.width,
            "height": settings.height,
            "guidance": settings.guidance,
            "aspect_weights": dict(settings.aspect_weights),
            "seed": seed,
        },
    )


def write_result(result: CalibrationResult, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
