"""The Atelier's world: attribute records over the paper's seven aspects and their renderer.

A :class:`Record` fixes one value per *field*; the fields group into the paper's aspects
(``ASPECT_FIELDS``): Content = garment; Color = colour; Size = length, fit, sleeves; Style;
Background; Perspective; Others = pattern and accessory. ``sleeves`` is ``None`` for garments
without sleeves (skirt, trousers): the field does not exist for them, so nobody is asked to see it.

The renderer draws in *body coordinates* (x centred on the body, y from the top of the head at
0 to the soles at 1, both in body heights) and maps them to the image through a camera chosen by
the perspective. Every value changes the picture in a way a small network can see at 64x64:

* perspective: ``full body`` = whole figure, small, with a ground shadow; ``front`` / ``back``
  = medium framing, front shows a dark V-neck and buttons, back a centre seam and a neck tag;
  ``side`` = the body compressed to 60 % of its width, its far half shaded (v3); ``close-up`` = 1.4x zoom on the upper body
  (the long hem leaves the frame, the short and knee-length ones stay in it — length stays
  readable).
* garment (v3): each type has a silhouette and marks of its own that show from every side: a
  t-shirt a plain round neck; a shirt a wide contrasting collar, cuffs, a placket and buttons; a
  hoodie its hood and pocket; a dress a bodice and a skirt that flares from a waist seam (an A);
  a coat a straight wide body with lapels; a jumpsuit a waist seam and two legs with a gap; a
  skirt an A flare from the waistband; trousers two legs with a gap (shorts too). Tops end above
  every dress hem (``_HEM``).
* fit (v3): ``fitted`` follows the body and narrows to the mannequin's waist; ``loose`` is boxy,
  straight from the armpit down, about 1.6x wider (1.8x at the waist), with wider sleeves whose
  seams are drawn, so a sleeve over a wide body still shows.
* style: ``flat lay`` (garment alone with a drop shadow), ``line sketch`` (paper-white garment
  with a thick outline in the garment's colour), ``on a mannequin`` (worn; keypoints known),
  ``on a hanger`` (hook and bar above the garment).
* pattern period is a tenth of the image whatever the zoom, so it survives downsampling.

Determinism: the picture is a function of (record, seed, size); the seed only moves small
jitters (zoom ±3 %, centre ±2 %, colour ±8 levels, pattern phase). Drawing happens at 2x and
is downsampled (antialiasing) for images under 256 px.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..errors import BadInput
from ..settings import ASPECTS

# --------------------------------------------------------------------------------------------
# vocabularies
# --------------------------------------------------------------------------------------------

GARMENTS: tuple[str, ...] = ("t-shirt", "shirt", "hoodie", "dress", "coat", "jumpsuit", "skirt", "trousers")
SLEEVED: frozenset[str] = frozenset({"t-shirt", "shirt", "hoodie", "dress", "coat", "jumpsuit"})
TOPS: frozenset[str] = frozenset({"t-shirt", "shirt", "hoodie"})
BOTTOMS: frozenset[str] = frozenset({"skirt", "trousers"})

# RGB chosen far apart (hue and lightness) so a 64x64 picture keeps them apart after jitter
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (205, 30, 35),
    "orange": (245, 130, 20),
    "yellow": (245, 215, 40),
    "green": (35, 150, 60),
    "blue": (40, 105, 225),
    "navy": (20, 30, 95),
    "purple": (125, 45, 165),
    "pink": (250, 145, 190),
    "white": (246, 246, 246),
    "black": (22, 22, 22),
    "brown": (125, 72, 30),
    "grey": (135, 135, 135),
}
# The NOVEL value (issue 16's fine-tuning demonstration): a colour that the CLIP, the generator
# and the VLM never see in training (``random_record`` never draws it, the train / held-out
# splits never contain it), while the judge, a measuring instrument, is trained to read it (its
# ``world`` split draws it). Teal is far from all twelve in RGB (nearest: blue and green, about
# 95 levels), so a small generator can learn it from a handful of captioned pictures.
NOVEL: dict[str, str] = {"color": "teal"}
NOVEL_COLORS: dict[str, tuple[int, int, int]] = {"teal": (0, 155, 150)}
ALL_COLORS: dict[str, tuple[int, int, int]] = COLORS | NOVEL_COLORS
LENGTHS: tuple[str, ...] = ("short", "knee-length", "long")
FITS: tuple[str, ...] = ("fitted", "loose")
SLEEVES: tuple[str, ...] = ("sleeveless", "short sleeves", "long sleeves")
STYLES: tuple[str, ...] = ("flat lay", "line sketch", "on a mannequin", "on a hanger")
BACKGROUNDS: tuple[str, ...] = ("studio", "beach", "street", "garden", "runway", "forest")
PERSPECTIVES: tuple[str, ...] = ("front view", "back view", "side view", "close-up", "full body")
PATTERNS: tuple[str, ...] = ("plain", "stripes", "dots", "checks")
ACCESSORIES: tuple[str, ...] = ("none", "belt", "bag", "hat")

FIELDS: tuple[str, ...] = (
    "garment",
    "color",
    "length",
    "fit",
    "sleeves",
    "style",
    "background",
    "perspective",
    "pattern",
    "accessory",
)
VOCAB: dict[str, tuple[str, ...]] = {
    "garment": GARMENTS,
    "color": tuple(COLORS),
    "length": LENGTHS,
    "fit": FITS,
    "sleeves": SLEEVES,
    "style": STYLES,
    "background": BACKGROUNDS,
    "perspective": PERSPECTIVES,
    "pattern": PATTERNS,
    "accessory": ACCESSORIES,
}
# VOCAB is the *trained* world's vocabulary (zero-shot prompts, CLIP / generator / VLM data): it
# leaves the NOVEL value out. ALL_VOCAB appends it (same indices for every other value): records
# may hold it, the judge reads it, and labels (``data.labels_of``) index into ALL_VOCAB.
ALL_VOCAB: dict[str, tuple[str, ...]] = {
    f: values + ((NOVEL[f],) if f in NOVEL else ()) for f, values in VOCAB.items()
}
# the paper's aspects (settings.ASPECTS order) and the record fields that make each one up
ASPECT_FIELDS: dict[str, tuple[str, ...]] = {
    "Content": ("garment",),
    "Style": ("style",),
    "Background": ("background",),
    "Size": ("length", "fit", "sleeves"),
    "Color": ("color",),
    "Perspective": ("perspective",),
    "Others": ("pattern", "accessory"),
}
assert tuple(ASPECT_FIELDS) == ASPECTS

WORN_STYLE = "on a mannequin"


@dataclass(frozen=True)
class Record:
    """One garment picture's truth: a value per field (``sleeves`` None where there are none)."""

    garment: str
    color: str
    length: str
    fit: str
    sleeves: str | None
    style: str
    background: str
    perspective: str
    pattern: str
    accessory: str

    def __post_init__(self) -> None:
        for f in FIELDS:
            value = getattr(self, f)
            if f == "sleeves" and self.garment not in SLEEVED:
                if value is not None:
                    raise BadInput(
                        f"A {self.garment} has no sleeves (got sleeves={value!r}).",
                        "Leave sleeves as None for skirts and trousers.",
                    )
                continue
            if value not in ALL_VOCAB[f]:
                raise BadInput(f"Unknown {f} {value!r}.", f"Use one of: {', '.join(ALL_VOCAB[f])}.")

    @property
    def worn(self) -> bool:
        """The garment is worn by a mannequin (keypoints exist)."""
        return self.style == WORN_STYLE

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise BadInput(f"A record lacks {', '.join(missing)}.", f"Give every field: {', '.join(FIELDS)}.")
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def replace(self, **changes: Any) -> Record:
        """A copy with ``changes``; changing the garment fixes up ``sleeves`` (None / a default)."""
        data = self.as_dict() | changes
        if data["garment"] not in SLEEVED:
            data["sleeves"] = None
        elif data["sleeves"] is None:
            data["sleeves"] = SLEEVES[0]
        return Record(**data)

    def aspect_values(self, aspect: str) -> dict[str, str | None]:
        return {f: getattr(self, f) for f in ASPECT_FIELDS[aspect]}


