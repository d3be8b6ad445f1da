"""The judge: a small attribute classifier that reads all seven aspects from an Atelier image.

It is trained only on renderings (never on generated images) and is never used by the
refinement loop: tests and evaluation measure with it, so what the loop optimises and what
measures it stay apart.

Architecture (chosen for CPU training in tens of minutes and a file under 2 MB): six 3x3
convolutions with batch norm, ``CHANNELS`` = (16, 32, 48, 64, 96, 128) at 32, 16, 16, 8, 8 and
4 px (stride 2 except the 2nd and 4th of a size). The first layer works at 32 px: a shirt's
collar, a hood or the 30 % width of a loose fit are a few pixels at 64 px, which a 4x4 stride-4
patch stem (the first judge) blurred together. A 2x2 average pool kept spatial (so hem height
and framing stay visible), one shared 256-unit layer and one linear head per field
(``world.FIELDS``) over ``world.ALL_VOCAB`` (the NOVEL colour included: the judge measures a
fine-tuned generator on it). An aspect is read correctly when every field of it is
(``ASPECT_FIELDS``; Size = length, fit and sleeves where the garment has them).

Training augments each batch with a horizontal flip (every field is mirror-symmetric: a bag on
the other hip is still a bag) and a shift of up to 3 px (edge pixels repeated): the first judge
read its training pictures at 0.99 and held-out ones at 0.90 on length and style, i.e. it had
memorised 12 000 pictures.

Saved as ``model.safetensors`` + ``config.json`` (vocabularies, sizes, normalisation); loading
reads only those two files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInput, ModelBroken
from ..settings import ASPECTS
from .world import ALL_VOCAB, ASPECT_FIELDS, FIELDS, Record

JUDGE_KIND = "atelier-judge"
BUNDLED = Path(__file__).resolve().parent / "weights" / "judge"  # the committed, trained judge
CHANNELS = (16, 32, 48, 64, 96, 128)
HIDDEN = 256


def build_model(channels: Sequence[int] = CHANNELS, hidden: int = HIDDEN) -> Any:
    """The network, freshly initialised (torch's default init, from the global seed)."""
    import torch
    from torch import nn

    class Judge(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c1, c2, c3, c4, c5, c6 = channels

            def block(i: int, o: int, stride: int) -> list[Any]:
                return [nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

            self.features = nn.Sequential(
                *block(3, c1, 2), *block(c1, c2, 2), *block(c2, c3, 1), *block(c3, c4, 2),
                *block(c4, c5, 1), *block(c5, c6, 2), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            )  # fmt: skip
            self.shared = nn.Sequential(nn.Linear(4 * c6, hidden), nn.ReLU(inplace=True))
            self.heads = nn.ModuleDict({f: nn.Linear(hidden, len(ALL_VOCAB[f])) for f in FIELDS})

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            h = self.shared(self.features(x))
            return {f: head(h) for f, head in self.heads.items()}

    return Judge()


def to_tensor(images: np.ndarray) -> Any:
    """uint8 (n, h, w, 3) -> float (n, 3, h, w) in [-1, 1]."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def augment(images: np.ndarray, rng: np.random.Generator, shift: int = 3) -> np.ndarray:
    """A horizontal flip of half the pictures and a shift of up to ``shift`` px (edge pixels
    repeated), drawn from ``rng``; labels are unchanged by both."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    dy = rng.integers(0, 2 * shift + 1, n)
    dx = rng.integers(0, 2 * shift + 1, n)
    flip = rng.random(n) < 0.5
    out = np.empty_like(images)
    for i in range(n):
        crop = padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out[i] = crop[:, ::-1] if flip[i] else crop
    return out


def loss_fn(outputs: dict[str, Any], labels: Any) -> Any:
    """Sum over fields of cross-entropy; ``-1`` labels (no such field) are ignored."""
    import torch.nn.functional as F

    total = 0.0
    for i, f in enumerate(FIELDS):
        y = labels[:, i]
        if bool((y >= 0).any()):
            total = total + F.cross_entropy(outputs[f], y, ignore_index=-1)
    return total


def predict_indices(model: Any, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """(n, len(FIELDS)) predicted value indices."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            logits = model(to_tensor(images[i : i + batch]))
            out.append(torch.stack([logits[f].argmax(-1) for f in FIELDS], dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(FIELDS)), dtype=np.int64)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-field and per-aspect accuracy; a field absent from an image (label -1) is skipped,
    and counts as right in its aspect."""
    fields_acc = {}
    ok = (pred == labels) | (labels < 0)
    for i, f in enumerate(FIELDS):
        present = labels[:, i] >= 0
        fields_acc[f] = float(ok[present, i].mean()) if present.any() else float("nan")
    aspects_acc = {}
    for a in ASPECTS:
        idx = [FIELDS.index(f) for f in ASPECT_FIELDS[a]]
        aspects_acc[a] = float(ok[:, idx].all(axis=1).mean()) if len(labels) else float("nan")
    return {"fields": fields_acc, "aspects": aspects_acc}


def save(model: Any, folder: Path, extra: dict[str, Any] | None = None) -> Path:
    """``model.safetensors`` (float32) + ``config.json`` in ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().contiguous()
        for k, v in model.state_dict().items()
        if k.split(".")[-1] != "num_batches_tracked"
    }
    save_file(state, str(folder / "model.safetensors"))
    config = {
        "kind": JUDGE_KIND,
        "channels": list(CHANNELS),
        "hidden": HIDDEN,
        "image_size": 64,
        "normalise": "x / 127.5 - 1",
        "fields": list(FIELDS),
        "vocab": {f: list(ALL_VOCAB[f]) for f in FIELDS},
        "aspect_fields": {a: list(fs) for a, fs in ASPECT_FIELDS.items()},
    } | (extra or {})
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


class Judge:
    """A loaded judge: reads field values and aspect agreement from images."""

    def __init__(self, model: Any, config: dict[str, Any]):
        self.model = model.eval()
        self.config = config
        self.size = int(config.get("image_size", 64))

    def _pixels(self, images: Sequence[Any]) -> np.ndarray:
        from PIL import Image

        arrs = []
        for im in images:
            if not isinstance(im, Image.Image):
                raise BadInput(f"The judge reads pictures, not {type(im).__name__}.", "Pass PIL images.")
            im = im.convert("RGB")
            if im.size != (self.size, self.size):
                im = im.resize((self.size, self.size), Image.Resampling.LANCZOS)
            arrs.append(np.asarray(im))
        return np.stack(arrs) if arrs else np.zeros((0, self.size, self.size, 3), np.uint8)

    def read(self, images: Sequence[Any]) -> list[dict[str, str]]:
        """The value of every field the judge sees in each image."""
        idx = predict_indices(self.model, self._pixels(images))
        return [{f: ALL_VOCAB[f][int(row[i])] for i, f in enumerate(FIELDS)} for row in idx]

    def agreement(self, image: Any, record: Record) -> dict[str, bool]:
        """Per aspect: does the image show ``record``'s value(s)? (fields absent from the
        record's garment, such as a skirt's sleeves, are not asked)."""
        seen = self.read([image])[0]
        return {
            a: all(getattr(record, f) is None or seen[f] == getattr(record, f) for f in ASPECT_FIELDS[a])
            for a in ASPECTS
        }


def load(folder: Path) -> Judge:
    """The judge saved by :func:`save`; nothing but safetensors and JSON is read."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_file, weights = folder / "config.json", folder / "model.safetensors"
    if not cfg_file.is_file() or not weights.is_file():
        raise ModelBroken(
            f"No judge in {folder} (config.json and model.safetensors are needed).",
            "Train one with `tdri world train --only judge --out DIR`.",
        )
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
        if config.get("kind") != JUDGE_KIND or config.get("vocab") != {f: list(ALL_VOCAB[f]) for f in FIELDS}:
            raise ValueError("the config is not an Atelier judge of this world's vocabulary")
        model = build_model(config["channels"], config["hidden"])
        state = load_file(str(weights))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(f"weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelBroken(
            f"The judge in {folder} could not be loaded: {exc}",
            "Retrain it with `tdri world train --only judge --out DIR`.",
        ) from exc
    return Judge(model, config)


def load_bundled() -> Judge:
    """The trained judge committed with the project (``tdri_engine/atelier/weights/judge``)."""
    return load(BUNDLED)
