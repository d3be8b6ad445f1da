"""Captions of Atelier records: a full caption and one answer per aspect, in varied wordings.

The per-aspect captions answer the Reflector's instructions (``resources/templates/
vlm_aspects.json``) the way a good captioner would: Content names the garment, Color the colour,
Size length / fit / sleeves, Style how it is shown, Background the setting, Perspective the
viewpoint, Others the pattern and accessory. Words are chosen from the prompt parser's keyword
lists (``keywords.json``: "beach", "front view", "knee-length", "striped" …) so the structured
summarizer and the Reflector place them in the right aspect.

Each value has several phrasings (``PHRASES``; the first is canonical) and each caption several
templates; which ones a caption uses is drawn from ``random.Random(seed)``, so the same
(record, seed) gives the same text. Every phrasing of a value contains one of its ``NAMES``
(the words a reader, or a test, looks for).
"""

from __future__ import annotations

import random

from ..settings import ASPECTS
from .world import ASPECT_FIELDS, Record

# value -> phrasings; the first is canonical (zero-shot prompts and prompts for the generator)
PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "garment": {
        "t-shirt": ("t-shirt", "basic t-shirt", "t-shirt top"),
        "shirt": ("shirt", "collared shirt", "button-up shirt"),
        "hoodie": ("hoodie", "pullover hoodie", "hoodie top"),
        "dress": ("dress", "frock dress", "one-piece dress"),
        "coat": ("coat", "overcoat", "wool coat"),
        "jumpsuit": ("jumpsuit", "one-piece jumpsuit", "jumpsuit outfit"),
        "skirt": ("skirt", "a-line skirt", "flared skirt"),
        "trousers": ("trousers", "tailored trousers", "pair of trousers"),
    },
    "color": {
        c: (c, f"{c} coloured", f"bright {c}" if c not in ("white", "black", "grey") else f"plain {c}")
        for c in (
            "red",
            "orange",
            "yellow",
            "green",
            "blue",
            "navy",
            "purple",
            "pink",
            "white",
            "black",
            "brown",
            "grey",
        )
    },  # fmt: skip
    "length": {
        "short": ("short", "short length", "mini length short"),
        "knee-length": ("knee-length", "knee-length cut", "midi knee-length"),
        "long": ("long", "full-length long", "long length"),
    },
    "fit": {
        "fitted": ("fitted", "slim fitted", "fitted cut"),
        "loose": ("loose", "loose fit", "wide loose"),
    },
    "sleeves": {
        "sleeveless": ("sleeveless", "without sleeves, sleeveless", "sleeveless cut"),
        "short sleeves": ("short sleeves", "with short sleeves", "short-sleeved, short sleeves"),
        "long sleeves": ("long sleeves", "with long sleeves", "long-sleeved, long sleeves"),
    },
    "style": {
        "flat lay": ("flat lay", "flat lay photo", "laid flat, flat lay"),
        "line sketch": ("line sketch", "pencil line sketch", "sketch drawing, line sketch"),
        "on a mannequin": ("on a mannequin", "worn on a mannequin", "displayed on a mannequin"),
        "on a hanger": ("on a hanger", "hanging on a hanger", "on a hanger in a wardrobe"),
    },
    "background": {
        "studio": ("studio", "plain studio backdrop", "photo studio"),
        "beach": ("beach", "sandy beach by the sea", "beach"),
        "street": ("street", "city street", "brick street"),
        "garden": ("garden", "flower garden", "green garden"),
        "runway": ("runway", "fashion runway", "catwalk runway"),
        "forest": ("forest", "pine forest", "dark forest"),
    },
    "perspective": {
        "front view": ("front view", "seen from the front, front view", "front view shot"),
        "back view": ("back view", "seen from behind, back view", "back view shot"),
        "side view": ("side view", "seen from the side, side view", "side view shot"),
        "close-up": ("close-up", "close-up shot", "detail close-up"),
        "full body": ("full body", "full body shot", "wide full body view"),
    },
    "pattern": {
        "plain": ("plain", "solid plain", "plain, no pattern"),
        "stripes": ("stripes", "striped, with stripes", "horizontal stripes"),
        "dots": ("dots", "polka dots", "dotted, polka dots"),
        "checks": ("checks", "checked, checks", "gingham checks"),
    },
    "accessory": {
        "none": ("no accessories", "no accessory", "without accessories, no accessories"),
        "belt": ("a belt", "with a belt", "a leather belt"),
        "bag": ("a bag", "with a bag", "a handbag, a bag"),
        "hat": ("a hat", "with a hat", "a dark hat"),
    },
}
# words that must appear for a caption to name a value (the canonical phrase, lower case)
NAMES: dict[str, dict[str, str]] = {f: {v: p[0] for v, p in vals.items()} for f, vals in PHRASES.items()}
NAMES["accessory"] = {"none": "no accessor", "belt": "belt", "bag": "bag", "hat": "hat"}