def random_record(rng: random.Random, novel: bool = False) -> Record:
    """A uniformly drawn record (each field independent) over ``VOCAB``, or over ``ALL_VOCAB``
    (the NOVEL value included) with ``novel=True``."""
    vocab = ALL_VOCAB if novel else VOCAB
    values: dict[str, Any] = {f: rng.choice(vocab[f]) for f in FIELDS}
    if values["garment"] not in SLEEVED:
        values["sleeves"] = None
    return Record(**values)


def novel_record(rng: random.Random) -> Record:
    """A uniformly drawn record that holds the NOVEL value(s) (for a fine-tuning folder)."""
    return random_record(rng).replace(**NOVEL)


def iter_records(seed: int, novel: bool = False) -> Iterator[Record]:
    """Uniform records from ``seed``; without the NOVEL value unless ``novel``."""
    rng = random.Random(seed)
    while True:
        yield random_record(rng, novel)


# --------------------------------------------------------------------------------------------
# the body and its OpenPose keypoints (COCO 18 order, as controlnet_aux draws them)
# --------------------------------------------------------------------------------------------

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)  # fmt: skip
# body coordinates of the person's joints in a front view (person's right on the image's left)
_BODY: dict[str, tuple[float, float]] = {
    "nose": (0.0, 0.075),
    "neck": (0.0, 0.165),
    "r_shoulder": (-0.11, 0.19),
    "r_elbow": (-0.14, 0.33),
    "r_wrist": (-0.155, 0.46),
    "l_shoulder": (0.11, 0.19),
    "l_elbow": (0.14, 0.33),
    "l_wrist": (0.155, 0.46),
    "r_hip": (-0.06, 0.50),
    "r_knee": (-0.065, 0.70),
    "r_ankle": (-0.06, 0.92),
    "l_hip": (0.06, 0.50),
    "l_knee": (0.065, 0.70),
    "l_ankle": (0.06, 0.92),
    "r_eye": (-0.02, 0.06),
    "l_eye": (0.02, 0.06),
    "r_ear": (-0.048, 0.07),
    "l_ear": (0.048, 0.07),
}
HEAD_C, HEAD_R = (0.0, 0.07), 0.055
WAIST_Y, HIP_Y = 0.42, 0.50
# hem heights in body units, per garment family and length
# (v3) the two tables never meet: the longest top ends 0.08 of a body (5 px at 64 px, front
# view) above the shortest dress, coat, jumpsuit or bottom; in v2 a knee-length / long t-shirt
# (0.50 / 0.60) and a short dress (0.52) ended at the same row. A short top is cropped above the
# waist, short bottoms are shorts / a mini skirt, knee-length ends at the knee, long near the ankle.
_HEM = {"top": (0.36, 0.44, 0.52), "long": (0.60, 0.72, 0.90)}


