"""Tiny language-side demo models: VLM captioner, CLIP, BLIP and a chat LM, built offline.

They are random (seeded) networks with the real architectures and real tokenizers, saved the
way real weights are saved, so the whole refinement loop runs on a fresh machine through the
same loading code as Qwen2-VL, CLIP, BLIP and Qwen2.5. Their captions and prompts are noise;
the studio says so when it runs on the demo profile.

Layout written by :func:`build_language_models` (one folder per role)::

    dest/vlm/    Qwen2VLForConditionalGeneration + Qwen2VLProcessor (byte-level BPE, ChatML)
    dest/clip/   open_clip hub layout: open_clip_config.json + open_clip_model.safetensors
    dest/blip/   BlipForImageTextRetrieval + BlipProcessor (WordPiece BERT tokenizer)
    dest/llm/    Qwen2ForCausalLM + Qwen2Tokenizer (byte-level BPE, ChatML)

Each folder is written to a temporary sibling and renamed into place, so an interrupted build
never leaves a half-written model where the loader looks. Each also holds ``demo.json``
(``{"demo": true, ...}``) so the engine can tell a demo model from a real one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

# roles this module builds; their loader kinds are models.DEMO_KINDS
LANGUAGE_ROLES: tuple[str, ...] = ("vlm", "clip", "blip", "llm")

DEMO_SEED = 1234
_BPE_VOCAB = 2000  # byte-level BPE for the chat / VLM models
_WORDPIECE_VOCAB = 1500  # BLIP's BERT vocabulary
_IMAGE_SIZE = 64  # CLIP and BLIP input size
# A wide initialisation makes greedy decoding of the random chat/VLM models wander over the
# vocabulary (varied words) instead of repeating one newline, so captions are non-empty text and
# the scoring path downstream does real work.
_LM_INIT_RANGE = 0.5

# The size of every tiny transformer here (and of the benchmark's "tiny" architectures, which
# are these models): two layers of width 32, two heads.
TINY_TRANSFORMER: dict[str, int] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}
# Qwen2-VL's vision tower at the same size (patches of 14 px, merged 2 x 2)
TINY_QWEN2_VL_VISION: dict[str, int] = {
    "depth": 2,
    "embed_dim": 32,
    "hidden_size": 32,
    "num_heads": 2,
    "mlp_ratio": 2,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}


def tiny_qwen2_text(vocab_size: int, *, mrope: bool = False) -> dict[str, Any]:
    """The tiny Qwen2 decoder's config (the LLM's, and the VLM's text model with ``mrope``).

    Head size 16 (hidden 32 / 2 heads); Qwen2-VL's M-RoPE sections must add up to head_dim / 2.
    """
    cfg: dict[str, Any] = {
        "vocab_size": vocab_size,
        **TINY_TRANSFORMER,
        "num_key_value_heads": 1,
        "max_position_embeddings": 2048,
    }
    if mrope:
        cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
    return cfg


def tiny_clip_config() -> dict[str, Any]:
    """The tiny transformers CLIPConfig arguments (CLIP's BPE vocabulary, 64 px images)."""
    return {
        "text_config": {
            "vocab_size": 49408,
            **TINY_TRANSFORMER,
            "max_position_embeddings": 77,
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 49407,
        },
        "vision_config": {**TINY_TRANSFORMER, "image_size": _IMAGE_SIZE, "patch_size": 16},
        "projection_dim": 32,
    }


CLIP_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": _IMAGE_SIZE, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch for one model's initialisation without disturbing the caller's RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it replaces ``final`` in one rename."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}-{time.monotonic_ns()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _mark_demo(folder: Path, role: str) -> None:
    from ..models import DEMO_KINDS

    info = {"demo": True, "role": role, "kind": DEMO_KINDS.get(role, ""), "seed": DEMO_SEED}
    (folder / "demo.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# one builder per role; each writes a complete folder into ``out``
# --------------------------------------------------------------------------------------------


def _qwen_tokenizer() -> Any:
    from ..tokenizers_offline import make_qwen2_tokenizer

    return make_qwen2_tokenizer(_BPE_VOCAB)


def build_llm(out: Path, tokenizer: Any | None = None, seed: int = DEMO_SEED) -> Path:
    """A 2-layer Qwen2ForCausalLM (hidden 32) with the ChatML byte-level BPE tokenizer."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tok = tokenizer or _qwen_tokenizer()
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        **tiny_qwen2_text(len(tok)),
        tie_word_embeddings=True,
        initializer_range=_LM_INIT_RANGE,
        bos_token_id=eot,
        eos_token_id=im_end,
        pad_token_id=eot,
    )
    with _seeded(seed):
        model = Qwen2ForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        do_sample=False, eos_token_id=[im_end, eot], pad_token_id=eot, bos_token_id=eot
    )
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def build_vlm(out: Path, tokenizer: Any | None = None, seed: int = DEMO_SEED) -> Path:
    """A 2-layer Qwen2-VL (vision depth 2, hidden 32) with its processor and ChatML template."""
    from transformers import (
        GenerationConfig,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    from ..tokenizers_offline import QWEN_CHAT_TEMPLATE

    tok = tokenizer or _qwen_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in tok.all_special_tokens}
    ids.update({t: tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>")})
    ids.update({t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>")})
    im_end, eot = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2VLConfig(
        text_config={
            **tiny_qwen2_text(len(tok), mrope=True),
            "initializer_range": _LM_INIT_RANGE,
            "bos_token_id": eot,
            "eos_token_id": im_end,
            "pad_token_id": eot,
        },
        vision_config=dict(TINY_QWEN2_VL_VISION),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    with _seeded(seed):
        model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        do_sample=False, eos_token_id=[im_end, eot], pad_token_id=eot, bos_token_id=eot
    )
    # at most 112 x 112 pixels: 8 x 8 patches of 14 px, merged 2 x 2 into 16 image tokens (cheap)
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def build_open_clip(out: Path, seed: int = DEMO_SEED) -> Path:
    """A tiny open_clip CLIP in the Hugging Face hub layout (config + safetensors).

    The tokenizer is open_clip's bundled BPE, so nothing besides these two files is needed.
    """
    import open_clip
    from safetensors.torch import save_file

    with _seeded(seed):
        model = open_clip.CLIP(
            embed_dim=CLIP_MODEL_CFG["embed_dim"],
            vision_cfg=CLIP_MODEL_CFG["vision_cfg"],
            text_cfg=CLIP_MODEL_CFG["text_cfg"],
        ).eval()
    hub_config = {
        "model_cfg": CLIP_MODEL_CFG,
        "preprocess_cfg": {"mean": list(_CLIP_MEAN), "std": list(_CLIP_STD)},
    }
    (out / "open_clip_config.json").write_text(json.dumps(hub_config, indent=2), encoding="utf-8")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    return out


def build_hf_clip(out: Path, seed: int = DEMO_SEED) -> Path:
    """A tiny transformers CLIPModel + CLIPProcessor folder (the ``hf-clip`` layout, as
    openai/clip-vit-base-patch32), with CLIP's real tokenizer from open_clip's vocabulary."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from ..tokenizers_offline import save_clip_tokenizer

    config = CLIPConfig(**tiny_clip_config())
    with _seeded(seed):
        model = CLIPModel(config).eval()
    with tempfile.TemporaryDirectory() as tdir:
        tokenizer = CLIPTokenizer.from_pretrained(save_clip_tokenizer(Path(tdir)))
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": _IMAGE_SIZE},
        crop_size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE},
        image_mean=list(_CLIP_MEAN),
        image_std=list(_CLIP_STD),
    )
    model.save_pretrained(out, safe_serialization=True)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out


