"""Scores of the paper (section 4.3, table 1): CLIP and BLIP, and the loaders of their models.

Scales, stated once and kept everywhere:

* **CLIP score** = cosine of the L2-normalised CLIP embeddings, on the paper's 0-1 scale,
  clipped below at 0 (a negative cosine means "unrelated", as torchmetrics' CLIPScore also
  clips; torchmetrics reports 100 x this value). T2I: image vs intent prompt; I2I: image vs
  target image; the Reflector also uses text vs text.
* **BLIP score** = BLIP's image-text matching probability, ``softmax(itm_logits)[1]``, 0-1.

CLIP reads at most ``context_length`` tokens (77 for every released CLIP, start and end
tokens included). Longer texts are cut to fit and the scorer says so: every call records its
warnings in ``last_warnings`` and ``*_with_warnings`` variants return them; nothing is cut
silently. The Reflector forwards them to the round's warnings.

Two CLIP families load (``spec.kind``):

* ``"open_clip"``: a folder with an open_clip model config and ``.safetensors`` weights, either
  the Hugging Face hub layout (``open_clip_config.json`` with ``model_cfg``, as in
  laion/CLIP-ViT-B-32-laion2B-s34B-b79K) or a bare model config ``<name>.json`` (the format of
  open_clip's own ``model_configs/``). The tokenizer is open_clip's bundled one unless the
  config names a Hugging Face tokenizer, which must then sit in the same folder.
* ``"hf-clip"``: a transformers ``CLIPModel`` + ``CLIPProcessor`` folder
  (e.g. openai/clip-vit-base-patch32).

Weights are read only from ``.safetensors``; nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import BadInput, ModelBroken, ModelMissing

if TYPE_CHECKING:  # heavy imports stay lazy: ``import tdri_engine.metrics`` must be cheap
    import torch
    from PIL import Image

CLIP_KINDS = ("open_clip", "hf-clip")


class SpecLike(Protocol):
    """What the loaders read from a ``models.RoleSpec``."""

    role: str
    kind: str


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


def _role(spec: Any, default: str) -> str:
    return str(getattr(spec, "role", None) or default)


def _require_folder(path: Path, spec: Any, default_role: str, hint: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise ModelMissing(_role(spec, default_role), [str(path)], hint, detail="The folder does not exist.")
    return path


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """No transformers progress bars while tiny or cached weights load (they flood the CLI)."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def _require_safetensors(path: Path, role: str) -> None:
    """Weights are read only from .safetensors: a pickled checkpoint can run code when loaded."""
    if not any(path.glob("*.safetensors")):
        found = sorted(p.name for p in path.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        raise ModelBroken(
            f"The {role} model in {path} has no .safetensors weights"
            + (f" (only {', '.join(found[:3])})." if found else "."),
            "Use a copy of the model that has .safetensors files (most Hugging Face repositories do), "
            "or convert it on a trusted machine with from_pretrained(...).save_pretrained(..., "
            "safe_serialization=True).",
        )


def _broken(role: str, path: Path, exc: BaseException, what_to_do: str) -> ModelBroken:
    return ModelBroken(
        f"The {role} model in {path} could not be loaded: {type(exc).__name__}: {exc}",
        what_to_do,
    )


_LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError)


def load_transformers_folder(
    path: Path,
    spec: Any,
    default_role: str,
    fix: str,
    model_cls: Any,
    processor_cls: Any,
    device: Any,
    dtype: Any,
) -> tuple[Any, Any]:
    """The one loading path of the transformers roles (hf-clip, blip, vlm, llm).

    Checks the folder against the trust policy (``ModelRefused`` for custom code or only pickled
    weights) and that its weights are safetensors, loads the model and its processor (or
    tokenizer) offline with ``use_safetensors=True`` and ``trust_remote_code=False``, and turns
    any failure into ``ModelBroken`` naming the role, the folder and ``fix``. Returns
    ``(model on device in eval mode, processor)``.
    """
    from .trust import check_spec

    role = _role(spec, default_role)
    path = _require_folder(path, spec, default_role, fix)
    check_spec(path, spec, default_role)  # custom code or only pickles: refused before transformers reads it
    _require_safetensors(path, role)
    try:
        # trust_remote_code=False: transformers never imports the folder's code and never asks on stdin
        processor = processor_cls.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        with quiet_progress():
            model = model_cls.from_pretrained(
                path, dtype=dtype, local_files_only=True, use_safetensors=True, trust_remote_code=False
            )
    except _LOAD_ERRORS as exc:
        raise _broken(role, path, exc, fix) from exc
    return model.to(device).eval(), processor