def hem_y(garment: str, length: str) -> float:
    table = _HEM["top"] if garment in TOPS else _HEM["long"]
    return table[LENGTHS.index(length)]


@dataclass(frozen=True)
class Camera:
    """Body coordinates -> pixels: zoom (image fraction per body height), centre, width squeeze."""

    size: tuple[int, int]
    zoom: float
    cx: float
    cy: float
    squeeze: float = 1.0
    mirror: bool = False  # back view: the person's right is on the image's right
    dx: float = 0.0  # jitter of the image centre, image fractions
    dy: float = 0.0

    def __call__(self, bx: float, by: float) -> tuple[float, float]:
        w, h = self.size
        s = min(w, h)
        x = bx * self.squeeze * (-1.0 if self.mirror else 1.0)
        return (
            w * (0.5 + self.dx) + (x - self.cx) * self.zoom * s,
            h * (0.5 + self.dy) + (by - self.cy) * self.zoom * s,
        )

    def length(self, b: float) -> float:
        return b * self.zoom * min(self.size)


_VIEWS = {  # zoom, centre y in body units
    "full body": (0.78, 0.50),
    "front view": (1.0, 0.48),
    "back view": (1.0, 0.48),
    "side view": (1.0, 0.48),
    "close-up": (1.4, 0.40),  # knee-length (0.72) ends 4 px above the frame's edge, long leaves it
}


def camera(record: Record, size: tuple[int, int], seed: int) -> Camera:
    rng = random.Random(f"camera:{seed}")
    zoom, cy = _VIEWS[record.perspective]
    return Camera(
        size=size,
        zoom=zoom * (1.0 + rng.uniform(-0.03, 0.03)),
        cx=0.0,
        cy=cy,
        squeeze=0.6 if record.perspective == "side view" else 1.0,
        mirror=record.perspective == "back view",
        dx=rng.uniform(-0.02, 0.02),
        dy=rng.uniform(-0.02, 0.02),
    )


Keypoint = tuple[float, float, float]


def keypoints(record: Record, size: tuple[int, int] = (64, 64), seed: int = 0) -> list[Keypoint] | None:
    """The mannequin's 18 OpenPose keypoints as (x, y, confidence), x and y in 0..1 of the image;
    None when nobody wears the garment. Hidden joints (the face from the back, the far eye and ear
    from the side) and joints outside the frame have confidence 0 and (0, 0), as OpenPose reports."""
    if not record.worn:
        return None
    cam = camera(record, size, seed)
    w, h = size
    hidden: set[str] = set()
    if record.perspective == "back view":
        hidden = {"nose", "r_eye", "l_eye"}
    elif record.perspective == "side view":
        hidden = {"l_eye", "l_ear"}
    out: list[Keypoint] = []
    for name in KEYPOINT_NAMES:
        px, py = cam(*_BODY[name])
        x, y = px / w, py / h
        if name in hidden or not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            out.append((0.0, 0.0, 0.0))
        else:
            out.append((x, y, 1.0))
    return out


# OpenPose's drawing convention (controlnet_aux ``util.draw_bodypose``): limbs between these
# 1-based keypoint pairs as filled ellipses 4 px thick in 60 % of the limb's colour, then every
# joint as a 4 px disc in its full colour, on black, at 512 px.
OPENPOSE_LIMBS: tuple[tuple[int, int], ...] = (
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12), (12, 13),
    (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18),
)  # fmt: skip
OPENPOSE_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
_POSE_DRAW = 512


def pose_map(record: Record, size: tuple[int, int] = (512, 512), seed: int = 0) -> Image.Image | None:
    """The mannequin's skeleton as OpenPose draws it (the picture a pose ControlNet is trained
    on), None when nobody wears the garment.

    Drawn here with PIL in controlnet_aux's convention (limb order, colours, 4 px sticks and
    joints, drawn at 512 px and area-resized), so the world needs neither OpenCV nor
    controlnet_aux; ``tdri_engine.pose.draw_pose_map`` draws the same keypoints the same way.
    """
    kps = keypoints(record, size, seed)
    if kps is None:
        return None
    width, height = size
    scale = _POSE_DRAW / max(width, height)
    cw, ch = max(1, round(width * scale)), max(1, round(height * scale))
    canvas = Image.new("RGB", (cw, ch))
    draw = ImageDraw.Draw(canvas)
    stick = 4
    for (a, b), colour in zip(OPENPOSE_LIMBS, OPENPOSE_COLORS, strict=False):
        (x1, y1, c1), (x2, y2, c2) = kps[a - 1], kps[b - 1]
        if c1 <= 0 or c2 <= 0:
            continue
        X1, Y1, X2, Y2 = x1 * cw, y1 * ch, x2 * cw, y2 * ch
        mx, my = (X1 + X2) / 2, (Y1 + Y2) / 2
        half = ((X1 - X2) ** 2 + (Y1 - Y2) ** 2) ** 0.5 / 2
        ang = np.arctan2(Y1 - Y2, X1 - X2)
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        px = mx + half * np.cos(t) * np.cos(ang) - stick * np.sin(t) * np.sin(ang)
        py = my + half * np.cos(t) * np.sin(ang) + stick * np.sin(t) * np.cos(ang)
        draw.polygon(
            list(zip(px.tolist(), py.tolist(), strict=True)), fill=tuple(int(v * 0.6) for v in colour)
        )
    for (x, y, c), colour in zip(kps, OPENPOSE_COLORS, strict=True):
        if c > 0:
            X, Y = int(x * cw), int(y * ch)
            draw.ellipse([X - 4, Y - 4, X + 4, Y + 4], fill=colour)
    if (cw, ch) != (width, height):
        canvas = canvas.resize((width, height), Image.Resampling.BOX)
    return canvas


