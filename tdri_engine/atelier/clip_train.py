"""The Atelier's CLIP: a small transformers ``CLIPModel`` trained contrastively on the world.

Format: a ``hf-clip`` folder exactly as ``openai/clip-vit-base-patch32`` is laid out
(``config.json``, ``model.safetensors``, CLIP's real byte-level BPE tokenizer written offline by
``tokenizers_offline.save_clip_tokenizer`` and a ``CLIPImageProcessor`` at 64 px), so
``metrics.load_clip`` loads it unchanged and a Stable Diffusion pipeline can take its text tower
as ``CLIPTextModel``. The 49408-row token embedding is most of the file, so weights are stored
in float16 (the config says float32: loaders cast up on reading).

Training (``loss``): each image in a batch gets one text, drawn per step from its full caption
(35 %), one aspect caption (45 %) or one field's zero-shot prompt (20 %), each in a seeded
wording. A text states *constraints* (the fields it names); it is a positive for every image in
the batch that satisfies them, not only its own. The caption loss is InfoNCE with these
multi-positive targets, both directions: ``-sum_j q_ij log softmax_j(s * t_i . v_j)`` with
``q_i`` uniform over text i's positives (and symmetrically over texts for each image).

Beside it, ``FIELD_WEIGHT`` times the *zero-shot loss*: every image against all 51 value
prompts (``value_prompts``), a softmax within each field, cross-entropy with the image's value,
summed over fields (as the judge's heads are). It is the same image-text similarity, with the other values of a field as
the negatives. The paper's CLIP is pretrained on web captions; this one sees only batches of 64
in which the wrong value of a field is rarely the hardest negative, and with the caption loss
alone 900 steps left its garment zero-shot below chance on held-out pairs (the first run, in
``docs/atelier``): the image side read the garment off the colour and background it was seen
with, and the text side had barely separated "a shirt" from "a t-shirt".

And, as training scaffolding (``build_heads``, not exported; the VLM's recipe does the same), one
linear head per field on the unit image embedding, cross-entropy summed over fields. Measured on
two shared cores: the prompts' text embeddings first collapse onto the mean image (their spread
fell from 0.027 to 0.0015 in 20 steps), so the zero-shot loss alone gives the image tower little
signal early on; a tiny ViT from scratch learns colour as a plain classifier at about 0.5 after
80 steps of batch 64, and the heads give it that signal from the first step.

Zero-shot (``zero_shot``): for each field, the value whose prompt (``captions.value_prompt``)
scores highest against the image; an aspect is right when all its fields are.
"""

from __future__ import annotations

import functools
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import ASPECTS
from .captions import aspect_caption, full_caption, value_prompt
from .world import ASPECT_FIELDS, FIELDS, VOCAB, Record

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_SIZE = 64

TEXT_CFG = dict(
    vocab_size=49408,
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=3,
    num_attention_heads=4,
    max_position_embeddings=77,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)
# 16 px patches (a 4x4 grid): a pattern period (6.4 px) fits in one patch, and on two shared CPU
# cores a step costs 0.4 s at batch 128 where 8 px patches cost 0.7 s
VISION_CFG = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=3,
    num_attention_heads=4,
    image_size=IMAGE_SIZE,
    patch_size=16,
)
PROJECTION_DIM = 64
FIELD_WEIGHT = 1.0  # weight of the zero-shot (value-prompt) loss beside the caption loss
CLIP_AUGMENT_SHIFT = 2  # px of the training shift (with a horizontal flip: judge.augment)


def build_model(text_cfg: dict | None = None, vision_cfg: dict | None = None) -> Any:
    """A fresh CLIPModel (initialised from torch's global seed)."""
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config=dict(TEXT_CFG, **(text_cfg or {})),
        vision_config=dict(VISION_CFG, **(vision_cfg or {})),
        projection_dim=PROJECTION_DIM,
    )
    return CLIPModel(config)


@functools.lru_cache(maxsize=1)
def load_tokenizer() -> Any:
    """CLIP's real BPE tokenizer (49408 entries), built offline from open_clip's vocabulary
    (built once per process: it only reads its vocabulary)."""
    from transformers import CLIPTokenizer

    from ..tokenizers_offline import save_clip_tokenizer

    with tempfile.TemporaryDirectory() as tdir:
        return CLIPTokenizer.from_pretrained(save_clip_tokenizer(Path(tdir)))


def pixels(images: np.ndarray) -> Any:
    """uint8 (n, h, w, 3) -> CLIP-normalised float (n, 3, h, w), as CLIPImageProcessor does."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def text_for(record: Record, rng: random.Random) -> tuple[str, dict[str, str]]:
    """One training text for ``record`` and the constraints it states (field -> value)."""
    u = rng.random()
    if u < 0.35:
        return full_caption(record, rng.randrange(1 << 30)), {
            f: getattr(record, f) for f in FIELDS if getattr(record, f) is not None
        }
    if u < 0.80:
        aspect = rng.choice(ASPECTS)
        text = aspect_caption(record, aspect, rng.randrange(1 << 30))
        return text, {f: getattr(record, f) for f in ASPECT_FIELDS[aspect] if getattr(record, f) is not None}
    present = [f for f in FIELDS if getattr(record, f) is not None]
    f = rng.choice(present)
    return value_prompt(f, getattr(record, f)), {f: getattr(record, f)}


def positives(constraints: list[dict[str, str]], labels: np.ndarray) -> np.ndarray:
    """M[i, j] = image j satisfies every constraint of text i."""
    m: np.ndarray = np.ones((len(constraints), len(labels)), dtype=bool)
    for i, c in enumerate(constraints):
        for f, v in c.items():
            m[i] &= labels[:, FIELDS.index(f)] == VOCAB[f].index(v)
    return m


def value_prompts() -> list[str]:
    """Every field's value prompts, field after field in ``FIELDS`` order (``_PROMPT_COLUMNS``)."""
    return [value_prompt(f, v) for f in FIELDS for v in VOCAB[f]]


