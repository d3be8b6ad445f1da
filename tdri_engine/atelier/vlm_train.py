"""The Atelier's VLM: a small Qwen2-VL that answers the Reflector's seven aspect instructions.

Format: a transformers ``Qwen2VLForConditionalGeneration`` + ``Qwen2VLProcessor`` folder, the
layout of Qwen/Qwen2-VL-2B-Instruct, so ``reflector.load_captioner`` (kind
``image-text-to-text``: AutoModelForImageTextToText + AutoProcessor, safetensors only, no
remote code) loads it unchanged and :class:`reflector.Captioner` asks it exactly as it asks a
real VLM: one ChatML turn per aspect with the instruction of ``resources/templates/
vlm_aspects.json``, greedy decoding, the answer cut at ``<|im_end|>``.

Sizes (chosen for CPU training in minutes; weights float16, 2.2 MB, 1.1 M parameters):

* vision tower: 8 px patches on the world's 64 px pictures (an 8 x 8 grid; the image
  processor is pinned to 64 x 64, so a larger generated image is resized to it), 4 blocks of
  width 96, merged 2 x 2 into 16 image tokens of width 128;
* text model: 2 Qwen2 layers of width 128 (4 heads, M-RoPE sections 4/6/6 = half the head
  size), an output layer of its own (untied: the recipe's safetensors checkpoints refuse
  tensors that share memory);
* tokenizer: a 1000-token byte-level BPE trained offline (``tokenizers_offline``) on the
  built-in corpus plus this world's captions and the Reflector's instructions, so every caption
  word is one or two tokens. The chat template is ChatML without a default system turn (the
  model never saw one; it would only lengthen every prompt).

Answers: the canonical aspect caption (``captions.aspect_caption(record, aspect, None)``):
"a dress", "red", "short, loose, long sleeves", "flat lay", "beach", "front view",
"stripes, a belt". One wording per value keeps greedy decoding and the check below simple; the
varied wordings are for the CLIP and the BLIP, which must read them.

Training (``VlmTrainer``, one recipe step = one batch, the recipe's seeded schedule): the paper
is silent on the captioner's training, and a from-scratch VLM on two shared CPU cores cannot
afford to learn seeing *through* language alone. So

1. the first ``VISION_SHARE`` of the steps train the vision tower alone, with one linear head
   per world field on its 16 merged tokens (``AuxHeads``; the judge's task): cheap steps, no
   text;
2. the rest train the whole model on the captioning loss (cross-entropy of the answer tokens
   and the closing ``<|im_end|>``; the prompt is not scored), each picture with one aspect
   drawn from ``default_rng([seed, step, 2])``, plus the same field heads at weight
   ``AUX_WEIGHT`` so the tower keeps its reading.

The heads are training scaffolding: they are not exported, and the folder is a plain Qwen2-VL.

Measure (``evaluate``): the caption of each aspect is read with ``captions.mentions`` (whole
words; "short" in "short sleeves" is not a length, "shirt" is not in "t-shirt"). A field is
right when the caption names its true value and no other value of it; an aspect when all its
fields are (a field the garment lacks, such as a skirt's sleeves, is not asked).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import ASPECTS
from .captions import PHRASES, aspect_caption, mentions
from .world import ASPECT_FIELDS, FIELDS, VOCAB, Record

VLM_KIND = "image-text-to-text"  # models.py's kind: reflector.load_captioner
BUNDLED = Path(__file__).resolve().parent / "weights" / "vlm"
IMAGE_SIZE = 64
TOKENIZER_VOCAB = 1000
VISION_CFG: dict[str, int] = {
    "depth": 4,
    "embed_dim": 96,
    "hidden_size": 128,  # the merger's output: the text model's width
    "num_heads": 3,
    "mlp_ratio": 2,
    "patch_size": 8,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}
TEXT_CFG: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
}
IMAGE_TOKENS = (IMAGE_SIZE // VISION_CFG["patch_size"] // VISION_CFG["spatial_merge_size"]) ** 2  # 16
VISION_SHARE = 0.25
AUX_WEIGHT = 0.5
MAX_NEW_TOKENS = 16  # the longest canonical answer is 9 tokens
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# ChatML (as Qwen2-VL) without the default system turn
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# --------------------------------------------------------------------------------------------
# what the model is asked and what it should answer
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def instructions() -> dict[str, str]:
    """The Reflector's instruction per aspect (the same file the Reflector reads)."""
    from ..templates import default_templates

    return dict(default_templates().vlm["instructions"])