def _as_rgb(image: Any, what: str = "image") -> Image.Image:
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise BadInput(f"The {what} is not a picture ({type(image).__name__}).", "Pass a PIL image.")
    return image if image.mode == "RGB" else image.convert("RGB")


def _clip01(x: float) -> float:
    """Cosine to the 0-1 CLIP-score scale (see the module docstring)."""
    if x != x:  # NaN: the model overflowed in this dtype; a score of 0 would hide it
        raise ModelBroken(
            "A scoring model returned NaN (its numbers overflowed in this precision).",
            "Set dtype to bf16 or fp32 in Settings.",
        )
    return float(min(1.0, max(0.0, x)))


def printable(text: str) -> str:
    """Text without control characters (a random or broken model emits some); spaces collapsed."""
    import unicodedata

    kept = "".join(ch if unicodedata.category(ch)[0] != "C" or ch in "\n\t" else " " for ch in text)
    return " ".join(kept.split())


def _unit(feats: torch.Tensor, what: str) -> torch.Tensor:
    """L2-normalised rows; a vanished (all-zero) or NaN feature is refused, not scored as 0."""
    import torch

    norms = feats.norm(dim=-1)
    if not bool(torch.isfinite(norms).all()) or bool((norms < 1e-12).any()):
        raise ModelBroken(
            f"The {what} model's features vanished or overflowed in this precision ({feats.dtype}).",
            "Set dtype to bf16 or fp32 in Settings.",
        )
    return feats / norms.unsqueeze(-1)


def _short(text: str, n: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def truncation_warning(model: str, text: str, n_tokens: int, limit: int) -> str:
    """The one wording of a "text cut to the model's context" warning."""
    return (
        f"{model} reads at most {limit} tokens; the text '{_short(text)}' has {n_tokens}, "
        f"so only its first {limit} count in the score."
    )


# --------------------------------------------------------------------------------------------
# CLIP
# --------------------------------------------------------------------------------------------


class _ClipBackend(Protocol):
    context_length: int  # tokens a text may have, start and end tokens included
    device: torch.device

    def image_features(self, images: list[Image.Image]) -> torch.Tensor: ...
    def text_features(self, texts: list[str]) -> torch.Tensor: ...
    def count_tokens(self, text: str) -> int: ...


class _OpenClipBackend:
    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, device: torch.device, dtype: torch.dtype):
        self.model, self.preprocess, self.tokenizer = model, preprocess, tokenizer
        self.device, self.dtype = device, dtype
        self.context_length = int(getattr(tokenizer, "context_length", None) or model.context_length)

    def image_features(self, images: list[Image.Image]) -> torch.Tensor:
        import torch

        pixels = torch.stack([self.preprocess(im) for im in images]).to(self.device, self.dtype)
        return self.model.encode_image(pixels)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        # open_clip's tokenizer cuts to context_length and keeps the end token last
        tokens = self.tokenizer(texts, context_length=self.context_length).to(self.device)
        return self.model.encode_text(tokens)

    def count_tokens(self, text: str) -> int:
        encode = getattr(self.tokenizer, "encode", None)
        if encode is not None:
            return len(encode(text)) + 2  # + start and end tokens
        ids = self.tokenizer([text], context_length=10_000)[0]  # HF tokenizers: pad to 10k
        return int((ids != 0).sum())


class _HfClipBackend:
    def __init__(self, model: Any, processor: Any, device: torch.device, dtype: torch.dtype):
        self.model, self.processor, self.device, self.dtype = model, processor, device, dtype
        self.context_length = int(model.config.text_config.max_position_embeddings)

    @staticmethod
    def _pooled(out: Any) -> torch.Tensor:
        return out if not hasattr(out, "pooler_output") else out.pooler_output

    def image_features(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        return self._pooled(self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)))

    def text_features(self, texts: list[str]) -> torch.Tensor:
        enc = self.processor.tokenizer(
            texts, padding=True, truncation=True, max_length=self.context_length, return_tensors="pt"
        ).to(self.device)
        return self._pooled(
            self.model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        )

    def count_tokens(self, text: str) -> int:
        return len(self.processor.tokenizer(text, verbose=False)["input_ids"])


