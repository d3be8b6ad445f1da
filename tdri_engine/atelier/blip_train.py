"""The Atelier's BLIP: an image-text matching model trained on the world, for the BLIP score.

Format: a transformers ``BlipForImageTextRetrieval`` + ``BlipProcessor`` folder, the layout of
Salesforce/blip-itm-base-coco, so ``metrics.load_blip`` (kind ``blip-itm``) loads it unchanged
and ``BlipScorer`` reads it as it reads the real one: the BLIP score is
``softmax(itm_head(text_encoder(text, cross-attending the image))[CLS])[1]``, the I2I score the
cosine of ``vision_proj`` of the two images' [CLS] features.

Sizes (CPU training in minutes, float16 weights of about 2 MB): a ViT of 8 px patches on 64 px
pictures (64 tokens + [CLS], 4 blocks of width 96), a BERT text encoder of 2 layers of width 96
cross-attending the image in every layer, and a 1000-piece lower-cased WordPiece vocabulary
trained offline (``tokenizers_offline``) on the built-in corpus plus this world's phrasings.

Training (``loss``; the paper uses BLIP only as a metric, so the recipe is ours):

* ITM, BLIP's own matching objective: each picture is paired with a true caption and with a
  *hard negative*, the same caption (same seeded wording) of the record with one field changed
  to another value (a red dress -> a blue dress; beach -> street), so the score must read every
  aspect; one negative in four is instead another picture's caption (an easy negative). The
  caption is the full caption (half the time) or one aspect caption, in varied wordings
  (``captions.full_caption`` / ``aspect_caption`` with a drawn seed); an aspect caption's
  negative changes a field of that aspect (otherwise the text would not change).
  Cross-entropy of ``itm_head`` over {no match, match}.
* ITC at weight ``ITC_WEIGHT``: InfoNCE between ``vision_proj`` and ``text_proj`` of the true full
  captions, both directions, so the I2I cosine compares what pictures show.
* Field heads at weight ``AUX_WEIGHT`` on the image [CLS] (one linear head per world field, the
  judge's task): training scaffolding that makes the vision tower learn to see in few steps; not
  exported.

Measure (``evaluate``): held-out pictures (attribute combinations never trained on), each with a
true caption and a one-field negative, for full captions and for aspect captions: ITM accuracy
(P(match) > 0.5 says match), pair accuracy (the true caption scores above its negative), and
pair accuracy per changed field.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import ASPECTS
from .captions import PHRASES, aspect_caption, full_caption
from .world import ASPECT_FIELDS, FIELDS, VOCAB, Record

BLIP_KIND = "blip-itm"  # models.py's kind: metrics.load_blip
BUNDLED = Path(__file__).resolve().parent / "weights" / "blip"
IMAGE_SIZE = 64
WORDPIECE_VOCAB = 1000
WIDTH = 96
VISION_CFG: dict[str, Any] = {
    "hidden_size": WIDTH,
    "intermediate_size": 2 * WIDTH,
    "num_hidden_layers": 4,
    "num_attention_heads": 3,
    "image_size": IMAGE_SIZE,
    "patch_size": 8,
    # BlipVisionConfig's default (1e-10) gives features of ~1e-6, which vanish in fp16
    "initializer_range": 0.02,
}
TEXT_CFG: dict[str, Any] = {
    "hidden_size": WIDTH,
    "intermediate_size": 2 * WIDTH,
    "num_hidden_layers": 2,
    "num_attention_heads": 3,
    "max_position_embeddings": 64,
    "encoder_hidden_size": WIDTH,
}
PROJECTION_DIM = 64
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
EASY_NEGATIVE_SHARE = 0.25
FULL_CAPTION_SHARE = 0.5
ITC_WEIGHT = 0.5
AUX_WEIGHT = 0.5
ITC_TEMPERATURE = 0.07


# --------------------------------------------------------------------------------------------
# texts: true captions and their one-field negatives
# --------------------------------------------------------------------------------------------


def changed(record: Record, fields: Sequence[str], rng: random.Random) -> tuple[Record, str]:
    """``record`` with one of ``fields`` (one it has) set to another value of the trained
    vocabulary; returns the new record and the field changed."""
    present = [f for f in fields if getattr(record, f) is not None]
    f = rng.choice(present)
    value = rng.choice([v for v in VOCAB[f] if v != getattr(record, f)])
    return record.replace(**{f: value}), f


def caption(record: Record, kind: str, wording: int) -> str:
    """The full caption (``kind == "full"``) or an aspect's caption, in wording ``wording``."""
    return full_caption(record, wording) if kind == "full" else aspect_caption(record, kind, wording)


def pair(record: Record, kind: str, wording: int, rng: random.Random) -> tuple[str, str, str]:
    """(true caption, hard negative, field changed) for ``record``."""
    fields = FIELDS if kind == "full" else ASPECT_FIELDS[kind]
    other, f = changed(record, fields, rng)
    return caption(record, kind, wording), caption(other, kind, wording), f


