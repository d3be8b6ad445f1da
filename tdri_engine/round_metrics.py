"""The scores of one refinement round, for the designer, each with its scale in words.

Per round (issue 10, "the studio shows the metrics of each round"):

* ``t2i_clip``: CLIP score of the round's image against the round's prompt P_t (the prompt the
  generator got): cosine of the L2-normalised CLIP embeddings, clipped at 0, on the paper's 0-1
  scale (``tdri_engine.metrics``; torchmetrics shows 100 x this).
* ``t2i_blip``: BLIP image-text matching probability of the image and P_t, 0-1; only where the
  profile has a ``blip`` role (it is optional), else absent.
* ``i2i_prev_clip``: CLIP score of the image against the image this round started from: the
  round it edited (``ImageRecord.parent_id``) or else the dialogue's previous round. Absent for
  round 0. 1.0 is the same picture; lower means the round changed more.

Why P_t and not the user's intent: in the studio the intent is only in the designer's head, so
the prompt is the one text the image is meant to follow; ``tdri eval`` measures against a known
target instead (``tdri_engine.evaluation.metrics``), on the same scales.

The scores are measured once, in the engine's thread, and stored with the round
(``DialogueTurn.metrics``), so a reopened dialogue shows them without loading a model. A stored
entry names the profile and models that measured it; scores of the demo profile's random models
are marked as meaningless (``random_weights``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import BadInput
from .events import CancelToken
from .records import DialogueTurn, ImageRecord, now_iso

if TYPE_CHECKING:
    from .models import ModelRegistry
    from .store.project import ProjectStore

KEYS: tuple[str, ...] = ("t2i_clip", "t2i_blip", "i2i_prev_clip")

LABELS: dict[str, str] = {
    "t2i_clip": "T2I CLIP",
    "t2i_blip": "BLIP",
    "i2i_prev_clip": "I2I CLIP",
}

WHAT: dict[str, str] = {
    "t2i_clip": "image vs this round's prompt",
    "t2i_blip": "image vs this round's prompt",
    "i2i_prev_clip": "image vs the image this round started from",
}

# The scale of each score in words: its range, what its ends mean, and the paper's figures for
# comparison (table 1, measured against the user's intent, not the round's own prompt).
SCALES: dict[str, str] = {
    "t2i_clip": "cosine of CLIP's image and text embeddings, clipped at 0, on 0–1 (torchmetrics shows "
    "100×); real CLIP ViT-B/32 or ViT-L/14 on a matching text–image pair usually gives 0.25–0.35, "
    "unrelated pairs 0.1–0.2; the paper's TDRI reaches 0.338 against the intent (table 1)",
    "t2i_blip": "BLIP's image–text matching probability, 0–1 (0.5 = undecided, near 1 = BLIP reads the "
    "prompt in the image); the paper's TDRI reaches 0.336 against the intent (table 1)",
    "i2i_prev_clip": "cosine of the two images' CLIP embeddings, clipped at 0, on 0–1: 1 = the same "
    "picture, lower = this round changed more; the paper's I2I CLIP against a target image runs "
    "0.59–0.81 (table 1)",
}

RANDOM_NOTE = "The demo profile's models have random weights: these numbers carry no meaning."


@dataclass(frozen=True)
class RoundMetrics:
    """The stored scores of one round's image (``values`` holds only the measured ones)."""

    image_id: str
    round: int
    values: dict[str, float] = field(default_factory=dict)
    previous_image_id: str | None = None  # what i2i_prev_clip compared with
    previous_round: int | None = None
    profile: str = ""
    models: dict[str, str] = field(default_factory=dict)  # role -> model name that measured
    random_weights: bool = False
    warnings: tuple[str, ...] = ()
    measured: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": {k: float(v) for k, v in self.values.items()},
            "previous_image_id": self.previous_image_id,
            "previous_round": self.previous_round,
            "profile": self.profile,
            "models": dict(self.models),
            "random_weights": self.random_weights,
            "warnings": list(self.warnings),
            "measured": self.measured,
        }

    @classmethod
    def from_turn(cls, turn: DialogueTurn) -> RoundMetrics | None:
        """The metrics stored with ``turn``, or None when it has none (or they are unreadable)."""
        data = turn.metrics
        if not isinstance(data, dict) or not isinstance(data.get("values"), dict):
            return None
        values: dict[str, float] = {}
        for k, v in data["values"].items():
            if k in KEYS and isinstance(v, (int, float)) and math.isfinite(float(v)):
                values[k] = float(v)
        prev_round = data.get("previous_round")
        return cls(
            image_id=turn.image_id or "",
            round=turn.round,
            values=values,
            previous_image_id=data.get("previous_image_id")
            if isinstance(data.get("previous_image_id"), str)
            else None,
            previous_round=prev_round if isinstance(prev_round, int) else None,
            profile=str(data.get("profile") or ""),
            models={str(k): str(v) for k, v in (data.get("models") or {}).items()}
            if isinstance(data.get("models"), dict)
            else {},
            random_weights=bool(data.get("random_weights", False)),
            warnings=tuple(str(w) for w in data.get("warnings") or () if isinstance(w, str)),
            measured=str(data.get("measured") or ""),
        )

    def text(self, key: str) -> str:
        """One score in words with its scale, e.g. "T2I CLIP 0.31 (image vs this round's prompt;
        cosine ..., on 0–1 ...)"; "not measured" with the reason where it is absent."""
        label = LABELS[key]
        if key in self.values:
            return f"{label} {self.values[key]:.3f} ({WHAT[key]}; {SCALES[key]})"
        return f"{label}: not measured ({self.missing_reason(key)})"

    def missing_reason(self, key: str) -> str:
        if key == "t2i_blip":
            return "this profile has no BLIP model"
        if key == "i2i_prev_clip":
            return "the first round has no earlier image"
        return "no score"


