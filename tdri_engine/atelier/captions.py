"""Captions of Atelier records: a full caption and one answer per aspect, in varied wordings.

The per-aspect captions answer the Reflector's instructions (``resources/templates/
vlm_aspects.json``) the way a good captioner would: Content names the garment, Color the colour,
Size length / fit / sleeves, Style how it is shown, Background the setting, Perspective the
viewpoint, Others the pattern and accessory. Words are chosen from the prompt parser's keyword
lists (``keywords.json``: "beach", "front view", "knee-length", "stripes" …) so the structured
summarizer and the Reflector place them in the right aspect.

Each value has a few phrasings (``PHRASES``; the first is canonical) and each caption a few
templates; which ones a caption uses is drawn from ``random.Random(seed)``, so the same
(record, seed) gives the same text. Every phrasing of a value contains its ``NAMES`` entry as a
whole word (not joined by a hyphen: "red-coloured" or "handbag" would hide the value from a
whole-word reader), and a caption names every value once (``mentions`` reads them back).

Grammar of the full caption (English adjective order, where the paper is silent): length, fit,
colour, garment ("a short loose red dress"); "plain" goes before the colour as English puts it
("a plain red dress"), "sleeveless" just before the garment; sleeves with a length, a pattern and
the accessory follow in one "with" list ("with long sleeves, stripes and a belt"). Style, place
and view follow as tags ("flat lay, in a studio, front view") or in a sentence ("a front view of
…, laid out as a flat lay in a studio"). No phrasing puts the garment somewhere the place
contradicts (no wardrobe in a forest).
"""

from __future__ import annotations

import random
import re

from ..prompt_parser import join_and
from ..settings import ASPECTS
from .world import ASPECT_FIELDS, FIELDS, Record

_SHADE = {
    "red": "bright",
    "orange": "bright",
    "yellow": "bright",
    "green": "bright",
    "blue": "bright",
    "navy": "deep",
    "purple": "deep",
    "pink": "bright",
    "white": "bright",
    "black": "deep",
    "brown": "deep",
    "grey": "soft",
    "teal": "deep",  # the NOVEL colour (world.NOVEL): captions exist for a fine-tuning folder
}

# value -> phrasings; the first is canonical (zero-shot prompts and prompts for the generator)
PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "garment": {
        "t-shirt": ("t-shirt", "crew-neck t-shirt", "basic t-shirt"),
        "shirt": ("shirt", "collared shirt", "button-up shirt"),
        "hoodie": ("hoodie", "pullover hoodie"),
        "dress": ("dress", "one-piece dress", "day dress"),
        "coat": ("coat", "buttoned coat", "winter coat"),
        "jumpsuit": ("jumpsuit", "one-piece jumpsuit"),
        "skirt": ("skirt", "flared skirt"),
        "trousers": ("trousers", "tailored trousers"),
    },
    "color": {c: (c, f"{shade} {c}") for c, shade in _SHADE.items()},
    "length": {"short": ("short",), "knee-length": ("knee-length",), "long": ("long",)},
    "fit": {"fitted": ("fitted",), "loose": ("loose",)},
    "sleeves": {
        "sleeveless": ("sleeveless",),
        "short sleeves": ("short sleeves",),
        "long sleeves": ("long sleeves",),
    },
    "style": {
        "flat lay": ("flat lay", "a flat lay", "laid out as a flat lay"),
        "line sketch": ("line sketch", "a line sketch", "drawn as a line sketch"),
        "on a mannequin": ("on a mannequin", "worn on a mannequin", "displayed on a mannequin"),
        "on a hanger": ("on a hanger", "hanging on a hanger"),
    },
    "background": {
        "studio": ("studio", "photo studio"),
        "beach": ("beach", "sandy beach"),
        "street": ("street", "city street", "brick street"),
        "garden": ("garden", "flower garden"),
        "runway": ("runway", "fashion runway", "catwalk runway"),
        "forest": ("forest", "pine forest", "dark forest"),
    },
    "perspective": {
        "front view": ("front view", "a front view"),
        "back view": ("back view", "a back view"),
        "side view": ("side view", "a side view"),
        "close-up": ("close-up", "a close-up"),
        "full body": ("full body", "full body shot", "full body view"),
    },
    "pattern": {
        "plain": ("plain",),
        "stripes": ("stripes", "horizontal stripes"),
        "dots": ("dots", "polka dots"),
        "checks": ("checks", "gingham checks"),
    },
    "accessory": {
        "none": ("no accessories", "no accessory"),
        "belt": ("a belt", "a leather belt"),
        "bag": ("a bag", "a shoulder bag"),
        "hat": ("a hat", "a dark hat"),
    },
}
# words that must appear for a caption to name a value (the canonical phrase, lower case)
NAMES: dict[str, dict[str, str]] = {f: {v: p[0] for v, p in vals.items()} for f, vals in PHRASES.items()}
NAMES["accessory"] = {"none": "no accessor", "belt": "belt", "bag": "bag", "hat": "hat"}