class ClipScorer:
    """CLIP similarities on the 0-1 scale: image-text, text-text, image-image.

    Every call leaves the warnings it produced (texts cut to CLIP's context) in
    ``last_warnings``; the ``*_with_warnings`` methods return them as well.
    """

    def __init__(self, backend: _ClipBackend, *, name: str = "CLIP"):
        self._backend = backend
        self.name = name
        self.last_warnings: tuple[str, ...] = ()

    @property
    def context_length(self) -> int:
        return self._backend.context_length

    # embeddings ---------------------------------------------------------------------------
    def embed_images(self, images: Sequence[Any]) -> torch.Tensor:
        """L2-normalised image embeddings, float32, one row per image."""
        import torch

        pics = [_as_rgb(im) for im in images]
        with torch.inference_mode():
            feats = self._backend.image_features(pics).float()
        return _unit(feats, self.name)

    def embed_texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, tuple[str, ...]]:
        """L2-normalised text embeddings and the truncation warnings for these texts."""
        import torch

        texts = [self._check_text(t) for t in texts]
        warnings = self.truncation_warnings(texts)
        with torch.inference_mode():
            feats = self._backend.text_features(texts).float()
        return _unit(feats, self.name), warnings

    def truncation_warnings(self, texts: Sequence[str]) -> tuple[str, ...]:
        """One warning per text longer than CLIP's context (those are cut before scoring)."""
        limit = self.context_length
        out = []
        for text in texts:
            n = self._backend.count_tokens(text)
            if n > limit:
                out.append(truncation_warning(self.name, text, n, limit))
        return tuple(out)

    @staticmethod
    def _check_text(text: Any) -> str:
        if not isinstance(text, str):
            raise BadInput(f"Expected text, got {type(text).__name__}.", "Pass a string.")
        return text

    # scores -------------------------------------------------------------------------------
    def image_text_with_warnings(
        self, image: Any, texts: Sequence[str]
    ) -> tuple[list[float], tuple[str, ...]]:
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            self.last_warnings = ()
            return [], ()
        img = self.embed_images([image])
        txt, warnings = self.embed_texts(texts)
        self.last_warnings = warnings
        return [_clip01(v) for v in (txt @ img[0]).tolist()], warnings

    def image_text(self, image: Any, texts: Sequence[str]) -> list[float]:
        """CLIP score of the image against each text (T2I when the text is the intent prompt)."""
        return self.image_text_with_warnings(image, texts)[0]

    def text_text(self, a: str, b: str) -> float:
        """CLIP score between two texts (the Reflector: prompt component vs caption)."""
        txt, warnings = self.embed_texts([a, b])
        self.last_warnings = warnings
        return _clip01(float(txt[0] @ txt[1]))

    def image_image(self, a: Any, b: Any) -> float:
        """I2I CLIP score: the generated image against the target image."""
        emb = self.embed_images([a, b])
        self.last_warnings = ()
        return _clip01(float(emb[0] @ emb[1]))


def _open_clip_from_folder(path: Path, device: torch.device, dtype: torch.dtype) -> _OpenClipBackend:
    import open_clip

    weights = sorted(path.glob("*.safetensors"))
    if (path / "open_clip_config.json").is_file():
        # Hugging Face hub layout: open_clip finds config and weights itself (prefers safetensors)
        if not weights:
            raise FileNotFoundError(f"no .safetensors weights in {path}")
        # the checkpoint open_clip picks here was checked to be safetensors (trust.open_clip_reason)
        name = f"local-dir:{path}"
        model, _, preprocess = open_clip.create_model_and_transforms(name, device=device, weights_only=True)
        tokenizer = open_clip.get_tokenizer(name)
    else:
        configs = [p for p in sorted(path.glob("*.json")) if _is_open_clip_model_config(p)]
        if not configs:
            raise FileNotFoundError(
                f"no open_clip model config (a JSON with vision_cfg and text_cfg) in {path}"
            )
        if not weights:
            raise FileNotFoundError(f"no .safetensors weights in {path}")
        config = configs[0]
        open_clip.add_model_config(config)  # registers the config under its file stem
        model, _, preprocess = open_clip.create_model_and_transforms(
            config.stem, pretrained=str(weights[0]), device=device, weights_only=True
        )
        tokenizer = open_clip.get_tokenizer(config.stem)
    model = model.to(device=device, dtype=dtype).eval()
    return _OpenClipBackend(model, preprocess, tokenizer, device, dtype)


def _is_open_clip_model_config(p: Path) -> bool:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "vision_cfg" in data and "text_cfg" in data


