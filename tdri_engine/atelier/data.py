"""Rendered data sets of the Atelier: pixels and field labels, cached on disk, with their hash.

A data set is ``n`` samples of one split (``splits.sample``) rendered at ``size`` pixels. It is
stored as ``.npz`` (plain arrays, ``allow_pickle=False`` on reading) under a name derived from
its parameters and ``WORLD_VERSION``; the *data hash* written in model cards is the SHA-256 of
the pixel bytes and labels, so a changed renderer shows up as a changed hash.

Labels are integer indices into ``world.ALL_VOCAB[field]`` (= ``VOCAB`` indices, the NOVEL value last); ``-1`` where the field does not exist
(sleeves of a skirt). Rendering is the slow part (about 10 ms per 64x64 image on one core).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StorageError
from .splits import Sample, sample
from .world import ALL_VOCAB, FIELDS, Record, render

# bump when the renderer's pictures change (2: shirt collar, shorts' legs, teal; 3: top hems
# 0.36-0.52 never meet dress / coat / jumpsuit / bottom hems 0.60-0.90, an A-line dress with a
# waist seam, a shirt's wide collar + cuffs + placket from every side and a t-shirt's plain round
# neck, a jumpsuit's waist seam and leg gap, a boxy loose fit ~1.6x the fitted width, sleeve
# seams, a side view's far half shaded, a back yoke seam, close-up centred 0.03 lower)
WORLD_VERSION = 3


@dataclass(frozen=True)
class DataSet:
    images: np.ndarray  # (n, size, size, 3) uint8
    labels: np.ndarray  # (n, len(FIELDS)) int64, -1 = the field does not exist
    samples: list[Sample]
    split: str
    seed: int

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def records(self) -> list[Record]:
        return [s.record for s in self.samples]

    def digest(self) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()


def labels_of(record: Record) -> list[int]:
    out = []
    for f in FIELDS:
        value = getattr(record, f)
        out.append(-1 if value is None else ALL_VOCAB[f].index(value))
    return out


def build(
    split: str,
    n: int,
    seed: int = 0,
    size: int = 64,
    cache: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DataSet:
    """Render (or load from ``cache``) ``n`` samples of ``split``."""
    samples = sample(split, n, seed)
    labels = np.array([labels_of(s.record) for s in samples], dtype=np.int64).reshape(n, len(FIELDS))
    file = None
    if cache is not None:
        file = Path(cache) / f"atelier-v{WORLD_VERSION}-{split}-{n}-s{seed}-{size}px.npz"
        if file.is_file():
            with np.load(file, allow_pickle=False) as z:
                images = z["images"]
            if images.shape == (n, size, size, 3):
                return DataSet(images, labels, samples, split, seed)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i, s in enumerate(samples):
        images[i] = np.asarray(render(s.record, s.seed, size))
        if progress is not None and (i + 1) % 256 == 0:
            progress(i + 1, n)
    if file is not None:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(file.name + ".tmp.npz")
            np.savez(tmp, images=images)
            os.replace(tmp, file)
        except OSError as exc:
            raise StorageError(
                f"Could not cache rendered data in {file.parent}: {exc}", "Free disk space."
            ) from exc
    return DataSet(images, labels, samples, split, seed)