_SETTING = {  # background as a place phrase
    "studio": ("in a studio", "against a plain studio backdrop", "in a photo studio"),
    "beach": ("on a beach", "on a sandy beach by the sea", "at the beach"),
    "street": ("in a city street", "on a brick street", "in the street"),
    "garden": ("in a garden", "in a flower garden", "in a green garden"),
    "runway": ("on a runway", "on a fashion runway", "on the catwalk runway"),
    "forest": ("in a forest", "in a pine forest", "in a dark forest"),
}


def phrase(field: str, value: str | None, rng: random.Random | None = None) -> str:
    """One phrasing of ``value`` (canonical without ``rng``)."""
    if value is None:
        return ""
    options = PHRASES[field][value]
    return options[0] if rng is None else rng.choice(options)


def _size_words(record: Record, rng: random.Random | None) -> list[str]:
    words = [phrase("length", record.length, rng), phrase("fit", record.fit, rng)]
    if record.sleeves is not None:
        words.append(phrase("sleeves", record.sleeves, rng))
    return words


def _others_words(record: Record, rng: random.Random | None) -> list[str]:
    return [phrase("pattern", record.pattern, rng), phrase("accessory", record.accessory, rng)]


def aspect_caption(record: Record, aspect: str, seed: int | None = 0) -> str:
    """The answer to the Reflector's instruction for ``aspect``; canonical with ``seed=None``."""
    rng = None if seed is None else random.Random(f"{aspect}:{seed}")
    pick = (lambda xs: xs[0]) if rng is None else rng.choice
    if aspect == "Content":
        g = phrase("garment", record.garment, rng)
        return pick((f"a {g}", f"a {g}", f"the {g}"))
    if aspect == "Color":
        c = phrase("color", record.color, rng)
        return pick((c, f"mostly {c}", f"{c} garment"))
    if aspect == "Size":
        return ", ".join(_size_words(record, rng))
    if aspect == "Style":
        return phrase("style", record.style, rng)
    if aspect == "Background":
        return (
            phrase("background", record.background, rng)
            if rng is None
            else rng.choice((phrase("background", record.background, rng), pick(_SETTING[record.background])))
        )
    if aspect == "Perspective":
        return phrase("perspective", record.perspective, rng)
    if aspect == "Others":
        words = _others_words(record, rng)
        return ", ".join(words) if rng is None else pick((", ".join(words), " and ".join(words)))
    raise KeyError(aspect)


def aspect_captions(record: Record, seed: int | None = 0) -> dict[str, str]:
    """One caption per aspect, in the paper's aspect order."""
    return {a: aspect_caption(record, a, seed) for a in ASPECTS}


def full_caption(record: Record, seed: int | None = 0) -> str:
    """A full description naming every field; wording and order drawn from ``seed``.

    Canonical (``seed=None``): "a red striped loose knee-length dress with short sleeves and a
    belt, flat lay, on a beach, front view" — short enough for CLIP's 77 tokens.
    """
    rng = None if seed is None else random.Random(f"full:{seed}")
    c = phrase("color", record.color, rng)
    g = phrase("garment", record.garment, rng)
    size = _size_words(record, rng)
    sleeves = size[2] if len(size) > 2 else ""
    length_fit = " ".join(size[:2])
    pattern = "" if record.pattern == "plain" else phrase("pattern", record.pattern, rng)
    extras = [
        s
        for s in (
            sleeves,
            pattern,
            "" if record.accessory == "none" else phrase("accessory", record.accessory, rng),
        )
        if s
    ]
    style = phrase("style", record.style, rng)
    place = _SETTING[record.background][0] if rng is None else rng.choice(_SETTING[record.background])
    view = phrase("perspective", record.perspective, rng)
    subject = f"a {c} {length_fit} {g}" + (f" with {', '.join(extras)}" if extras else "")
    if record.pattern == "plain":
        subject += ", plain"
    if record.accessory == "none":
        subject += ", no accessories"
    if rng is None:
        return f"{subject}, {style}, {place}, {view}"
    parts = [style, place, view]
    rng.shuffle(parts)
    template = rng.choice(("{s}, {p}", "{s}; {p}", "photo of {s}, {p}", "fashion picture: {s}, {p}"))
    return template.format(s=subject, p=", ".join(parts))


def value_prompt(field: str, value: str) -> str:
    """The zero-shot text for one field value (what CLIP is asked to match)."""
    name = NAMES[field][value]
    if field == "background":
        return _SETTING[value][0]
    if field == "garment":
        return "a pair of trousers" if value == "trousers" else f"a {name}"
    if field in ("color", "length", "fit"):
        return f"{name} garment"
    if field == "sleeves":
        return f"garment with {name}"
    if field == "accessory":
        return PHRASES["accessory"][value][1] if value != "none" else PHRASES["accessory"][value][0]
    return name  # style, perspective, pattern


def field_of_aspect(aspect: str) -> tuple[str, ...]:
    return ASPECT_FIELDS[aspect]
