"""The base generator of a fine-tune: a model profile's generator, or a diffusers folder.

``--base`` names a model profile (its ``generator`` role: ``demo``, ``atelier``, ``sd15`` or a
user profile) or a local folder (or a Hugging Face id found in the cache, offline). Whatever it
names must be a Stable Diffusion 1.x or SDXL *diffusers pipeline folder*: ``model_index.json``
naming ``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline`` and its component folders.
The trust policy judges the folder before any library reads it (no custom code, safetensors
only: ``tdri_engine.trust``), and the pipeline is loaded with ``use_safetensors=True`` and
``trust_remote_code=False``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import models, trust
from ..errors import BadInput, TdriError
from ..validation import terminal_safe

PIPELINE_KINDS = {"StableDiffusionPipeline": "sd15", "StableDiffusionXLPipeline": "sdxl"}
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class BaseModel:
    """A resolved base: the pipeline folder, its kind, and the profile it came from (if any)."""

    path: Path
    kind: str  # "sd15" | "sdxl"
    profile: models.ModelProfile | None
    ref: str  # what the user wrote

    @property
    def name(self) -> str:
        """What images record as the base model (a name, never a path)."""
        if self.profile is not None:
            return models.model_name(self.profile, "generator")
        return self.path.name


def _not_a_model(path: Path, why: str) -> BadInput:
    hint = ""
    if path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        hint = (
            " A single-file checkpoint must first be converted, on a machine you trust, with diffusers' "
            "StableDiffusionPipeline.from_single_file(...).save_pretrained(folder, safe_serialization=True)."
        )
    return BadInput(
        f"--base {terminal_safe(path)} is not a diffusers Stable Diffusion model: {why}.",
        "Give --base a model profile (e.g. demo, atelier, sd15) or a diffusers pipeline folder "
        "(model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)." + hint,
        kind="finetune-base",
    )


def check_pipeline_folder(path: Path) -> str:
    """The kind (sd15/sdxl) of the pipeline folder ``path``; BadInput / ModelRefused otherwise."""
    if not path.exists():
        raise _not_a_model(path, "there is no such file or folder")
    if not path.is_dir():
        raise _not_a_model(path, "it is a file, not a pipeline folder")
    index = path / "model_index.json"
    if not index.is_file():
        raise _not_a_model(path, "it has no model_index.json")
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _not_a_model(path, f"its model_index.json is unreadable ({exc})") from None
    cls = data.get("_class_name") if isinstance(data, dict) else None
    kind = PIPELINE_KINDS.get(str(cls))
    if kind is None:
        raise _not_a_model(
            path, f"its model_index.json names {terminal_safe(cls)!s}, not StableDiffusionPipeline or SDXL"
        )
    trust.check_folder(path, kind, "generator")  # ModelRefused: custom code or only pickles
    gaps = models.missing_files(path, kind)
    if gaps:
        raise _not_a_model(path, f"it is incomplete (missing {'; '.join(gaps)})")
    return kind


def resolve_base(ref: str) -> BaseModel:
    """``ref`` as a base model: a local folder first, else a model profile, else a cached id."""
    if not isinstance(ref, str) or not ref.strip():
        raise BadInput("--base is empty.", "Give a model profile (e.g. demo, atelier) or a folder.")
    path = Path(ref).expanduser()
    looks_like_path = path.exists() or ref.startswith((".", "/", "~")) or "\\" in ref
    if looks_like_path:
        return BaseModel(path.resolve(), check_pipeline_folder(path), None, ref)
    if "/" not in ref:
        try:
            profile = models.load_profile(ref)
        except TdriError as exc:
            raise BadInput(
                f"--base {terminal_safe(ref)} is neither a folder nor a model profile.",
                f"Give a folder, or one of the profiles: {', '.join(models.list_profiles())}.",
                kind="finetune-base",
            ) from exc
        spec = profile.spec("generator")
        folder = models.resolve(spec, is_demo=profile.is_demo)
        return BaseModel(folder, check_pipeline_folder(folder), profile, ref)
    spec = models.RoleSpec("generator", "sd15", ref)  # a Hugging Face id: local copies and the cache
    folder = models.resolve(spec)
    return BaseModel(folder, check_pipeline_folder(folder), None, ref)