# --------------------------------------------------------------------------------------------
# the renderer
# --------------------------------------------------------------------------------------------

Poly = list[tuple[float, float]]
MANNEQUIN = (214, 198, 182)
PAPER = (250, 250, 244)


def _luma(c: Sequence[int]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _shade(c: Sequence[int], f: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, round(v * f)))) for v in c)  # type: ignore[return-value]


def _mix(a: Sequence[int], b: Sequence[int], t: float) -> tuple[int, int, int]:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _contrast(c: Sequence[int]) -> tuple[int, int, int]:
    """The pattern's second colour: near-white on dark garments, near-black on light ones."""
    return (35, 35, 35) if _luma(c) > 150 else (240, 240, 240)


def _arm_quad(a: tuple[float, float], b: tuple[float, float], half: float) -> Poly:
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    n = (dx * dx + dy * dy) ** 0.5 or 1.0
    nx, ny = -dy / n * half, dx / n * half
    return [(ax + nx, ay + ny), (bx + nx, by + ny), (bx - nx, by - ny), (ax - nx, ay - ny)]


def _along(a: tuple[float, float], b: tuple[float, float], t: float) -> tuple[float, float]:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


@dataclass(frozen=True)
class _Widths:
    """Half-widths of a garment in body units (before the side view's squeeze)."""

    shoulder: float
    armpit: float  # at y 0.26
    waist: float  # at WAIST_Y
    hip: float  # at HIP_Y and below (tops, jumpsuit and trousers)
    sleeve: float  # half the sleeve's width at the shoulder
    leg: float  # outer edge of a trouser leg at the hem


# fitted follows the body and narrows to the mannequin's own waist (0.075, so none of it shows);
# loose is boxy, straight from the armpit to the hem: 1.6x the fitted width at the armpit, 2x at
# the waist, 1.7x at the hip. v2 made loose 1.3x wider, a few
# pixels, fewer in side view.
_FITTED = _Widths(shoulder=0.11, armpit=0.095, waist=0.075, hip=0.09, sleeve=0.03, leg=0.09)
_LOOSE = _Widths(shoulder=0.15, armpit=0.15, waist=0.15, hip=0.15, sleeve=0.06, leg=0.15)
_LEG_GAP = 0.03  # half the gap between two trouser legs: 4 px of background at 64 px, front view


def _widths(fit: str) -> _Widths:
    return _LOOSE if fit == "loose" else _FITTED


def _outline(profile: Sequence[tuple[float, float]], hem: float, neck: float = 0.04) -> Poly:
    """A symmetric torso from its right-hand profile ``(y, half-width)`` (y increasing), cut at
    ``hem`` (the half-width there interpolated), closed by the neckline at y 0.155."""
    side: list[tuple[float, float]] = []
    for (y0, w0), (y1, w1) in zip(profile, profile[1:], strict=False):
        side.append((y0, w0))
        if y1 >= hem:
            t = (hem - y0) / (y1 - y0) if y1 > y0 else 1.0
            side.append((hem, w0 + (w1 - w0) * t))
            break
    else:
        side.append(profile[-1])
    return (
        [(-neck, 0.155)] + [(-w, y) for y, w in side] + [(w, y) for y, w in reversed(side)] + [(neck, 0.155)]
    )


def _legs(top: float, hem: float, waist: float, W: _Widths) -> list[Poly]:
    """A seat from ``top`` to the crotch and two legs with a gap of 2x``_LEG_GAP`` between them.
    The crotch sits 0.08 of a body above a short hem (shorts show two legs, not a block: v2's
    short trousers read as a short skirt)."""
    crotch = min(0.55, hem - 0.08)
    polys = [[(-waist, top), (waist, top), (W.hip, crotch), (-W.hip, crotch)]]
    for sgn in (-1, 1):
        polys.append(
            [(sgn * _LEG_GAP, crotch), (sgn * W.hip, crotch), (sgn * W.leg, hem), (sgn * _LEG_GAP, hem)]
        )
    return polys


def _sleeve_polys(record: Record) -> list[Poly]:
    """The sleeves along the mannequin's arms (none for a sleeveless garment or a bottom)."""
    if record.garment not in SLEEVED or record.sleeves in (None, "sleeveless"):
        return []
    half = _widths(record.fit).sleeve
    polys: list[Poly] = []
    for side in ("r", "l"):
        s, e, w = _BODY[f"{side}_shoulder"], _BODY[f"{side}_elbow"], _BODY[f"{side}_wrist"]
        if record.sleeves == "short sleeves":
            polys.append(_arm_quad(s, _along(s, e, 0.6), half))
        else:
            polys.append(_arm_quad(s, e, half))
            polys.append(_arm_quad(e, w, half * 0.9))
    return polys