def load_clip(path: Path, spec: SpecLike, device: torch.device, dtype: torch.dtype) -> ClipScorer:
    """Loader of the ``clip`` role; ``spec.kind`` is ``"open_clip"`` or ``"hf-clip"``."""
    role = _role(spec, "clip")
    kind = getattr(spec, "kind", "open_clip")
    if kind not in CLIP_KINDS:
        raise ModelBroken(
            f"Unknown CLIP kind '{kind}' for role '{role}'.", f"Use one of: {', '.join(CLIP_KINDS)}."
        )
    fix = (
        "Put an open_clip folder (open_clip_config.json or <name>.json, plus .safetensors) there"
        if kind == "open_clip"
        else "Put a transformers CLIPModel folder (config.json, model.safetensors, processor files) there"
    ) + ", or point the profile's clip role at one; `tdri models demo` builds a tiny one."
    if kind == "open_clip":
        from .trust import check_spec

        path = _require_folder(path, spec, "clip", fix)
        check_spec(path, spec, "clip")  # open_clip would pick a pickle, or build from elsewhere
        _require_safetensors(path, role)
        try:
            backend: _ClipBackend = _open_clip_from_folder(path, device, dtype)
        except _LOAD_ERRORS as exc:
            raise _broken(role, path, exc, fix) from exc
    else:
        from transformers import CLIPModel, CLIPProcessor

        model, processor = load_transformers_folder(
            path, spec, "clip", fix, CLIPModel, CLIPProcessor, device, dtype
        )
        backend = _HfClipBackend(model, processor, device, dtype)
    return ClipScorer(backend, name="CLIP")


# --------------------------------------------------------------------------------------------
# BLIP
# --------------------------------------------------------------------------------------------


class BlipScorer:
    """BLIP image-text matching (ITM) probability, and BLIP image-image cosine for I2I."""

    def __init__(self, model: Any, processor: Any, device: torch.device, dtype: torch.dtype):
        self.model, self.processor, self.device, self.dtype = model, processor, device, dtype
        self.context_length = int(model.config.text_config.max_position_embeddings)
        self.last_warnings: tuple[str, ...] = ()

    def _pixels(self, images: list[Any]) -> torch.Tensor:
        pics = [_as_rgb(im) for im in images]
        pixels = self.processor.image_processor(images=pics, return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, self.dtype)

    def match_probability(self, image: Any, text: str) -> float:
        """P(image and text match) = softmax(itm_logits)[1], BLIP's ITM head."""
        import torch

        if not isinstance(text, str):
            raise BadInput(f"Expected text, got {type(text).__name__}.", "Pass a string.")
        tok = self.processor.tokenizer
        n = len(tok(text, verbose=False)["input_ids"])
        self.last_warnings = (
            (truncation_warning("BLIP", text, n, self.context_length),) if n > self.context_length else ()
        )
        enc = tok(text, truncation=True, max_length=self.context_length, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            image_embeds = self.model.vision_model(pixel_values=self._pixels([image]))[0]
            # the ITM head, with the image mask built on the model's device (transformers builds it
            # on the CPU, which fails on a GPU)
            image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
            hidden = self.model.text_encoder(
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                encoder_hidden_states=image_embeds,
                encoder_attention_mask=image_atts,
            ).last_hidden_state
            logits = self.model.itm_head(hidden[:, 0, :]).float()
        return _clip01(float(torch.softmax(logits, dim=-1)[0, 1]))  # a probability; NaN refused

    def image_image(self, a: Any, b: Any) -> float:
        """I2I BLIP score: cosine of BLIP's projected image features (0-1, clipped at 0)."""
        import torch

        with torch.inference_mode():
            embeds = self.model.vision_model(pixel_values=self._pixels([a, b]))[0]
            feats = _unit(self.model.vision_proj(embeds[:, 0, :]).float(), "BLIP")
        self.last_warnings = ()
        return _clip01(float(feats[0] @ feats[1]))


def load_blip(path: Path, spec: SpecLike, device: torch.device, dtype: torch.dtype) -> BlipScorer:
    """Loader of the ``blip`` role: a transformers ``BlipForImageTextRetrieval`` folder
    (e.g. Salesforce/blip-itm-base-coco) with its ``BlipProcessor``."""
    fix = (
        "Put a BlipForImageTextRetrieval folder (config.json, model.safetensors, processor files) there, "
        "or point the profile's blip role at one; `tdri models demo` builds a tiny one."
    )
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    model, processor = load_transformers_folder(
        path, spec, "blip", fix, BlipForImageTextRetrieval, BlipProcessor, device, dtype
    )
    return BlipScorer(model, processor, device, dtype)
