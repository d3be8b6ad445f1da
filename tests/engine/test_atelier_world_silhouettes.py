"""The Atelier's garments, lengths and fits read apart at 64 px in every view and style (world v3).

In world v2 a knee-length or long t-shirt ended at or below a short dress, a shirt showed a
2 px collar band outside the front view and a loose fit was 1.3x wider (the judge confused them).
Each test measures the picture itself: the garment is drawn in red on the plain studio backdrop,
so its pixels are the red ones (red minus green above 60 grey levels), outline included.
"""

from __future__ import annotations

import numpy as np

from tdri_engine.atelier.world import GARMENTS, LENGTHS, PERSPECTIVES, STYLES, Record, render

SEEDS = (0, 1, 2, 3, 4)
# measured (v3): at least 20 pixels change when a t-shirt becomes a shirt; v2: 6 (side view)
MIN_SHIRT = 12


def _record(
    garment: str, length: str, fit: str, view: str, style: str, sleeves: str = "short sleeves"
) -> Record:
    return Record(
        garment,
        "red",
        length,
        fit,
        None if garment in ("skirt", "trousers") else sleeves,
        style,
        "studio",
        view,
        "plain",
        "none",
    )


def _mask(record: Record, seed: int) -> np.ndarray:
    a = np.asarray(render(record, seed, 64)).astype(int)
    return (a[..., 0] - a[..., 1]) > 60


def _lowest_row(mask: np.ndarray) -> int:
    return int(np.nonzero(mask.any(axis=1))[0].max())


def test_every_top_ends_above_every_short_dress_coat_and_jumpsuit():
    # Measured (v3): the shortest gap is 4 px (full body view, zoom 0.78: 0.08 of a body); in
    # v2 a long t-shirt ended 8 px BELOW a short dress. 3 px leaves a pixel of jitter.
    gaps = []
    for seed in SEEDS:
        for view in PERSPECTIVES:
            for style in STYLES:
                tops = [_record(g, "long", "fitted", view, style) for g in ("t-shirt", "shirt", "hoodie")]
                longs = [_record(g, "short", "fitted", view, style) for g in ("dress", "coat", "jumpsuit")]
                top_hem = max(_lowest_row(_mask(t, seed)) for t in tops)
                gaps.append(min(_lowest_row(_mask(d, seed)) for d in longs) - top_hem)
    assert min(gaps) >= 3, min(gaps)


def test_a_loose_garment_is_much_wider_than_a_fitted_one_in_every_view():
    # The median row width of the garment (sleeveless, so the sleeves do not count): measured
    # (v3) at least 1.33x over every garment, length, view and seed (a knee-length skirt in side
    # view); in v2 as little as 1.0x (knee-length trousers, side view).
    ratios = []
    for seed in SEEDS:
        for view in PERSPECTIVES:
            for garment in GARMENTS:
                for length in LENGTHS:
                    w = []
                    for fit in ("fitted", "loose"):
                        rows = _mask(_record(garment, length, fit, view, "flat lay", "sleeveless"), seed).sum(
                            axis=1
                        )
                        w.append(float(np.median(rows[rows > 0])))
                    ratios.append(w[1] / w[0])
    assert min(ratios) >= 1.25, min(ratios)


def test_a_shirt_differs_from_a_t_shirt_in_every_view_and_style():
    # Pixels that change by more than 60 levels (any channel) when a t-shirt becomes a shirt
    # (collar, cuffs, placket, buttons): measured (v3) at least 20 in every view, style,
    # length and seed; in v2 as few as 6 (the 2 px collar band of a side view).
    fewest = 10**9
    for seed in SEEDS:
        for view in PERSPECTIVES:
            for style in STYLES:
                for length in LENGTHS:
                    t = _record("t-shirt", length, "fitted", view, style)
                    a = np.asarray(render(t, seed, 64)).astype(int)
                    b = np.asarray(render(t.replace(garment="shirt"), seed, 64)).astype(int)
                    fewest = min(fewest, int((np.abs(a - b).max(axis=-1) > 60).sum()))
    assert fewest >= MIN_SHIRT, fewest