def _corpus() -> list[str]:
    texts: list[str] = []
    for field, values in PHRASES.items():  # the trained world only: not the NOVEL value
        for value, phrases in values.items():
            if value in VOCAB[field]:
                texts.extend(list(phrases) * 20)
    return texts


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


def build_processor() -> Any:
    """``BlipProcessor``: the WordPiece tokenizer and a 64 px ``BlipImageProcessor``."""
    import tempfile

    from transformers import BertTokenizer, BlipImageProcessor, BlipProcessor

    from ..tokenizers_offline import builtin_corpus, save_bert_tokenizer

    with tempfile.TemporaryDirectory() as tdir:
        folder = save_bert_tokenizer(Path(tdir), WORDPIECE_VOCAB, builtin_corpus(_corpus()))
        tokenizer = BertTokenizer.from_pretrained(
            folder, model_max_length=TEXT_CFG["max_position_embeddings"]
        )
    image_processor = BlipImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)
    )
    return BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)


def build_blip(tokenizer: Any) -> Any:
    """A fresh ``BlipForImageTextRetrieval`` (initialised from torch's global seed)."""
    from transformers import BlipConfig, BlipForImageTextRetrieval

    config = BlipConfig(
        text_config={
            "vocab_size": len(tokenizer),
            **TEXT_CFG,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.cls_token_id,
            "sep_token_id": tokenizer.sep_token_id,
        },
        vision_config=dict(VISION_CFG),
        projection_dim=PROJECTION_DIM,
        image_text_hidden_size=PROJECTION_DIM,
    )
    return BlipForImageTextRetrieval(config)


def build_model(tokenizer: Any) -> Any:
    """The trainable module: the BLIP and its (not exported) field heads."""
    from torch import nn

    class BlipTrainer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blip = build_blip(tokenizer)
            self.aux = nn.ModuleDict({f: nn.Linear(WIDTH, len(VOCAB[f])) for f in FIELDS})

    return BlipTrainer()


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def _pictures(images: np.ndarray) -> list[Any]:
    from PIL import Image

    return [Image.fromarray(np.ascontiguousarray(im)) for im in images]


def pixels(processor: Any, images: np.ndarray) -> Any:
    return processor.image_processor(images=_pictures(images), return_tensors="pt")["pixel_values"]


def itm_logits(blip: Any, tokenizer: Any, image_embeds: Any, texts: Sequence[str]) -> Any:
    """ITM logits of ``texts[i]`` against ``image_embeds[i]`` (as ``BlipScorer`` computes them)."""
    import torch

    enc = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
    atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
    hidden = blip.text_encoder(
        input_ids=enc["input_ids"],
        attention_mask=enc["attention_mask"],
        encoder_hidden_states=image_embeds,
        encoder_attention_mask=atts,
    ).last_hidden_state
    return blip.itm_head(hidden[:, 0, :])


def loss(
    trainer: Any,
    processor: Any,
    images: np.ndarray,
    labels: np.ndarray,
    records: Sequence[Record],
    text_seed: int,
) -> Any:
    """ITM on true captions and their negatives + ``ITC_WEIGHT`` x ITC + ``AUX_WEIGHT`` x field heads."""
    import torch
    import torch.nn.functional as F

    rng = random.Random(text_seed)
    blip, tok = trainer.blip, processor.tokenizer
    n = len(records)
    positives, negatives = [], []
    for i, record in enumerate(records):
        kind = "full" if rng.random() < FULL_CAPTION_SHARE else rng.choice(ASPECTS)
        wording = rng.randrange(1 << 30)
        true, hard, _ = pair(record, kind, wording, rng)
        if n > 1 and rng.random() < EASY_NEGATIVE_SHARE:
            j = rng.choice([k for k in range(n) if k != i])
            hard = caption(records[j], kind, wording)
            if hard == true:  # another picture with the same aspect value: keep the hard one
                hard = pair(record, kind, wording, rng)[1]
        positives.append(true)
        negatives.append(hard)
    image_embeds = blip.vision_model(pixel_values=pixels(processor, images)).last_hidden_state
    both = torch.cat([image_embeds, image_embeds])
    logits = itm_logits(blip, tok, both, positives + negatives)
    target = torch.cat([torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)])
    itm = F.cross_entropy(logits, target)

    fulls = [full_caption(r, rng.randrange(1 << 30)) for r in records]
    enc = tok(fulls, padding=True, truncation=True, return_tensors="pt")
    text_cls = blip.text_encoder(
        input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
    ).last_hidden_state
    img = F.normalize(blip.vision_proj(image_embeds[:, 0, :]), dim=-1)
    txt = F.normalize(blip.text_proj(text_cls[:, 0, :]), dim=-1)
    sims = img @ txt.t() / ITC_TEMPERATURE
    eye = torch.arange(n)
    itc = (F.cross_entropy(sims, eye) + F.cross_entropy(sims.t(), eye)) / 2

    y = torch.from_numpy(labels)
    aux: Any = 0.0
    cls = image_embeds[:, 0, :]
    for k, f in enumerate(FIELDS):
        if bool((y[:, k] >= 0).any()):
            aux = aux + F.cross_entropy(trainer.aux[f](cls), y[:, k], ignore_index=-1)
    return itm + ITC_WEIGHT * itc + AUX_WEIGHT * aux