def _columns() -> dict[str, tuple[int, int]]:
    out, k = {}, 0
    for f in FIELDS:
        out[f] = (k, k + len(VOCAB[f]))
        k += len(VOCAB[f])
    return out


_PROMPT_COLUMNS = _columns()


def tokenize(tokenizer: Any, texts: list[str]) -> dict[str, Any]:
    return tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")


def _features(out: Any) -> Any:
    return getattr(out, "pooler_output", out)


def build_heads() -> Any:
    """One linear head per field on the image embedding (training scaffolding, not exported)."""
    from torch import nn

    return nn.ModuleDict({f: nn.Linear(PROJECTION_DIM, len(VOCAB[f])) for f in FIELDS})


def loss(
    model: Any,
    tokenizer: Any,
    images: np.ndarray,
    labels: np.ndarray,
    records: list[Record],
    seed: int,
    field_weight: float = FIELD_WEIGHT,
    heads: Any = None,
) -> Any:
    """Caption InfoNCE (multi-positive, both directions) plus ``field_weight`` times the
    zero-shot loss over every field's value prompts, plus the field heads' cross-entropy when
    ``heads`` are given (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    rng = random.Random(seed)
    drawn = [text_for(r, rng) for r in records]
    texts, constraints = [t for t, _ in drawn], [c for _, c in drawn]
    mask = torch.from_numpy(positives(constraints, labels)).float()
    prompts = value_prompts() if field_weight > 0 else []
    enc = tokenize(tokenizer, texts + prompts)
    text = F.normalize(_features(model.get_text_features(**enc)), dim=-1)
    image = F.normalize(_features(model.get_image_features(pixel_values=pixels(images))), dim=-1)
    scale = model.logit_scale.exp()
    logits = scale * text[: len(texts)] @ image.T  # (texts, images)
    t2i = -(mask / mask.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    i2t = -(mask / mask.sum(0, keepdim=True) * F.log_softmax(logits, dim=0)).sum(0).mean()
    total = (t2i + i2t) / 2
    y = torch.from_numpy(np.ascontiguousarray(labels))
    present = [i for i in range(len(FIELDS)) if bool((y[:, i] >= 0).any())]
    if field_weight > 0:
        per_value = scale * image @ text[len(texts) :].T  # (images, every value prompt)
        for i in present:
            a, b = _PROMPT_COLUMNS[FIELDS[i]]
            total = total + field_weight * F.cross_entropy(per_value[:, a:b], y[:, i], ignore_index=-1)
    if heads is not None:  # on the unit image embedding the prompts are matched against
        for i in present:
            total = total + F.cross_entropy(heads[FIELDS[i]](image), y[:, i], ignore_index=-1)
    return total


def _embed_texts(model: Any, tokenizer: Any, texts: list[str]) -> Any:
    import torch

    enc = tokenize(tokenizer, texts)
    with torch.inference_mode():
        feats = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    feats = getattr(feats, "pooler_output", feats)
    return torch.nn.functional.normalize(feats.float(), dim=-1)


def _embed_images(model: Any, images: np.ndarray, batch: int = 256) -> Any:
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            feats = model.get_image_features(pixel_values=pixels(images[i : i + batch]))
            out.append(torch.nn.functional.normalize(getattr(feats, "pooler_output", feats).float(), dim=-1))
    return torch.cat(out)


def zero_shot_predict(model: Any, tokenizer: Any, images: np.ndarray) -> np.ndarray:
    """(n, len(FIELDS)) index of the best-scoring value prompt per field."""
    model.eval()
    img = _embed_images(model, images)
    cols = []
    for f in FIELDS:
        txt = _embed_texts(model, tokenizer, [value_prompt(f, v) for v in VOCAB[f]])
        cols.append((img @ txt.T).argmax(-1).numpy())
    return np.stack(cols, axis=1)


def zero_shot(
    model: Any, tokenizer: Any, images: np.ndarray, labels: np.ndarray
) -> dict[str, dict[str, float]]:
    """Per-field and per-aspect zero-shot accuracy (the judge's definition of right)."""
    from .judge import accuracy

    return accuracy(zero_shot_predict(model, tokenizer, images), labels)


def save(model: Any, tokenizer: Any, folder: Path) -> Path:
    """The hf-clip folder: config + float16 safetensors + tokenizer + 64 px image processor."""
    import copy

    import torch
    from transformers import CLIPImageProcessor, CLIPProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    half = copy.deepcopy(model).to(torch.float16)
    half.config.dtype = "float32"  # loaders cast the stored float16 up unless asked otherwise
    half.save_pretrained(folder, safe_serialization=True)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