_SETTING = {  # background as a place phrase
    "studio": ("in a studio", "in a photo studio", "against a studio backdrop"),
    "beach": ("on a beach", "on a sandy beach", "at the beach"),
    "street": ("in a city street", "on a brick street", "in the street"),
    "garden": ("in a garden", "in a flower garden", "in a rose garden"),
    "runway": ("on a runway", "on a fashion runway", "on a catwalk runway"),
    "forest": ("in a forest", "in a pine forest", "in a dark forest"),
}
# style and perspective inside a sentence ("…, laid out as a flat lay in a studio")
_STYLE_IN_SENTENCE = {
    "flat lay": ("laid out as a flat lay", "shown as a flat lay"),
    "line sketch": ("drawn as a line sketch",),
    "on a mannequin": ("on a mannequin", "worn on a mannequin", "displayed on a mannequin"),
    "on a hanger": ("on a hanger", "hanging on a hanger"),
}
_VIEW_OF = {  # "a front view of <subject>"
    "front view": "a front view of",
    "back view": "a back view of",
    "side view": "a side view of",
    "close-up": "a close-up of",
    "full body": "a full body view of",
}


def phrase(field: str, value: str | None, rng: random.Random | None = None) -> str:
    """One phrasing of ``value`` (canonical without ``rng``)."""
    if value is None:
        return ""
    options = PHRASES[field][value]
    return options[0] if rng is None else rng.choice(options)


def article(word: str) -> str:
    """ "a" or "an" before ``word`` (by its first sound: "an orange", "a one-piece")."""
    w = word.lower()
    return "an" if w[:1] in "aeiou" and not w.startswith(("one", "uni", "eu")) else "a"


def _size_words(record: Record, rng: random.Random | None) -> list[str]:
    words = [phrase("length", record.length, rng), phrase("fit", record.fit, rng)]
    if record.sleeves is not None:
        words.append(phrase("sleeves", record.sleeves, rng))
    return words


def aspect_caption(record: Record, aspect: str, seed: int | None = 0) -> str:
    """The answer to the Reflector's instruction for ``aspect``; canonical with ``seed=None``
    (one wording per value: "a dress", "red", "short, loose, long sleeves", "flat lay",
    "beach", "front view", "stripes, a belt")."""
    rng = None if seed is None else random.Random(f"{aspect}:{seed}")

    def pick(options: tuple[str, ...]) -> str:
        return options[0] if rng is None else rng.choice(options)

    if aspect == "Content":
        g = phrase("garment", record.garment, rng)
        if record.garment == "trousers":
            return pick((f"a pair of {g}", g, f"the {g}"))
        return pick((f"{article(g)} {g}", f"the {g}", f"it is {article(g)} {g}"))
    if aspect == "Color":
        c = phrase("color", record.color, rng)
        return pick((c, f"mostly {c}", f"{article(c)} {c} garment"))
    if aspect == "Size":
        length, fit = phrase("length", record.length, rng), phrase("fit", record.fit, rng)
        s = phrase("sleeves", record.sleeves, rng)
        tail = "" if not s else (", sleeveless" if record.sleeves == "sleeveless" else f", with {s}")
        return pick(
            (
                ", ".join(w for w in (length, fit, s) if w),
                f"{length} and {fit}{tail}",
                f"{article(length)} {length}, {fit} cut{tail}",
                (length if record.length == "knee-length" else f"{length} length")
                + f", {fit} fit"
                + (f", {s}" if s else ""),
            )
        )
    if aspect == "Style":
        return phrase("style", record.style, rng)
    if aspect == "Background":
        return pick((phrase("background", record.background, rng), pick(_SETTING[record.background])))
    if aspect == "Perspective":
        return phrase("perspective", record.perspective, rng)
    if aspect == "Others":
        p, a = phrase("pattern", record.pattern, rng), phrase("accessory", record.accessory, rng)
        options = [f"{p}, {a}", f"{p}, with {a}"]
        if record.pattern != "plain":
            options.append(f"{p} and {a}")
        return pick(tuple(options))
    raise KeyError(aspect)


def aspect_captions(record: Record, seed: int | None = 0) -> dict[str, str]:
    """One caption per aspect, in the paper's aspect order."""
    return {a: aspect_caption(record, a, seed) for a in ASPECTS}


def subject(record: Record, rng: random.Random | None = None) -> str:
    """The garment with its adjectives and its "with" list: "a short loose red dress with short
    sleeves, stripes and a belt" (see the module docstring for the order)."""
    g = phrase("garment", record.garment, rng)
    before = [phrase("length", record.length, rng), phrase("fit", record.fit, rng)]
    if record.pattern == "plain":
        before.append(phrase("pattern", "plain", rng))
    before.append(phrase("color", record.color, rng))
    if record.sleeves == "sleeveless":
        before.append(phrase("sleeves", "sleeveless", rng))
    words = " ".join(before + [g])
    if record.garment == "trousers":
        head = f"a pair of {words}" if rng is None or rng.random() < 0.5 else words
    else:
        head = f"{article(words)} {words}"
    after = []
    if record.sleeves is not None and record.sleeves != "sleeveless":
        after.append(phrase("sleeves", record.sleeves, rng))
    if record.pattern != "plain":
        after.append(phrase("pattern", record.pattern, rng))
    after.append(phrase("accessory", record.accessory, rng))
    return f"{head} with {join_and(after)}"