def answer(record: Record, aspect: str) -> str:
    """The caption the VLM is taught for ``aspect`` (the canonical aspect caption)."""
    return aspect_caption(record, aspect, None)


def _corpus() -> list[str]:
    """Text the tokenizer is trained on besides the built-in corpus: every canonical answer and
    varied wording of every value, and the instructions (each repeated so they get whole tokens)."""
    texts = list(instructions().values()) * 20
    for field, values in PHRASES.items():  # the trained world only: not the NOVEL value
        for value, phrases in values.items():
            if value in VOCAB[field]:
                texts.extend(list(phrases) * 20)
    texts.extend(["<|im_start|>user\n", "<|im_start|>assistant\n"] * 20)
    return texts


@functools.lru_cache(maxsize=1)
def build_tokenizer() -> Any:
    """The 1000-token byte-level BPE (deterministic: the same corpus gives the same merges)."""
    from ..tokenizers_offline import builtin_corpus, make_qwen2_tokenizer

    tok = make_qwen2_tokenizer(TOKENIZER_VOCAB, builtin_corpus(_corpus()))
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_processor(tokenizer: Any | None = None) -> Any:
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    tok = copy.deepcopy(tokenizer or build_tokenizer())
    image_processor = Qwen2VLImageProcessor(
        min_pixels=IMAGE_SIZE * IMAGE_SIZE,
        max_pixels=IMAGE_SIZE * IMAGE_SIZE,
        patch_size=VISION_CFG["patch_size"],
        merge_size=VISION_CFG["spatial_merge_size"],
        temporal_patch_size=VISION_CFG["temporal_patch_size"],
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    return Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def build_vlm(tokenizer: Any | None = None) -> Any:
    """A fresh Qwen2VLForConditionalGeneration (initialised from torch's global seed)."""
    from transformers import GenerationConfig, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    tok = tokenizer or build_tokenizer()
    im_end, eot = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tok),
            **TEXT_CFG,
            "bos_token_id": eot,
            "eos_token_id": im_end,
            "pad_token_id": eot,
        },
        vision_config=dict(VISION_CFG),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=False,  # the recipe checkpoints through safetensors, which refuses shared tensors
    )
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        do_sample=False, max_new_tokens=MAX_NEW_TOKENS, eos_token_id=[im_end, eot], pad_token_id=eot
    )
    return model


def build_model() -> Any:
    """The trainable module: the VLM and its (not exported) field heads."""
    import torch
    from torch import nn

    class AuxHeads(nn.Module):
        """One linear head per world field on the 16 merged image tokens (training only)."""

        def __init__(self, width: int) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(IMAGE_TOKENS * width)
            self.shared = nn.Sequential(nn.Linear(IMAGE_TOKENS * width, 256), nn.GELU())
            self.heads = nn.ModuleDict({f: nn.Linear(256, len(VOCAB[f])) for f in FIELDS})

        def forward(self, merged: torch.Tensor) -> dict[str, torch.Tensor]:
            h = self.shared(self.norm(merged.reshape(-1, IMAGE_TOKENS * merged.shape[-1])))
            return {f: head(h) for f, head in self.heads.items()}

    class VlmTrainer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vlm = build_vlm()
            self.aux = AuxHeads(VISION_CFG["hidden_size"])

    return VlmTrainer()


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def aux_loss(outputs: dict[str, Any], labels: Any) -> Any:
    """Sum over fields of cross-entropy; ``-1`` labels (no such field) are ignored."""
    import torch.nn.functional as F

    total: Any = 0.0
    for i, f in enumerate(FIELDS):
        y = labels[:, i]
        if bool((y >= 0).any()):
            total = total + F.cross_entropy(outputs[f], y, ignore_index=-1)
    return total


def _pictures(images: np.ndarray) -> list[Any]:
    from PIL import Image

    return [Image.fromarray(np.ascontiguousarray(im)) for im in images]


def vision_loss(trainer: Any, processor: Any, images: np.ndarray, labels: np.ndarray) -> Any:
    """Phase 1: the vision tower and the field heads alone."""
    import torch

    px = processor.image_processor(images=_pictures(images), return_tensors="pt")
    merged = trainer.vlm.model.visual(px["pixel_values"], grid_thw=px["image_grid_thw"]).pooler_output
    return aux_loss(trainer.aux(merged), torch.from_numpy(labels))


