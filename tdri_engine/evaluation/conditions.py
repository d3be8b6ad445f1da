"""The conditions an evaluation compares, run on the same targets and seeds, and the prompt
augmenters of the no-dialogue baseline.

=================  ===========================================================================
name               what runs (every dialogue condition: the engine's RefinementSession)
=================  ===========================================================================
``single``         single-shot: one image from the start prompt; later rounds keep it (the
                   user has nothing more to say to a one-shot system)
``augment``        prompt augmentation without questions (paper table 1's GPT/LLaMA rows): each
                   round a fresh augmentation of the start prompt, generated with the round's
                   seed. By the profile's ``llm`` when it has one, else (or when the LLM's reply is
                   unusable) by :class:`RuleAugmenter`
``random``         dialogue whose questions ask about a random aspect (FR off:
                   ``question_aspect='random'``)
``tdri``           TDRI: FR asks about one of the 3 lowest-scoring aspects; edits the previous image
``tdri-ao``        TDRI + AO: the user's choice each round is a preference pair; a Diffusion-DPO
                   update runs every ``update_every`` (40) decisive choices, on one adapter shared
                   by all targets of the run (the paper's *generalised* adapter, table 5)
``ao-sample``      TDRI + AO with a *sample-specific* adapter: a project per target, an update
                   every ``max(2, rounds // 2)`` choices (a target gives one choice per round, so 40
                   would never come)
``scratch``        TDRI generating every round anew instead of editing (table 3 of the paper's text)
``no-ae``          TDRI without Attend-and-Excite (table 6)
``vlm:PROFILE``    TDRI with the ``vlm`` role of another profile (VLM swap, table 7)
=================  ===========================================================================

The dialogue conditions differ from ``tdri`` in exactly the settings named above.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadInput

DIALOGUE = "dialogue"
SINGLE = "single"
AUGMENT = "augment"


@dataclass(frozen=True)
class Condition:
    name: str
    kind: str  # "single" | "augment" | "dialogue"
    label: str
    settings: dict[str, Any] = field(default_factory=dict)  # EngineSettings changes
    train: str | None = None  # None | "shared" | "sample": the AO adapter
    vlm_profile: str | None = None


BUILTIN: dict[str, Condition] = {
    c.name: c
    for c in (
        Condition("single", SINGLE, "single-shot prompt"),
        Condition("augment", AUGMENT, "prompt augmentation, no questions"),
        Condition("random", DIALOGUE, "questions on a random aspect (FR off)", {"question_aspect": "random"}),
        Condition("tdri", DIALOGUE, "TDRI (FR: one of the 3 lowest aspects)"),
        Condition("tdri-ao", DIALOGUE, "TDRI + AO, generalised adapter", train="shared"),
        Condition("ao-sample", DIALOGUE, "TDRI + AO, sample-specific adapter", train="sample"),
        Condition("scratch", DIALOGUE, "TDRI, generating anew", {"refine_mode": "scratch"}),
        Condition("no-ae", DIALOGUE, "TDRI without Attend-and-Excite", {"use_attend_excite": False}),
    )
}
ALL_DEFAULT = ("single", "augment", "random", "tdri", "tdri-ao", "scratch", "no-ae")


def parse_conditions(text: str) -> list[Condition]:
    """``"single,tdri,vlm:sd15"`` -> conditions, in the order given, each once."""
    out: list[Condition] = []
    for raw in (p.strip() for p in str(text).split(",")):
        if not raw:
            continue
        if raw == "all":
            out.extend(BUILTIN[n] for n in ALL_DEFAULT)
            continue
        if raw.startswith("vlm:"):
            profile = raw[4:].strip()
            if not profile:
                raise BadInput("vlm: needs a profile name (vlm:sd15).", "Name the profile whose vlm to use.")
            out.append(Condition(raw, DIALOGUE, f"TDRI with the vlm of '{profile}'", vlm_profile=profile))
            continue
        if raw not in BUILTIN:
            raise BadInput(
                f"Unknown condition {raw!r}.",
                f"Use any of: {', '.join(BUILTIN)}, vlm:PROFILE, or all.",
            )
        out.append(BUILTIN[raw])
    seen: set[str] = set()
    unique = [c for c in out if not (c.name in seen or seen.add(c.name))]  # type: ignore[func-returns-value]
    if not unique:
        raise BadInput("No condition given.", "Pass --conditions single,tdri (or all).")
    return unique


# --------------------------------------------------------------------------------------------
# augmenters (the no-question baseline)
# --------------------------------------------------------------------------------------------

# keyword lists of the prompt parser the rule augmenter draws from, one per aspect it may add
_AUGMENT_SLOTS = ("colors", "sizes", "styles", "places", "perspectives", "patterns", "materials")
AUGMENT_ADDS = 3


class RuleAugmenter:
    """Adds ``AUGMENT_ADDS`` plausible attributes to a prompt: for 3 aspects drawn at random, one
    word from the structured summarizer's keyword list of that aspect (``keywords.json``), in the
    phrasing the parser reads back ("in a garden", "striped", "front view"). It knows nothing of
    the target: that is the baseline's point (an LLM that embellishes a prompt cannot know what
    the user meant either)."""

    name = "rules"

    def __init__(self, keywords: dict[str, list[str]] | None = None):
        if keywords is None:
            from ..templates import default_templates

            keywords = default_templates().keywords
        self.keywords = {k: [w for w in keywords.get(k, []) if w not in ("background", "backdrop", "scene",
                                                                          "setting", "style", "styled")]
                         for k in _AUGMENT_SLOTS}  # fmt: skip

    def augment(self, prompt: str, seed: int) -> tuple[str, list[str]]:
        rng = random.Random(f"augment:{seed}")
        slots = rng.sample([s for s in _AUGMENT_SLOTS if self.keywords[s]], AUGMENT_ADDS)
        front: list[str] = []
        back: list[str] = []
        for slot in slots:
            word = rng.choice(self.keywords[slot])
            if slot in ("colors", "sizes", "patterns", "materials"):
                front.append(word)
            elif slot == "places":
                back.append(f"in a {word}" if not word.endswith("s") else f"in the {word}")
            else:
                back.append(word)
        text = " ".join(str(prompt).split())
        m = re.match(r"^(a|an|the|one|some)\s+(.+)$", text, re.IGNORECASE)
        if m and front:
            article = (
                "an" if front[0][0].lower() in "aeiou" and m.group(1).lower() in ("a", "an") else m.group(1)
            )
            text = f"{article} {' '.join(front)} {m.group(2)}"
        elif front:
            text = f"{' '.join(front)} {text}"
        return ", ".join([text, *back]), []


class LLMAugmenter:
    """The profile's local chat model rewrites the prompt with more detail (the paper's GPT /
    LLaMA augmentation). A reply that is no usable prompt (empty, an echo, a refusal: the
    summarizer's ``unusable_reason``) falls back to :class:`RuleAugmenter`, and says so."""

    name = "llm"
    SYSTEM = (
        "You write prompts for an image generator. Rewrite the user's short prompt into one richer "
        "prompt: add colour, size, style, background, viewpoint and details. Reply with the prompt only."
    )

    def __init__(self, llm: Any, fallback: RuleAugmenter | None = None, max_new_tokens: int = 48):
        self.llm = llm
        self.fallback = fallback or RuleAugmenter()
        self.max_new_tokens = max_new_tokens

    def augment(self, prompt: str, seed: int) -> tuple[str, list[str]]:
        from ..llm import extract_reply_line, unusable_reason

        messages = [{"role": "system", "content": self.SYSTEM}, {"role": "user", "content": prompt}]
        raw = self.llm.generate(messages, max_new_tokens=self.max_new_tokens, seed=seed)
        candidate = extract_reply_line(raw, 300)
        reason = unusable_reason(candidate, prompt, set())
        if reason is None:
            return candidate, []
        text, notes = self.fallback.augment(prompt, seed)
        return text, [
            *notes,
            f"The LLM's augmentation could not be used ({reason}); rule augmentation instead.",
        ]