def measure(
    clip: Any, blip: Any, image: Any, prompt: str, previous: Any | None = None
) -> tuple[dict[str, float], tuple[str, ...]]:
    """The scores of one image (see the module docstring) and the scorers' warnings (a prompt
    cut to CLIP's or BLIP's context). ``blip`` and ``previous`` may be None: those scores are left out."""
    values: dict[str, float] = {}
    scores, warnings = clip.image_text_with_warnings(image, [prompt])
    values["t2i_clip"] = float(scores[0])
    notes = list(warnings)
    if blip is not None:
        values["t2i_blip"] = float(blip.match_probability(image, prompt))
        notes.extend(getattr(blip, "last_warnings", ()) or ())
    if previous is not None:
        values["i2i_prev_clip"] = float(clip.image_image(image, previous))
    return values, tuple(notes)


def _turn_of(store: ProjectStore, image_id: str) -> DialogueTurn:
    turns = store.find(DialogueTurn, lambda d: d.get("image_id") == image_id)
    if not turns:
        raise BadInput(
            f"The image {image_id} is not a round of a dialogue, so it has no round scores.",
            "Pick a round of the dialogue (the strip under the images).",
        )
    return max(turns, key=lambda t: t.created)


def _previous(store: ProjectStore, turn: DialogueTurn) -> tuple[str | None, int | None]:
    """The image this round started from: the one it edited, else the previous round's."""
    rec = store.get(ImageRecord, turn.image_id) if turn.image_id else None
    turns = store.find(DialogueTurn, lambda d: d.get("dialogue_id") == turn.dialogue_id)
    if rec is not None and rec.parent_id:
        parent = next((t for t in turns if t.image_id == rec.parent_id), None)
        return rec.parent_id, parent.round if parent is not None else None
    earlier = [t for t in turns if t.round < turn.round and t.image_id]
    if not earlier:
        return None, None
    prev = max(earlier, key=lambda t: (t.round, t.created))
    return prev.image_id, prev.round


def stored(store: ProjectStore, image_id: str) -> RoundMetrics | None:
    """The scores stored with the round of ``image_id`` (no model is touched), or None."""
    turns = store.find(DialogueTurn, lambda d: d.get("image_id") == image_id)
    if not turns:
        return None
    return RoundMetrics.from_turn(max(turns, key=lambda t: t.created))


@dataclass(frozen=True)
class Scorers:
    """Where a round's scores come from: callables that load the models on first use (a
    stored round loads nothing), the profile's name and the models' names for the record."""

    clip: Callable[[], Any]
    blip: Callable[[], Any] | None = None  # None: the profile has no BLIP role
    profile: str = ""
    models: dict[str, str] = field(default_factory=dict)
    random_weights: bool = False

    @classmethod
    def of_registry(cls, registry: ModelRegistry) -> Scorers:
        """The registry's ``clip`` and, where the profile has one, ``blip``."""
        from .models import model_name

        profile = registry.profile
        has_blip = registry.has("blip")
        models = {"clip": model_name(profile, "clip")}
        if has_blip:
            models["blip"] = model_name(profile, "blip")
        return cls(
            clip=lambda: registry.get("clip"),
            blip=(lambda: registry.get("blip")) if has_blip else None,
            profile=profile.name,
            models=models,
            random_weights=bool(profile.is_demo),
        )


def measure_round(
    scorers: Scorers,
    store: ProjectStore,
    image_id: str,
    *,
    cancel: CancelToken | None = None,
    remeasure: bool = False,
) -> RoundMetrics:
    """The scores of the round whose image is ``image_id``, measured with ``scorers`` and
    stored with the round; a round that already has them returns them unchanged (no model
    loads) unless ``remeasure``. Runs in the engine thread."""
    turn = _turn_of(store, image_id)
    if not remeasure:
        known = RoundMetrics.from_turn(turn)
        if known is not None:
            return known
    if cancel is not None:
        cancel.raise_if_cancelled()
    image = store.load_image(image_id)
    prev_id, prev_round = _previous(store, turn)
    previous = None
    if prev_id is not None:
        try:
            previous = store.load_image(prev_id)
        except BadInput:  # the earlier image is gone: that score is left out, the others stand
            prev_id, prev_round = None, None
    clip = scorers.clip()
    blip = scorers.blip() if scorers.blip is not None else None
    if cancel is not None:
        cancel.raise_if_cancelled()
    values, warnings = measure(clip, blip, image, turn.prompt, previous)
    result = RoundMetrics(
        image_id=image_id,
        round=turn.round,
        values=values,
        previous_image_id=prev_id,
        previous_round=prev_round,
        profile=scorers.profile,
        models=dict(scorers.models),
        random_weights=scorers.random_weights,
        warnings=warnings,
        measured=now_iso(),
    )
    store.put(turn.replace(metrics=result.to_dict()))
    return result
