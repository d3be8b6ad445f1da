"""Simulated users with a hidden target: where the evaluation's targets come from and how a user
answers and chooses.

A :class:`Target` is what the user has in mind: an image, its full caption (the T2I metrics
measure against it), the short, ambiguous prompt the dialogue starts from, and the truthful
answer to a question on each aspect.

* **The Atelier world** (:func:`world_targets`): a held-out attribute record
  (``atelier.splits``: held-out *combinations*), rendered by ``atelier.world.render``. The start
  prompt is the garment alone ("a dress"); the answer on an aspect is the record's value in words,
  ``atelier.captions.aspect_caption(record, aspect, seed=None)`` (canonical wording: "red",
  "knee-length, loose, short sleeves"); the full caption is the canonical
  ``captions.full_caption``.
* **Anywhere else** (:func:`file_targets`): a JSONL file (or a folder holding ``targets.jsonl``)
  of ``{"image": "x.png", "prompt": "..."}`` lines, or a folder of images each with a ``.txt``
  beside it. The start prompt is the prompt's first noun phrase (:func:`first_noun_phrase`); the
  answer on an aspect is the target image's own caption of that aspect by the profile's VLM, with
  the Reflector's instruction for that aspect (so the user describes their target with the same
  eyes the system uses to describe its image).

:class:`SimulatedUser` answers the asked aspect truthfully and chooses between two images by
their I2I CLIP similarity to the target; two images closer than ``tie_margin`` (0.005 on the
0-1 CLIP scale) are a tie, as a person shown two equally good images would say.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..api import Answer, Reply, Skip
from ..errors import BadInput
from ..records import Choice
from ..settings import ASPECTS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
TIE_MARGIN = 0.005  # on the 0-1 CLIP scale: below this two images are equally close to the target
MAX_START_WORDS = 4

# words that end a noun phrase: prepositions, connectives and clause starts
_PHRASE_END = re.compile(
    r"[,;:.!?()]|\b(with|without|on|in|at|by|of|from|for|wearing|under|near|against|behind|beside|"
    r"and|that|which|who|while|featuring|holding|made)\b",
    re.IGNORECASE,
)


def first_noun_phrase(prompt: str) -> str:
    """The prompt's first noun phrase: the words before the first preposition, connective or
    punctuation mark, at most the last ``MAX_START_WORDS`` of them (the head noun is last in
    English), with an article kept in front. "A red silk dress with a belt on a beach" ->
    "a red silk dress". A heuristic: the paper starts from a short, ambiguous prompt and says
    no more."""
    text = " ".join(str(prompt).split())
    m = _PHRASE_END.search(text)
    head = (text[: m.start()] if m else text).strip()
    words = head.split()
    if not words:
        return text.split()[0] if text.split() else ""
    article = words[0] if words[0].lower() in ("a", "an", "the", "one", "some") else ""
    body = words[1:] if article else words
    body = body[-MAX_START_WORDS:] if body else words[-1:]
    return " ".join(([article] if article else []) + body)


@dataclass
class Target:
    """One hidden target: what the simulated user wants."""

    id: str
    prompt: str  # the full caption: T2I metrics measure against it
    start_prompt: str  # the short, ambiguous prompt the dialogue starts from
    image: Image.Image
    record: Any = None  # the Atelier record in the world; None elsewhere
    answers: dict[str, str] = field(default_factory=dict)  # aspect -> truthful answer (filled lazily)

    @property
    def in_world(self) -> bool:
        return self.record is not None


def world_targets(n: int, *, seed: int = 0, size: tuple[int, int] = (64, 64), start: int = 0) -> list[Target]:
    """``n`` held-out Atelier records (targets ``start .. start+n-1`` of ``seed``), rendered at
    ``size``, with the garment alone as the start prompt."""
    from ..atelier import captions, splits, world

    if n < 1:
        raise BadInput(f"--targets must be at least 1, got {n}.", "Ask for one or more targets.")
    out: list[Target] = []
    for s in splits.sample("heldout", n, seed=seed, start=start):
        rec = s.record
        image = world.render(rec, seed=s.seed, size=size)
        out.append(
            Target(
                id=f"atelier-{seed}-{len(out) + start}",
                prompt=captions.full_caption(rec, seed=None),
                start_prompt=captions.aspect_caption(rec, "Content", seed=None),
                image=image,
                record=rec,
                answers={a: captions.aspect_caption(rec, a, seed=None) for a in ASPECTS},
            )
        )
    return out


def _read_lines(path: Path) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise BadInput(
                f"Line {i} of {path} is not JSON ({exc}).",
                'Write one {"image": "file.png", "prompt": "..."} object per line.',
            ) from None
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("image"), str)
            or not isinstance(row.get("prompt"), str)
        ):
            raise BadInput(
                f"Line {i} of {path} needs an 'image' path and a 'prompt' text.",
                'Write one {"image": "file.png", "prompt": "..."} object per line.',
            )
        rows.append(row)
    return rows


def file_targets(source: Path, n: int | None = None, *, size: tuple[int, int] | None = None) -> list[Target]:
    """Targets from a JSONL file of ``{"image", "prompt"[, "start_prompt", "id"]}`` lines (image
    paths relative to the file), a folder holding ``targets.jsonl``, or a folder of images with a
    ``.txt`` prompt beside each. The first ``n`` (all when None), in file / name order."""
    from ..store.images import load_image_checked

    source = Path(source)
    if source.is_dir() and (source / "targets.jsonl").is_file():
        source = source / "targets.jsonl"
    rows: list[dict[str, Any]]
    if source.is_file():
        base = source.parent
        rows = _read_lines(source)
    elif source.is_dir():
        base = source
        rows = []
        for img in sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            txt = img.with_suffix(".txt")
            if txt.is_file():
                rows.append({"image": img.name, "prompt": txt.read_text(encoding="utf-8").strip()})
    else:
        raise BadInput(
            f"There are no targets at {source}.",
            "Give a JSONL file of image/prompt lines, or a folder of images with a .txt prompt each.",
        )
    if not rows:
        raise BadInput(
            f"No targets found in {source}.",
            "Each target needs an image and its prompt (a JSONL line or an image with a .txt beside it).",
        )
    rows = rows[:n] if n is not None else rows
    out = []
    for i, row in enumerate(rows):
        path = (base / row["image"]).resolve()
        image, _notes = load_image_checked(path)
        image = image.convert("RGB")
        if size is not None and image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        prompt = " ".join(row["prompt"].split())
        if not prompt:
            raise BadInput(f"The target {row['image']} has an empty prompt.", "Write what the image shows.")
        out.append(
            Target(
                id=str(row.get("id") or f"{i:04d}-{Path(row['image']).stem}"),
                prompt=prompt,
                start_prompt=str(row.get("start_prompt") or first_noun_phrase(prompt)),
                image=image,
            )
        )
    return out


class SimulatedUser:
    """Answers from the target, chooses by similarity to it.

    ``describe(image, aspect) -> str`` answers for targets outside the world (the VLM's caption of
    the target on that aspect); ``similarity(a, b) -> float`` is the I2I CLIP score.
    """

    def __init__(
        self,
        target: Target,
        similarity: Callable[[Any, Any], float],
        describe: Callable[[Any, str], str] | None = None,
        *,
        tie_margin: float = TIE_MARGIN,
    ) -> None:
        self.target = target
        self.similarity = similarity
        self.describe = describe
        self.tie_margin = tie_margin

    def answer(self, aspect: str) -> str:
        if aspect not in self.target.answers:
            if self.describe is None:
                return ""
            self.target.answers[aspect] = self.describe(self.target.image, aspect).strip()
        return self.target.answers[aspect]

    def reply(self, question: Any) -> Reply:
        """The truthful answer to the pending question (Skip when none was asked, or the target
        says nothing about the aspect)."""
        if question is None:
            return Skip()
        text = self.answer(question.aspect)
        return Answer(question.aspect, text) if text else Skip()

    def choose(self, left: Any, right: Any) -> tuple[Choice, float, float]:
        """The better of two images by I2I CLIP to the target (a tie within ``tie_margin``),
        with both similarities."""
        a = float(self.similarity(left, self.target.image))
        b = float(self.similarity(right, self.target.image))
        if abs(a - b) < self.tie_margin:
            return Choice.TIE, a, b
        return (Choice.LEFT if a > b else Choice.RIGHT), a, b


def vlm_describer(captioner: Any) -> Callable[[Any, str], str]:
    """``describe(image, aspect)``: the captioner's answer to the Reflector's instruction for the
    aspect (resources/templates/vlm_aspects.json)."""
    from ..templates import default_templates

    instructions = default_templates().vlm["instructions"]

    def describe(image: Any, aspect: str) -> str:
        return str(captioner.caption(image, instructions[aspect]))

    return describe