def prompt_text(processor: Any, aspect: str) -> str:
    """The prompt the Reflector's captioner sends for ``aspect``: the instruction in one user
    turn with the picture, through the processor's chat template, with the generation prompt
    (as ``reflector.Captioner._text`` builds it)."""
    content = [{"type": "image"}, {"type": "text", "text": instructions()[aspect]}]
    messages = [{"role": "user", "content": content}]
    return str(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def caption_loss(
    trainer: Any,
    processor: Any,
    images: np.ndarray,
    labels: np.ndarray,
    records: Sequence[Record],
    aspects: Sequence[str],
    aux_weight: float = AUX_WEIGHT,
) -> Any:
    """Phase 2: cross-entropy of each picture's answer (and its ``<|im_end|>``) to its aspect's
    instruction, plus ``aux_weight`` x the field heads' loss."""
    import torch

    tok = processor.tokenizer
    answers = [answer(r, a) + "<|im_end|>" for r, a in zip(records, aspects, strict=True)]
    prompts = {a: prompt_text(processor, a) for a in set(aspects)}
    texts = [prompts[a] + ans for a, ans in zip(aspects, answers, strict=True)]
    tok.padding_side = "right"
    inputs = processor(text=texts, images=_pictures(images), return_tensors="pt", padding=True)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    targets = torch.full_like(ids, -100)
    lengths = mask.sum(1).tolist()
    for i, ans in enumerate(answers):
        n = len(tok(ans, add_special_tokens=False)["input_ids"])
        end = int(lengths[i])
        targets[i, end - n : end] = ids[i, end - n : end]
    captured: dict[str, Any] = {}

    def keep(_module: Any, _args: Any, output: Any) -> None:
        captured["merged"] = output.pooler_output

    hook = trainer.vlm.model.visual.register_forward_hook(keep)
    try:
        out = trainer.vlm(**inputs, labels=targets)
    finally:
        hook.remove()
    return out.loss + aux_weight * aux_loss(trainer.aux(captured["merged"]), torch.from_numpy(labels))


# --------------------------------------------------------------------------------------------
# captions and their check
# --------------------------------------------------------------------------------------------


def generate(vlm: Any, processor: Any, images: Sequence[Any], aspect: str, batch: int = 64) -> list[str]:
    """Greedy answers of ``vlm`` to ``aspect``'s instruction about each picture, batched (the
    Captioner's prompt and decoding, many pictures per call)."""
    import torch

    tok = processor.tokenizer
    tok.padding_side = "left"
    im_end, eot = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    out: list[str] = []
    for i in range(0, len(images), batch):
        chunk = list(images[i : i + batch])
        inputs = processor(
            text=[prompt_text(processor, aspect)] * len(chunk),
            images=chunk,
            return_tensors="pt",
            padding=True,
        )
        inputs["pixel_values"] = inputs["pixel_values"].to(next(vlm.parameters()).dtype)
        with torch.inference_mode():
            ids = vlm.generate(
                **inputs,
                do_sample=False,
                max_new_tokens=MAX_NEW_TOKENS,
                eos_token_id=[im_end, eot],
                pad_token_id=eot,
            )
        new = ids[:, inputs["input_ids"].shape[1] :]
        out.extend(t.strip() for t in tok.batch_decode(new, skip_special_tokens=True))
    return out


def caption_right(caption: str, record: Record, aspect: str) -> dict[str, bool]:
    """Per field of ``aspect`` that the record has (a skirt has no sleeves): does ``caption``
    name its true value and no other value of it (``captions.mentions``, the world's reader)?"""
    named = mentions(caption)
    out = {}
    for f in ASPECT_FIELDS[aspect]:
        value = getattr(record, f)
        if value is not None:
            out[f] = set(named[f]) == {value}
    return out


def score_captions(captions: dict[str, list[str]], records: Sequence[Record]) -> dict[str, Any]:
    """Per-aspect and per-field share of captions that name exactly the true value."""
    aspects: dict[str, float] = {}
    field_hits: dict[str, list[bool]] = {f: [] for f in FIELDS}
    for a, texts in captions.items():
        rights = [caption_right(t, r, a) for t, r in zip(texts, records, strict=True)]
        aspects[a] = float(np.mean([all(x.values()) for x in rights])) if rights else float("nan")
        for x in rights:
            for f, ok in x.items():
                field_hits[f].append(ok)
    fields = {f: float(np.mean(v)) for f, v in field_hits.items() if v}
    return {"aspects": aspects, "fields": fields}


def evaluate(vlm: Any, processor: Any, images: np.ndarray, records: Sequence[Record]) -> dict[str, Any]:
    """Generate every aspect's caption for each picture and score them; a few examples kept."""
    pictures = _pictures(images)
    captions = {a: generate(vlm, processor, pictures, a) for a in ASPECTS}
    figures = score_captions(captions, records)
    figures["examples"] = [
        {"record": records[i].as_dict(), "captions": {a: captions[a][i] for a in ASPECTS}}
        for i in range(min(3, len(records)))
    ]
    figures["metric"] = "share of held-out pictures whose aspect caption names exactly the true value(s)"
    return figures


# --------------------------------------------------------------------------------------------
# saving and loading
# --------------------------------------------------------------------------------------------


def save(vlm: Any, processor: Any, folder: Path, extra: dict[str, Any] | None = None) -> Path:
    """The Qwen2-VL folder: float16 ``model.safetensors``, config, generation config, processor
    and tokenizer files, and ``atelier.json`` (what it was trained on)."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    half = copy.deepcopy(vlm).to(torch.float16)
    half.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    info = {"atelier": True, "role": "vlm", "kind": VLM_KIND, "answers": "canonical aspect captions"}
    (folder / "atelier.json").write_text(json.dumps(info | (extra or {}), indent=2), encoding="utf-8")
    return folder


def load_bundled(device: str = "cpu") -> Any:
    """The committed VLM through the engine's own loader (a ``reflector.Captioner``)."""
    import torch

    from ..models import RoleSpec
    from ..reflector import load_captioner

    spec = RoleSpec("vlm", VLM_KIND, str(BUNDLED))
    return load_captioner(BUNDLED, spec, torch.device(device), torch.float32)


# --------------------------------------------------------------------------------------------
# the recipe's role
# --------------------------------------------------------------------------------------------

DEFAULT_STEPS = 700
LR = 2e-3
BATCH = 48
N_EVAL = 350  # held-out pictures captioned on all seven aspects by ``evaluate``


class VlmRole:
    """``recipe.Role`` of the VLM: trains on the ``train`` split (held-out combinations never
    seen), measured on ``heldout``. ``vision_steps`` (default ``VISION_SHARE`` of ``steps``)
    are phase 1; step ``k``'s pictures come from ``default_rng([seed, k])``."""

    name = "vlm"

    def __init__(
        self,
        train: Any,
        heldout: Any,
        seed: int = 0,
        batch: int = BATCH,
        steps: int | None = None,
        vision_steps: int | None = None,
        n_eval: int = N_EVAL,
    ):
        self.train, self.heldout, self.seed, self.batch = train, heldout, seed, batch
        total = DEFAULT_STEPS if steps is None else steps
        self.vision_steps = int(VISION_SHARE * total) if vision_steps is None else vision_steps
        self.n_eval = n_eval
        self.model: Any = None
        self.processor: Any = None

    def build(self) -> None:
        self.model = build_model()
        self.processor = build_processor()

    def data_hash(self) -> str:
        return str(self.train.digest())

    def step_loss(self, step: int) -> Any:
        rng = np.random.default_rng([self.seed, step])
        n = len(self.train)
        if step < self.vision_steps:  # vision-only steps are cheap: twice the pictures
            idx = rng.choice(n, size=min(2 * self.batch, n), replace=False)
            return vision_loss(self.model, self.processor, self.train.images[idx], self.train.labels[idx])
        idx = rng.choice(n, size=min(self.batch, n), replace=False)
        aspects = [
            ASPECTS[int(k)]
            for k in np.random.default_rng([self.seed, step, 2]).integers(len(ASPECTS), size=len(idx))
        ]
        records = [self.train.samples[int(i)].record for i in idx]
        return caption_loss(
            self.model, self.processor, self.train.images[idx], self.train.labels[idx], records, aspects
        )

    def evaluate(self) -> dict[str, Any]:
        n = min(self.n_eval, len(self.heldout))
        figures = evaluate(self.model.vlm, self.processor, self.heldout.images[:n], self.heldout.records[:n])
        return figures | {"n_heldout": n, "vision_steps": self.vision_steps}

    def export(self, folder: Path) -> None:
        save(self.model.vlm, self.processor, folder, {"data_hash": self.data_hash()})
