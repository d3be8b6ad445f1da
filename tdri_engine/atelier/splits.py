"""Train and held-out splits that hold out attribute *combinations*, not only images.

Two families of pairs never appear in training:

* garment x colour: each garment loses one colour, ``COLORS[(5 i + 3) mod 12]`` for the i-th
  garment — eight pairs, eight different colours;
* garment x background: each garment loses one background, ``BACKGROUNDS[(i + 2) mod 6]`` —
  eight pairs, every background held out for at least one garment.

So every value is still seen in training, but a model that only memorised combinations fails on
held-out data: it must compose. A training record contains none of the held-out pairs; a
held-out record contains at least one (drawn uniformly, then one held-out pair is imposed).
Render seeds of the splits are disjoint (held-out seeds start at 10^9), so not even the
jitter repeats.

A third split, ``world``, draws from every combination (seeds from 2 x 10^9). Only the judge
trains on it: a measuring instrument must not be biased against the combinations it will
measure (a judge trained without them learns "a skirt is never in a street" and reads a
held-out skirt as trousers), and its held-out figures are still on renderings it never saw. It
also draws the NOVEL colour (``world.NOVEL``, 1 record in 13), which no other split holds.

``novel`` (seeds from 3 x 10^9) holds only records with the NOVEL value: the judge's figure on
it, and the captioned pictures a fine-tuning demonstration starts from. Everything is a function of (split, index, seed): ``sample(n)`` is a prefix of
``sample(n + k)``, which makes a resumed training run see the same data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import BadInput
from .world import BACKGROUNDS, COLORS, GARMENTS, Record, novel_record, random_record

SPLITS = ("train", "heldout", "world", "novel")
HELDOUT_SEED_BASE = 1_000_000_000
WORLD_SEED_BASE = 2_000_000_000
NOVEL_SEED_BASE = 3_000_000_000

_COLORS = tuple(COLORS)
HELDOUT_PAIRS: dict[tuple[str, str], frozenset[tuple[str, str]]] = {
    ("garment", "color"): frozenset((g, _COLORS[(5 * i + 3) % len(_COLORS)]) for i, g in enumerate(GARMENTS)),
    ("garment", "background"): frozenset(
        (g, BACKGROUNDS[(i + 2) % len(BACKGROUNDS)]) for i, g in enumerate(GARMENTS)
    ),
}


def heldout_pairs_of(record: Record) -> list[tuple[str, str, str, str]]:
    """The held-out combinations ``record`` contains, as (field, value, field, value)."""
    out = []
    for (fa, fb), pairs in HELDOUT_PAIRS.items():
        pair = (getattr(record, fa), getattr(record, fb))
        if pair in pairs:
            out.append((fa, pair[0], fb, pair[1]))
    return out


def is_heldout(record: Record) -> bool:
    return bool(heldout_pairs_of(record))


@dataclass(frozen=True)
class Sample:
    record: Record
    seed: int  # the render seed


def _check(split: str) -> None:
    if split not in SPLITS:
        raise BadInput(f"Unknown split {split!r}.", f"Use one of: {', '.join(SPLITS)}.")


def sample_one(split: str, index: int, seed: int = 0) -> Sample:
    """The ``index``-th sample of ``split`` for data seed ``seed``."""
    _check(split)
    rng = random.Random(f"{split}:{seed}:{index}")
    if split == "train":
        while True:
            record = random_record(rng)
            if not is_heldout(record):
                break
        return Sample(record, seed * 10_000_019 + index)
    if split == "world":
        return Sample(random_record(rng, novel=True), WORLD_SEED_BASE + seed * 10_000_019 + index)
    if split == "novel":
        return Sample(novel_record(rng), NOVEL_SEED_BASE + seed * 10_000_019 + index)
    record = random_record(rng)
    family = rng.choice(sorted(HELDOUT_PAIRS))
    a, b = rng.choice(sorted(HELDOUT_PAIRS[family]))
    record = record.replace(**{family[0]: a, family[1]: b})
    return Sample(record, HELDOUT_SEED_BASE + seed * 10_000_019 + index)


def sample(split: str, n: int, seed: int = 0, start: int = 0) -> list[Sample]:
    """Samples ``start .. start+n-1`` of ``split`` (deterministic; a prefix of any longer call)."""
    if n < 0:
        raise BadInput(f"Cannot draw {n} samples.", "Ask for zero or more.")
    return [sample_one(split, i, seed) for i in range(start, start + n)]