def build_blip(out: Path, seed: int = DEMO_SEED) -> Path:
    """A tiny BlipForImageTextRetrieval with a WordPiece BERT tokenizer trained offline."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForImageTextRetrieval,
        BlipImageProcessor,
        BlipProcessor,
    )

    from ..tokenizers_offline import save_bert_tokenizer

    with tempfile.TemporaryDirectory() as tdir:
        tokenizer = BertTokenizer.from_pretrained(save_bert_tokenizer(Path(tdir), _WORDPIECE_VOCAB))
    config = BlipConfig(
        text_config={
            "vocab_size": len(tokenizer),
            **TINY_TRANSFORMER,
            "max_position_embeddings": 128,
            "encoder_hidden_size": 32,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.cls_token_id,
            "sep_token_id": tokenizer.sep_token_id,
        },
        vision_config={
            **TINY_TRANSFORMER,
            "image_size": _IMAGE_SIZE,
            "patch_size": 16,
            # BlipVisionConfig's default (1e-10) gives features of ~1e-6, which vanish in fp16
            "initializer_range": 0.02,
        },
        projection_dim=32,
        image_text_hidden_size=32,
    )
    with _seeded(seed):
        model = BlipForImageTextRetrieval(config).eval()
    image_processor = BlipImageProcessor(
        size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE},
        image_mean=list(_CLIP_MEAN),
        image_std=list(_CLIP_STD),
    )
    model.save_pretrained(out, safe_serialization=True)
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out


def build_language_models(
    dest: Path,
    roles: Iterable[str] | None = None,
    *,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Path]:
    """Build the tiny demo models of the language roles into ``dest/<role>/``.

    ``roles`` limits the build (default: vlm, clip, blip, llm). ``on_progress(role, i, n)`` is
    called before each role. Returns role -> folder. Deterministic: the same versions of
    Python, torch and transformers give the same weights and vocabularies.
    """
    dest = Path(dest)
    wanted = list(LANGUAGE_ROLES) if roles is None else list(roles)
    unknown = [r for r in wanted if r not in LANGUAGE_ROLES]
    if unknown:
        from ..errors import BadInput

        raise BadInput(
            f"Unknown language demo roles: {', '.join(unknown)}.",
            f"Use some of: {', '.join(LANGUAGE_ROLES)}.",
        )
    from ..metrics import quiet_progress

    # the VLM and the LM share one tokenizer (trained once, 0.1 s)
    qwen_tok = _qwen_tokenizer() if {"vlm", "llm"} & set(wanted) else None
    builders: dict[str, Callable[[Path], Path]] = {
        "vlm": lambda out: build_vlm(out, qwen_tok),
        "clip": build_open_clip,
        "blip": build_blip,
        "llm": lambda out: build_llm(out, qwen_tok),
    }
    done: dict[str, Path] = {}
    for i, role in enumerate(wanted):
        if on_progress is not None:
            on_progress(role, i, len(wanted))
        final = dest / role
        with _atomic_folder(final) as tmp, quiet_progress():
            builders[role](tmp)
            _mark_demo(tmp, role)
        done[role] = final
    return done