def garment_shapes(record: Record) -> list[Poly]:
    """The garment's silhouette as polygons in body coordinates (torso, legs, sleeves, hood).

    Tops follow the body to their hem; a dress has a bodice to the waist and a skirt that flares
    from there (an A: 0.42 / 0.5 of a body outwards per body down, fitted / loose); a coat is
    straight and wide; a jumpsuit is a top to the waist over trousers; a skirt flares from the
    waistband (0.4 / 0.55); trousers and a jumpsuit's legs keep a gap between the legs."""
    g = record.garment
    W = _widths(record.fit)
    loose = record.fit == "loose"
    hem = hem_y(g, record.length)
    bodice = [(0.185, W.shoulder), (0.26, W.armpit), (WAIST_Y, W.waist)]
    polys: list[Poly] = []
    if g in TOPS:
        polys.append(_outline(bodice + [(HIP_Y, W.hip), (1.0, W.hip)], hem))
    elif g == "dress":
        flare = 0.5 if loose else 0.42
        polys.append(_outline(bodice + [(hem, W.waist + flare * (hem - WAIST_Y))], hem))
    elif g == "coat":
        wide = 0.17 if loose else 0.11
        polys.append(
            _outline(
                [
                    (0.185, W.shoulder + 0.01),
                    (0.26, wide),
                    (WAIST_Y, wide - (0 if loose else 0.01)),
                    (hem, wide),
                ],
                hem,
            )
        )
    elif g == "jumpsuit":
        polys.append(_outline(bodice, WAIST_Y + 0.01))
        polys += _legs(WAIST_Y, hem, W.waist, W)
    elif g == "skirt":
        waist = 0.12 if loose else 0.078
        flare = 0.55 if loose else 0.40
        polys.append(
            [
                (-waist, 0.44),
                (-(waist + flare * (hem - 0.44)), hem),
                (waist + flare * (hem - 0.44), hem),
                (waist, 0.44),
            ]
        )
    else:  # trousers
        polys += _legs(0.44, hem, 0.11 if loose else 0.078, W)
    if g == "hoodie":
        polys.append(
            [(-0.07, 0.17), (-0.075, 0.11), (-0.04, 0.06), (0.04, 0.06), (0.075, 0.11), (0.07, 0.17)]
        )
    polys += _sleeve_polys(record)
    return polys


def _background(draw: ImageDraw.ImageDraw, name: str, w: int, h: int, rng: random.Random) -> None:
    j = lambda c: tuple(max(0, min(255, v + rng.randint(-8, 8))) for v in c)  # noqa: E731
    if name == "studio":  # a soft vertical gradient, in bands of 4 rows
        top, bottom = j((232, 232, 236)), j((196, 196, 204))
        for y in range(0, h, 4):
            draw.rectangle([0, y, w, y + 4], fill=_mix(top, bottom, y / max(1, h - 1)))
    elif name == "beach":
        draw.rectangle([0, 0, w, h * 0.45], fill=j((135, 200, 240)))
        draw.rectangle([0, h * 0.45, w, h * 0.56], fill=j((25, 110, 170)))
        draw.rectangle([0, h * 0.56, w, h], fill=j((236, 214, 158)))
    elif name == "street":
        draw.rectangle([0, 0, w, h], fill=j((150, 85, 65)))
        for i in range(5):
            for k in range(3):
                x0, y0 = w * (0.04 + i * 0.2), h * (0.05 + k * 0.2)
                draw.rectangle([x0, y0, x0 + w * 0.1, y0 + h * 0.12], fill=(45, 45, 60))
        draw.rectangle([0, h * 0.68, w, h], fill=j((105, 105, 110)))
    elif name == "garden":
        draw.rectangle([0, 0, w, h * 0.35], fill=j((205, 232, 250)))
        draw.rectangle([0, h * 0.35, w, h], fill=j((85, 165, 65)))
        for _ in range(14):
            fx, fy, r = rng.uniform(0, w), rng.uniform(h * 0.4, h), w * 0.018
            draw.ellipse([fx - r, fy - r, fx + r, fy + r], fill=rng.choice([(250, 90, 150), (255, 230, 60)]))
    elif name == "runway":
        draw.rectangle([0, 0, w, h], fill=j((30, 26, 38)))
        draw.polygon(
            [(w * 0.38, h * 0.3), (w * 0.62, h * 0.3), (w * 0.95, h), (w * 0.05, h)], fill=j((205, 205, 215))
        )
        for x in (0.12, 0.5, 0.88):
            r = w * 0.05
            draw.ellipse([w * x - r, h * 0.06 - r, w * x + r, h * 0.06 + r], fill=(255, 245, 200))
    elif name == "forest":
        draw.rectangle([0, 0, w, h], fill=j((25, 62, 38)))
        for i in range(6):
            x = w * (0.08 + i * 0.17)
            draw.rectangle([x - w * 0.015, h * 0.55, x + w * 0.015, h], fill=(85, 55, 30))
            draw.polygon(
                [(x, h * 0.05), (x - w * 0.09, h * 0.6), (x + w * 0.09, h * 0.6)], fill=(15, 100, 45)
            )
    else:  # pragma: no cover - Record validates the name
        raise BadInput(f"Unknown background {name!r}.", f"Use one of: {', '.join(BACKGROUNDS)}.")


@functools.lru_cache(maxsize=8)
def _grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(w, dtype=np.float32)[None, :], np.arange(h, dtype=np.float32)[:, None]


def _dilate(m: np.ndarray, r: int) -> np.ndarray:
    """Max filter of radius r (a (2r+1)-square), separable: r shifts per axis."""
    out = m.copy()
    for axis in (0, 1):
        src = out.copy()
        for k in range(1, r + 1):
            if axis == 0:
                out[k:] = np.maximum(out[k:], src[:-k])
                out[:-k] = np.maximum(out[:-k], src[k:])
            else:
                out[:, k:] = np.maximum(out[:, k:], src[:, :-k])
                out[:, :-k] = np.maximum(out[:, :-k], src[:, k:])
    return out


