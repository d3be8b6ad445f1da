"""The trainable roles of the Atelier recipe (see ``recipe.Role``): the judge and the CLIP.

The CLIP trains on the ``train`` split (held-out combinations never seen); the judge, a measuring
instrument, on the ``world`` split (every combination, other render seeds; see ``splits``). Both
are measured on the same ``heldout`` renderings; the judge also on the ``novel`` split (the NOVEL
colour no other role is trained on). A step's batch is drawn from
``numpy.random.default_rng([seed, step])`` so it depends on nothing but the seed and the step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import blip_train, clip_train, data, gen_train, judge, vlm_train
from .data import DataSet
from .world import FIELDS, NOVEL

ROLES = ("judge", "clip", "vlm", "blip", *gen_train.ROLES)
DEFAULT_STEPS = {
    "judge": 2400,
    "clip": 1200,
    "vlm": vlm_train.DEFAULT_STEPS,
    "blip": blip_train.DEFAULT_STEPS,
} | gen_train.DEFAULT_STEPS
NOVEL_N = 400  # renderings of the NOVEL colour the judge is measured on
DEFAULT_LR = {"judge": 2e-3, "clip": 2e-3, "vlm": vlm_train.LR, "blip": blip_train.LR} | gen_train.DEFAULT_LR
BATCH = {"judge": 128, "clip": 64}


def _batch(n: int, size: int, seed: int, step: int) -> np.ndarray:
    return np.random.default_rng([seed, step]).choice(n, size=min(size, n), replace=False)


class JudgeRole:
    name = "judge"

    def __init__(self, train: DataSet, heldout: DataSet, seed: int = 0, batch: int = BATCH["judge"]):
        self.train, self.heldout, self.seed, self.batch = train, heldout, seed, batch
        self.model: Any = None

    def build(self) -> None:
        self.model = judge.build_model()

    def data_hash(self) -> str:
        return self.train.digest()

    def step_loss(self, step: int) -> Any:
        import torch

        idx = _batch(len(self.train), self.batch, self.seed, step)
        images = judge.augment(self.train.images[idx], np.random.default_rng([self.seed, step, 2]))
        out = self.model(judge.to_tensor(images))
        return judge.loss_fn(out, torch.from_numpy(self.train.labels[idx]))

    def evaluate(self) -> dict[str, Any]:
        pred = judge.predict_indices(self.model, self.heldout.images)
        figures = judge.accuracy(pred, self.heldout.labels) | {"n_heldout": len(self.heldout)}
        # the NOVEL colour: its share read right on renderings of the `novel` split
        novel = data.build("novel", min(NOVEL_N, len(self.heldout)), self.seed)
        novel_pred = judge.predict_indices(self.model, novel.images)
        right = {
            f: float((novel_pred[:, FIELDS.index(f)] == novel.labels[:, FIELDS.index(f)]).mean())
            for f in NOVEL
        }
        return figures | {"novel": right, "n_novel": len(novel)}

    def export(self, folder: Path) -> None:
        judge.save(self.model, folder, {"data_hash": self.data_hash()})


class ClipRole:
    name = "clip"

    def __init__(self, train: DataSet, heldout: DataSet, seed: int = 0, batch: int = BATCH["clip"]):
        self.train, self.heldout, self.seed, self.batch = train, heldout, seed, batch
        self.model: Any = None
        self.tokenizer: Any = None

    def build(self) -> None:
        from torch import nn

        # the CLIP and its training heads in one module: one optimiser, one checkpoint
        self.model = nn.ModuleDict({"clip": clip_train.build_model(), "heads": clip_train.build_heads()})
        self.tokenizer = clip_train.load_tokenizer()

    def data_hash(self) -> str:
        return self.train.digest()

    def step_loss(self, step: int) -> Any:
        idx = _batch(len(self.train), self.batch, self.seed, step)
        records = [self.train.samples[i].record for i in idx]
        text_seed = int(np.random.default_rng([self.seed, step, 1]).integers(1 << 31))
        images = judge.augment(
            self.train.images[idx], np.random.default_rng([self.seed, step, 2]), clip_train.CLIP_AUGMENT_SHIFT
        )
        return clip_train.loss(
            self.model["clip"],
            self.tokenizer,
            images,
            self.train.labels[idx],
            records,
            text_seed,
            heads=self.model["heads"],
        )

    def evaluate(self) -> dict[str, Any]:
        figures = clip_train.zero_shot(
            self.model["clip"], self.tokenizer, self.heldout.images, self.heldout.labels
        )
        return figures | {"n_heldout": len(self.heldout), "metric": "zero-shot: best value prompt per field"}

    def export(self, folder: Path) -> None:
        clip_train.save(self.model["clip"], self.tokenizer, folder)


TRAIN_SPLIT = {"judge": "world", "clip": "train", "vlm": "train", "blip": "train"} | {
    r: "train" for r in gen_train.ROLES
}


def make_role(
    name: str, train: DataSet, heldout: DataSet, seed: int, steps: int | None = None, out: Path | None = None
) -> Any:
    """The role ``name``; ``steps`` (the run's total) lets the VLM place its two phases; ``out``
    (the run folder) is where the generator finds its autoencoder and CLIP."""
    if name in gen_train.ROLES:
        return gen_train.make_role(name, train, heldout, seed, out or Path("."))
    if name == "vlm":
        return vlm_train.VlmRole(train, heldout, seed, steps=steps)
    if name == "blip":
        return blip_train.BlipRole(train, heldout, seed)
    return {"judge": JudgeRole, "clip": ClipRole}[name](train, heldout, seed)