# --------------------------------------------------------------------------------------------
# held-out figures
# --------------------------------------------------------------------------------------------


def match_probabilities(
    blip: Any, processor: Any, images: np.ndarray, texts: Sequence[str], batch: int = 128
) -> np.ndarray:
    """P(match) of ``texts[i]`` with ``images[i]``."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            embeds = blip.vision_model(
                pixel_values=pixels(processor, images[i : i + batch])
            ).last_hidden_state
            logits = itm_logits(blip, processor.tokenizer, embeds, texts[i : i + batch]).float()
            out.append(torch.softmax(logits, -1)[:, 1].numpy())
    return np.concatenate(out) if out else np.zeros(0)


def evaluate(blip: Any, processor: Any, images: np.ndarray, records: Sequence[Record]) -> dict[str, Any]:
    """ITM and pair accuracy on held-out pictures, for full and for aspect captions."""
    figures: dict[str, Any] = {}
    for kind in ("full", "aspect"):
        trues, hards, fields = [], [], []
        for i, record in enumerate(records):
            rng = random.Random(f"blip-eval:{kind}:{i}")
            k = "full" if kind == "full" else ASPECTS[i % len(ASPECTS)]
            true, hard, f = pair(record, k, rng.randrange(1 << 30), rng)
            trues.append(true)
            hards.append(hard)
            fields.append(f)
        p_true = match_probabilities(blip, processor, images, trues)
        p_hard = match_probabilities(blip, processor, images, hards)
        by_field = {
            f: float(np.mean([t > h for t, h, g in zip(p_true, p_hard, fields, strict=True) if g == f]))
            for f in FIELDS
            if f in fields
        }
        figures[kind] = {
            "itm_accuracy": float(((p_true > 0.5).mean() + (p_hard <= 0.5).mean()) / 2),
            "pair_accuracy": float((p_true > p_hard).mean()),
            "mean_p_true": float(p_true.mean()),
            "mean_p_negative": float(p_hard.mean()),
            "pair_accuracy_by_changed_field": by_field,
        }
    figures["metric"] = (
        "held-out pictures, each with its true caption and the caption of its record with one field changed: "
        "ITM accuracy at P(match) = 0.5 over both, and the share where the true caption scores higher"
    )
    return figures


# --------------------------------------------------------------------------------------------
# saving, loading, the recipe's role
# --------------------------------------------------------------------------------------------


def save(blip: Any, processor: Any, folder: Path, extra: dict[str, Any] | None = None) -> Path:
    """The ``BlipForImageTextRetrieval`` folder (float16 ``model.safetensors``), its processor,
    and ``atelier.json``."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(blip).to(torch.float16).save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    info = {"atelier": True, "role": "blip", "kind": BLIP_KIND}
    (folder / "atelier.json").write_text(json.dumps(info | (extra or {}), indent=2), encoding="utf-8")
    return folder


def load_bundled(device: str = "cpu") -> Any:
    """The committed BLIP through the engine's own loader (a ``metrics.BlipScorer``)."""
    import torch

    from ..metrics import load_blip
    from ..models import RoleSpec

    spec: Any = RoleSpec("blip", BLIP_KIND, str(BUNDLED))  # a frozen RoleSpec reads as metrics.SpecLike
    return load_blip(BUNDLED, spec, torch.device(device), torch.float32)


DEFAULT_STEPS = 1000
LR = 1e-3
BATCH = 32
N_EVAL = 400


class BlipRole:
    """``recipe.Role`` of the BLIP: trains on ``train``, measured on ``heldout``."""

    name = "blip"

    def __init__(self, train: Any, heldout: Any, seed: int = 0, batch: int = BATCH, n_eval: int = N_EVAL):
        self.train, self.heldout, self.seed, self.batch, self.n_eval = train, heldout, seed, batch, n_eval
        self.model: Any = None
        self.processor: Any = None

    def build(self) -> None:
        self.processor = build_processor()
        self.model = build_model(self.processor.tokenizer)

    def data_hash(self) -> str:
        return str(self.train.digest())

    def step_loss(self, step: int) -> Any:
        n = len(self.train)
        idx = np.random.default_rng([self.seed, step]).choice(n, size=min(self.batch, n), replace=False)
        records = [self.train.samples[int(i)].record for i in idx]
        text_seed = int(np.random.default_rng([self.seed, step, 1]).integers(1 << 31))
        return loss(
            self.model, self.processor, self.train.images[idx], self.train.labels[idx], records, text_seed
        )

    def evaluate(self) -> dict[str, Any]:
        n = min(self.n_eval, len(self.heldout))
        figures = evaluate(self.model.blip, self.processor, self.heldout.images[:n], self.heldout.records[:n])
        return figures | {"n_heldout": n}

    def export(self, folder: Path) -> None:
        save(self.model.blip, self.processor, folder, {"data_hash": self.data_hash()})