def _pattern_mask(kind: str, w: int, h: int, rng: random.Random) -> np.ndarray | None:
    """Where the pattern's second colour goes (float 0..1), period a tenth of the image."""
    if kind == "plain":
        return None
    p = min(w, h) / 10.0
    ox, oy = rng.uniform(0, p), rng.uniform(0, p)
    xx, yy = _grid(w, h)
    u, v = (xx + ox) % p, (yy + oy) % p
    if kind == "stripes":
        return np.broadcast_to((v < p * 0.38).astype(np.float32), (h, w))
    if kind == "dots":
        return (((u - p / 2) ** 2 + (v - p / 2) ** 2) < (p * 0.26) ** 2).astype(np.float32)
    # checks (gingham): two band sets, half strength each, full where they cross
    a, b = (u < p * 0.45).astype(np.float32), (v < p * 0.45).astype(np.float32)
    return np.clip(0.5 * a + 0.5 * b, 0.0, 1.0)


def render(record: Record, seed: int = 0, size: int | tuple[int, int] = 64) -> Image.Image:
    """The picture of ``record``: RGB, ``size`` pixels (an int for a square), the same pixels for
    the same (record, seed, size)."""
    if not isinstance(record, Record):
        raise BadInput(f"Expected a Record, got {type(record).__name__}.", "Build one with Record(...).")
    out_w, out_h = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(out_w, out_h) < 16 or max(out_w, out_h) > 4096:
        raise BadInput(f"Image size {out_w}x{out_h} is out of range.", "Use 16 to 4096 pixels per side.")
    ss = 2 if max(out_w, out_h) < 256 else 1
    w, h = out_w * ss, out_h * ss
    rng = random.Random(f"render:{seed}")
    cam = camera(record, (w, h), seed)
    img = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(img)
    _background(draw, record.background, w, h, rng)
    P = lambda poly: [cam(x, y) for x, y in poly]  # noqa: E731
    L = cam.length
    color = tuple(max(0, min(255, c + rng.randint(-8, 8))) for c in ALL_COLORS[record.color])
    edge_w = max(1, round(min(w, h) / 96))

    if record.perspective == "full body":  # ground shadow under the feet
        fx, fy = cam(0.0, 0.95)
        draw.ellipse([fx - L(0.2), fy - L(0.025), fx + L(0.2), fy + L(0.025)], fill=(60, 60, 60))
    if record.worn:
        _draw_mannequin(draw, cam, record)
    if record.style == "on a hanger":
        top = 0.44 if record.garment in BOTTOMS else 0.17
        hx, hy = cam(0.0, top - 0.09)
        a, b = cam(-0.13, top), cam(0.13, top)
        draw.line([(hx, hy), a, b, (hx, hy)], fill=(70, 70, 78), width=edge_w * 2)
        draw.arc(
            [hx - L(0.025), hy - L(0.05), hx + L(0.025), hy],
            180,
            360 + 90,
            fill=(70, 70, 78),
            width=edge_w * 2,
        )

    shapes = garment_shapes(record)
    mask = Image.new("L", (w, h), 0)
    mdraw = ImageDraw.Draw(mask)
    for poly in shapes:
        mdraw.polygon(P(poly), fill=255)
    if record.style == "flat lay":  # drop shadow
        shadow = mask.transform(mask.size, Image.AFFINE, (1, 0, -L(0.02), 0, 1, -L(0.02)))
        img.paste(_shade((90, 90, 90), 1.0), (0, 0), shadow.point(lambda v: v * 0.55))
    m = np.asarray(mask, dtype=np.float32) / 255.0
    pattern = _pattern_mask(record.pattern, w, h, rng)
    sketch = record.style == "line sketch"
    base = np.array(PAPER if sketch else color, dtype=np.float32)
    second = np.array(
        (color if _luma(color) < 200 else (70, 70, 70)) if sketch else _contrast(color), dtype=np.float32
    )
    fill: np.ndarray = base
    if pattern is not None:
        fill = base * (1 - pattern[..., None]) + second * pattern[..., None]
    arr = np.asarray(img, dtype=np.float32)
    if record.perspective == "side view":
        # the far half of the body turns away from the light: at 72 % it marks a side view in
        # every style, where the width alone no longer does (a loose garment seen from the side
        # is about as wide as a fitted one from the front)
        far = (_grid(w, h)[0] > cam(0.0, 0.0)[0]).astype(np.float32)
        fill = fill * (1.0 - 0.28 * far[..., None])
    arr = arr * (1 - m[..., None]) + fill * m[..., None]
    # outline: a ring around the mask; thick and in the garment's colour for a sketch
    r = edge_w * (3 if sketch else 1)
    grown = _dilate(m, r)
    ring = grown - (1.0 - _dilate(1.0 - m, 1))
    ring_colour = np.array(color if sketch else _shade(color, 0.45), dtype=np.float32)
    arr = arr * (1 - ring[..., None]) + ring_colour * ring[..., None]
    if sketch and _luma(color) > 200:  # a white line still needs an edge to be seen
        outer = _dilate(grown, 1) - grown
        arr = arr * (1 - outer[..., None]) + np.float32(60) * outer[..., None]
    img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    _draw_details(draw, cam, record, color, edge_w, sketch)
    _draw_accessory(draw, cam, record, edge_w)
    if ss != 1:
        img = img.resize((out_w, out_h), Image.Resampling.LANCZOS)
    return img


