"""The Atelier's one-click answers: the world's own values, worded as its models were trained.

The generic question template (``resources/templates/questions.json``) offers answers such as
"bohemian", "watercolor" or "a model wearing it"; the Atelier's generator never saw those words,
so a click on one gives a prompt it cannot draw, while the values it knows are not offered. This
module builds ``resources/templates/questions_atelier.json`` (the ``questions`` template the
``atelier`` profile names, see ``templates.questions_templates``) from ``world.VOCAB`` and the
captions' wording:

* Content: "a t-shirt" … "a pair of trousers" (``captions.value_prompt``); Color: the colour name
  ("red"); Size: "short", "knee-length", "long", "fitted", "loose", "sleeveless", "short
  sleeves", "long sleeves"; Style: "flat lay", "line sketch", "on a mannequin", "on a hanger";
  Background: the place phrases of the full captions ("in a studio", "on a beach", "in a city
  street" …); Perspective: "front view" … "full body"; Others: "with stripes", "with a belt" …,
  "plain", "no accessories".
* ``stated_by``: per option, the pattern ``captions.mentions`` reads its value with. The
  Reflector leaves an option out when the prompt states it, and ranks it last when the image's
  caption for the aspect names it; a literal match would miss "trousers on the beach" for
  "a pair of trousers" / "on a beach" and would read "short" in "short sleeves".
* ``applies_to``: per option of a field only some garments have (sleeves, ``world.SLEEVED``),
  the Content answers of those garments. The Reflector offers "sleeveless", "short sleeves"
  and "long sleeves" for a dress, not for a skirt or a pair of trousers (the world has no
  sleeves there: a click would ask for a picture it never draws).
* Order (the studio shows six answers, Alt+1 … Alt+6, ``studio/shortcuts.py`` "refine.answer"):
  an aspect with several fields takes them in turn (Size: a length, a fit, a sleeve length, …;
  Others: a pattern, an accessory, …), the defaults "plain" / "no accessories" last, so any six
  cover every field. The twelve colours go in farthest-point order in RGB from red (each next
  colour the one farthest from all before it), so any six of them spread over the colour space
  rather than being the first six of the world's list (no white, black or grey).

``python -m tdri_engine.atelier.questions`` rewrites the file; a test checks that the committed
file equals :func:`template` (no drift from the world's vocabulary).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..settings import ASPECTS
from . import captions
from .world import ASPECT_FIELDS, COLORS, SLEEVED, VOCAB

MAX_OPTIONS = 6  # the studio's one-click answers (Alt+1 … Alt+6); more would not be shown
DEFAULTS = {"pattern": "plain", "accessory": "none"}  # the least telling answers: offered last
# fields only some garments have (a record of any other garment holds None there)
ONLY_SOME_GARMENTS: dict[str, frozenset[str]] = {"sleeves": SLEEVED}


def wording(field: str, value: str) -> str:
    """The one-click answer for a world value, as the captions word it in a prompt."""
    if field in ("garment", "background") or (field, value) == ("accessory", "none"):
        return captions.value_prompt(field, value)
    if field == "accessory":
        return f"with {captions.PHRASES['accessory'][value][0]}"
    if field == "pattern" and value != "plain":
        return f"with {captions.PHRASES['pattern'][value][0]}"
    return captions.PHRASES[field][value][0]


def color_order(start: str = "red") -> list[str]:
    """World colours in farthest-point order in RGB from ``start`` (deterministic: ties go to the
    world's order)."""
    rgb = {c: tuple(float(v) for v in COLORS[c]) for c in VOCAB["color"]}

    def dist(a: str, b: str) -> float:
        return sum((x - y) ** 2 for x, y in zip(rgb[a], rgb[b], strict=True)) ** 0.5

    order = [start]
    while len(order) < len(rgb):
        rest = [c for c in VOCAB["color"] if c not in order]
        order.append(max(rest, key=lambda c: min(dist(c, o) for o in order)))
    return order


def field_values(field: str) -> list[str]:
    """A field's values in the order they are offered (colours spread; defaults last)."""
    if field == "color":
        return color_order()
    values = list(VOCAB[field])
    if field in DEFAULTS:
        values.remove(DEFAULTS[field])
        values.append(DEFAULTS[field])
    return values


def aspect_values(aspect: str) -> list[tuple[str, str]]:
    """(field, value) pairs of an aspect, its fields taken in turn."""
    columns = [[(f, v) for v in field_values(f)] for f in ASPECT_FIELDS[aspect]]
    out: list[tuple[str, str]] = []
    for i in range(max(len(c) for c in columns)):
        out += [c[i] for c in columns if i < len(c)]
    return out


def garments_with(field: str) -> list[str]:
    """The Content answers of the garments that have ``field`` (sleeves: ``world.SLEEVED``)."""
    return [wording("garment", g) for g in VOCAB["garment"] if g in ONLY_SOME_GARMENTS[field]]


def template() -> dict:
    """The ``questions`` template of the atelier profile (merged over questions.json's)."""
    aspects: dict[str, dict] = {}
    for aspect in ASPECTS:
        pairs = aspect_values(aspect)
        spec: dict = {
            "options": [wording(f, v) for f, v in pairs],
            "stated_by": {wording(f, v): captions._MENTION[f][v] for f, v in pairs},
        }
        applies_to = {wording(f, v): garments_with(f) for f, v in pairs if f in ONLY_SOME_GARMENTS}
        if applies_to:
            spec["applies_to"] = applies_to
        aspects[aspect] = spec
    aspects["Content"]["templates"] = [
        "Which garment should the image show?",
        "What kind of garment should it be?",
    ]
    aspects["Others"]["templates"] = [
        "Which pattern or accessory should {subject} have?",
        "Any pattern or accessory for {subject}?",
    ]
    return {
        "_about": "Generated by python -m tdri_engine.atelier.questions from the Atelier world's "
        "vocabulary (world.VOCAB) in its captions' wording; do not edit by hand. Merged over "
        "questions.json for the atelier profile: each aspect's options, stated_by and templates "
        "replace the generic ones; an option in applies_to is offered only for those garments.",
        "max_options": MAX_OPTIONS,
        "shown_last": True,
        "aspects": aspects,
    }


def text() -> str:
    return json.dumps(template(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    from ..paths import resource_path

    path = Path(argv[0]) if argv else resource_path("templates") / "questions_atelier.json"
    path.write_text(text(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