def full_caption(record: Record, seed: int | None = 0) -> str:
    """A full description naming every field once; wording and order drawn from ``seed``.

    Canonical (``seed=None``): "a knee-length loose red dress with short sleeves, stripes and a
    belt, flat lay, in a studio, front view" — short enough for CLIP's 77 tokens.
    """
    rng = None if seed is None else random.Random(f"full:{seed}")
    subj = subject(record, rng)
    style = phrase("style", record.style, rng)
    place = _SETTING[record.background][0] if rng is None else rng.choice(_SETTING[record.background])
    view = phrase("perspective", record.perspective, rng)
    if rng is None:
        return f"{subj}, {style}, {place}, {view}"
    # as a sentence, "a flat lay" needs its verb ("laid out as a flat lay")
    shown = rng.choice(_STYLE_IN_SENTENCE[record.style])
    view_tag = view[2:] if view.startswith("a ") else view
    form = rng.randrange(4)
    if form == 0:  # tags in any order
        parts = [style.removeprefix("a "), place, view_tag]
        rng.shuffle(parts)
        return f"{subj}, {', '.join(parts)}"
    if form == 1:
        return f"{subj}, {shown} {place}, {view_tag}"
    if form == 2:
        return f"{_VIEW_OF[record.perspective]} {subj}, {shown} {place}"
    return f"a picture of {subj}, {shown} {place}, {view_tag}"


# --------------------------------------------------------------------------------------------
# reading values back
# --------------------------------------------------------------------------------------------

# per field and value, the pattern that names it in a caption (whole words; "short" and "long"
# in "short sleeves" / "long sleeves" are sleeves, not a length)
_NOT_SLEEVES = r"(?![ -]sleeve)"


def _word(rx: str) -> str:
    """``rx`` as a whole word: no letter, digit or hyphen touches it on either side."""
    return rf"(?<![\w-]){rx}(?![\w-])"


_MENTION: dict[str, dict[str, str]] = {
    "garment": {g: _word(re.escape(g)) for g in PHRASES["garment"]},
    "color": {c: _word(c) for c in PHRASES["color"]},
    "length": {
        "short": _word("short") + _NOT_SLEEVES,
        "knee-length": _word("knee-length"),
        "long": _word("long") + _NOT_SLEEVES,
    },
    "fit": {"fitted": _word("fitted"), "loose": _word("loose")},
    "sleeves": {
        "sleeveless": _word("sleeveless"),
        "short sleeves": _word("short sleeves"),
        "long sleeves": _word("long sleeves"),
    },
    "style": {
        "flat lay": _word("flat lay"),
        "line sketch": _word("line sketch"),
        "on a mannequin": _word("mannequin"),
        "on a hanger": _word("hanger"),
    },
    "background": {b: _word(b) for b in PHRASES["background"]},
    "perspective": {v: _word(re.escape(v)) for v in PHRASES["perspective"]},
    "pattern": {
        "plain": _word("plain"),
        "stripes": _word("stripes"),
        "dots": _word("dots"),
        "checks": _word("checks"),
    },
    "accessory": {
        "none": _word(r"no accessor(?:y|ies)"),
        "belt": _word("belt"),
        "bag": _word("bag"),
        "hat": _word("hat"),
    },
}
_MENTION_RX = {f: {v: re.compile(rx) for v, rx in vals.items()} for f, vals in _MENTION.items()}


def mentions(text: str) -> dict[str, dict[str, int]]:
    """How often ``text`` names each value, per field (values named 0 times left out): the
    reader the caption tests use ("a red dress with short sleeves" names red, dress and short
    sleeves once, and no length)."""
    low = text.lower()
    out: dict[str, dict[str, int]] = {}
    for f in FIELDS:
        counts = {v: len(rx.findall(low)) for v, rx in _MENTION_RX[f].items()}
        out[f] = {v: n for v, n in counts.items() if n}
    return out


def value_prompt(field: str, value: str) -> str:
    """The zero-shot text for one field value (what CLIP is asked to match): "a t-shirt", "a
    pair of trousers", "an orange garment", "a sleeveless garment", "a garment with short
    sleeves", "flat lay", "in a studio", "front view", "a garment with stripes", "with a belt"."""
    name = NAMES[field][value]
    if field == "background":
        return _SETTING[value][0]
    if field == "garment":
        return "a pair of trousers" if value == "trousers" else f"{article(name)} {name}"
    if field in ("color", "length", "fit") or (field, value) in (
        ("sleeves", "sleeveless"),
        ("pattern", "plain"),
    ):
        return f"{article(name)} {name} garment"
    if field in ("sleeves", "pattern"):
        return f"a garment with {name}"
    if field == "accessory":
        return "no accessories" if value == "none" else f"with {PHRASES['accessory'][value][0]}"
    return name  # style, perspective


def field_of_aspect(aspect: str) -> tuple[str, ...]:
    return ASPECT_FIELDS[aspect]