def _draw_mannequin(draw: ImageDraw.ImageDraw, cam: Camera, record: Record) -> None:
    L = cam.length
    B = lambda n: cam(*_BODY[n])  # noqa: E731
    limb = max(2, round(L(0.045)))
    for a, b, c in (("r_hip", "r_knee", "r_ankle"), ("l_hip", "l_knee", "l_ankle")):
        draw.line([B(a), B(b), B(c)], fill=MANNEQUIN, width=limb, joint="curve")
    torso = [(-0.10, 0.18), (0.10, 0.18), (0.075, WAIST_Y), (0.085, 0.52), (-0.085, 0.52), (-0.075, WAIST_Y)]
    draw.polygon([cam(x, y) for x, y in torso], fill=MANNEQUIN)
    for a, b, c in (("r_shoulder", "r_elbow", "r_wrist"), ("l_shoulder", "l_elbow", "l_wrist")):
        draw.line([B(a), B(b), B(c)], fill=MANNEQUIN, width=max(2, round(L(0.035))), joint="curve")
    draw.line([cam(0, 0.11), cam(0, 0.18)], fill=MANNEQUIN, width=max(2, round(L(0.04))))
    hx, hy = cam(*HEAD_C)
    r = L(HEAD_R)
    rx = r * cam.squeeze**0.5
    draw.ellipse([hx - rx, hy - r, hx + rx, hy + r], fill=MANNEQUIN)
    hair = (70, 48, 36)
    if record.perspective == "back view":
        draw.ellipse([hx - rx, hy - r, hx + rx, hy + r], fill=hair)
    elif record.perspective == "side view":
        draw.pieslice([hx - rx, hy - r, hx + rx, hy + r], 90, 270 + 20, fill=hair)
    else:
        draw.chord([hx - rx, hy - r, hx + rx, hy + r], 180, 360, fill=hair)
        for e in ("r_eye", "l_eye"):
            ex, ey = B(e)
            er = max(0.6, L(0.008))
            draw.ellipse([ex - er, ey - er, ex + er, ey + er], fill=(40, 40, 40))


def _accent(color: Sequence[int], sketch: bool) -> tuple[int, int, int]:
    """A shirt's collar and cuffs: near-white on a dark garment, dark grey on a light one; in a
    sketch (paper-white garment) the garment's colour (dark grey for a white one)."""
    if sketch:
        return tuple(color) if _luma(color) < 200 else (70, 70, 70)  # type: ignore[return-value]
    return (245, 245, 245) if _luma(color) < 165 else (60, 60, 60)


def _draw_details(
    draw: ImageDraw.ImageDraw,
    cam: Camera,
    record: Record,
    color: Sequence[int],
    ew: int,
    sketch: bool = False,
) -> None:
    """The garment's own marks, then the view's.

    From every side: sleeve seams (a sleeve over a loose body still shows), a shirt's wide
    contrasting collar and cuffs, a dress's and a jumpsuit's waist seam. Front-facing views (front,
    close-up, full body): the neckline (a t-shirt's and a dress's plain round neck, a V for the
    rest), a shirt's placket and buttons, a coat's lapels, opening and buttons, a jumpsuit's
    buttons to the waist, a hoodie's pocket and drawstrings, the bottoms' fly and button. Back: a
    centre seam, a yoke seam across the shoulders and a neck tag (back pockets on bottoms), and no
    neckline. Side: a side seam (and the far half shaded, in ``render``)."""
    g, L = record.garment, cam.length
    dark = _shade(color, 0.4) if _luma(color) > 40 else (110, 110, 110)
    accent = _accent(color, sketch)
    button = _contrast(color)
    hem = hem_y(g, record.length)
    W = _widths(record.fit)
    top = 0.44 if g in BOTTOMS else 0.16
    view = record.perspective
    P = lambda poly: [cam(x, y) for x, y in poly]  # noqa: E731

    def dot(y: float, r: float = 0.011) -> None:
        x, yy = cam(0, y)
        draw.ellipse([x - L(r), yy - L(r), x + L(r), yy + L(r)], fill=button)

    for sleeve in _sleeve_polys(record):
        draw.polygon(P(sleeve), outline=dark, width=ew)
    if g == "shirt":
        if record.sleeves not in (None, "sleeveless"):  # cuffs
            for side in ("r", "l"):
                s, e, w = _BODY[f"{side}_shoulder"], _BODY[f"{side}_elbow"], _BODY[f"{side}_wrist"]
                if record.sleeves == "short sleeves":
                    cuff = _arm_quad(_along(s, e, 0.46), _along(s, e, 0.6), W.sleeve * 1.05)
                else:
                    cuff = _arm_quad(_along(e, w, 0.78), w, W.sleeve * 0.95)
                draw.polygon(P(cuff), fill=accent)
        if view in ("back view", "side view"):  # the collar stands around the neck
            draw.polygon(P([(-0.085, 0.2), (-0.08, 0.14), (0.08, 0.14), (0.085, 0.2)]), fill=accent)
    if g in ("dress", "jumpsuit"):  # the waist seam
        draw.line([cam(-W.waist, WAIST_Y), cam(W.waist, WAIST_Y)], fill=dark, width=ew * 2)
    if view == "back view":
        end = min(hem, 0.55) if g not in BOTTOMS else hem
        draw.line([cam(0, top + 0.01), cam(0, end)], fill=dark, width=ew * 2)
        if g not in BOTTOMS:  # a yoke seam across the shoulders and a white neck tag
            draw.line([cam(-W.shoulder, 0.215), cam(W.shoulder, 0.215)], fill=dark, width=ew * 2)
            x, y = cam(0, 0.16)
            draw.rectangle([x - L(0.025), y, x + L(0.025), y + L(0.035)], fill=(250, 250, 250))
        else:
            for sgn in (-1, 1):
                a, b = cam(sgn * 0.025, 0.5), cam(sgn * 0.07, 0.55)
                draw.rectangle([min(a[0], b[0]), a[1], max(a[0], b[0]), b[1]], outline=dark, width=ew)
        return
    if view == "side view":
        draw.line([cam(0.0, top + 0.02), cam(0.0, hem)], fill=dark, width=ew)
        return
    # front-facing views (front, close-up, full body)
    if g in BOTTOMS:
        draw.line([cam(0, 0.45), cam(0, 0.53)], fill=dark, width=ew * 2)
        dot(0.455, 0.012)
        return
    if g in ("t-shirt", "dress"):  # a plain round neck
        a, b = cam(-0.055, 0.12), cam(0.055, 0.205)
        draw.chord([min(a[0], b[0]), a[1], max(a[0], b[0]), b[1]], 0, 180, fill=dark)
        return
    draw.polygon(P([(-0.04, 0.155), (0.04, 0.155), (0, 0.23)]), fill=dark)
    if g == "shirt":  # wide collar, placket, buttons down to the hem
        for sgn in (-1, 1):
            draw.polygon(
                P([(sgn * 0.035, 0.145), (sgn * 0.095, 0.165), (sgn * 0.075, 0.215), (sgn * 0.006, 0.235)]),
                fill=accent,
            )
        draw.line([cam(0, 0.23), cam(0, hem)], fill=dark, width=ew * 2)
        y = 0.27
        while y < hem - 0.02:
            dot(y)
            y += 0.06
    elif g == "coat":
        for sgn in (-1, 1):
            draw.line([cam(sgn * 0.04, 0.155), cam(sgn * 0.075, 0.23), cam(0, 0.33)], fill=dark, width=ew * 2)
        draw.line([cam(0, 0.33), cam(0, hem)], fill=dark, width=ew * 2)
        for y in (0.37, 0.47):
            for sgn in (-1, 1):
                x, yy = cam(sgn * 0.03, y)
                r = L(0.012)
                draw.ellipse([x - r, yy - r, x + r, yy + r], fill=button)
    elif g == "jumpsuit":
        for y in (0.27, 0.33, 0.39):
            dot(y)
    elif g == "hoodie":
        for sgn in (-1, 1):  # drawstrings
            draw.line([cam(sgn * 0.02, 0.16), cam(sgn * 0.02, 0.24)], fill=button, width=ew * 2)
        a, b = cam(-0.065, hem - 0.1), cam(0.065, hem - 0.025)
        draw.rectangle([min(a[0], b[0]), a[1], max(a[0], b[0]), b[1]], outline=dark, width=ew)


def _draw_accessory(draw: ImageDraw.ImageDraw, cam: Camera, record: Record, ew: int) -> None:
    L = cam.length
    a = record.accessory
    if a == "belt":
        y = WAIST_Y if record.garment not in TOPS else hem_y(record.garment, record.length) - 0.04
        if record.garment in BOTTOMS:
            y = 0.455
        half = 0.105 * (1.3 if record.fit == "loose" else 1.0)
        draw.line([cam(-half, y), cam(half, y)], fill=(58, 36, 18), width=max(2, round(L(0.03))))
        x, yy = cam(0, y)
        r = L(0.022)
        draw.rectangle([x - r, yy - r, x + r, yy + r], outline=(230, 190, 40), width=max(1, ew))
    elif a == "bag":
        fit = 1.3 if record.fit == "loose" else 1.0
        x0, x1 = 0.2 + 0.04 * fit, 0.34 + 0.04 * fit
        p0, p1 = cam(x0, 0.44), cam(x1, 0.56)
        box = [min(p0[0], p1[0]), p0[1], max(p0[0], p1[0]), p1[1]]
        draw.rectangle(box, fill=(172, 112, 58), outline=(40, 25, 12), width=ew)
        hx0, hy0 = cam((x0 + x1) / 2 - 0.035, 0.39)
        hx1, _ = cam((x0 + x1) / 2 + 0.035, 0.39)
        draw.arc(
            [min(hx0, hx1), hy0, max(hx0, hx1), p0[1] + L(0.05)], 180, 360, fill=(40, 25, 12), width=ew * 2
        )
    elif a == "hat":
        hx, hy = cam(0.0, 0.025)
        draw.rectangle(
            [hx - L(0.05) * cam.squeeze, hy - L(0.05), hx + L(0.05) * cam.squeeze, hy + L(0.02)],
            fill=(55, 55, 70),
        )
        draw.rectangle(
            [hx - L(0.1) * cam.squeeze, hy + L(0.015), hx + L(0.1) * cam.squeeze, hy + L(0.035)],
            fill=(55, 55, 70),
        )
        draw.rectangle(
            [hx - L(0.05) * cam.squeeze, hy, hx + L(0.05) * cam.squeeze, hy + L(0.012)], fill=(200, 40, 40)
        )
