"""Model roles, profiles, offline resolution and the lazy model registry.

A *profile* names one model per *role* (generator, pose ControlNet, pose detector, VLM
captioner, CLIP and BLIP scorers, summarizer LLM). Every role is resolved offline: a folder
that exists, ``<TDRI_HOME>/models/<org>/<name>``, or the Hugging Face cache read with local
files only (``huggingface_hub.snapshot_download(local_files_only=True)``, the lookup
``from_pretrained`` does). Nothing here ever touches the network, whatever ``HF_HUB_OFFLINE``
says; the trust policy (``trust.py``) judges a folder before it counts as found. When weights are missing the error names
the role, every place looked, and how to provide them.

``ModelRegistry`` loads each role lazily, once, through a loader table that maps a *kind*
("sd15", "openpose", "hf-clip" ...) to ``"module:function"`` (imported only when needed), so
``import tdri_engine.models`` stays cheap and other modules can register their own kinds.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths, trust
from .errors import BadInput, ModelBroken, ModelMissing, OutOfMemory, TdriError

ROLES: tuple[str, ...] = ("generator", "controlnet", "pose", "vlm", "clip", "blip", "llm")

# What each role is for, in the words the models check and the studio print.
ROLE_HELP: dict[str, str] = {
    "generator": "text-to-image diffusion pipeline (SD-1.x or SDXL)",
    "controlnet": "pose ControlNet matching the generator",
    "pose": "OpenPose body keypoint detector",
    "vlm": "vision-language captioner for the Feedback-Reflection aspects",
    "clip": "CLIP scorer (image-text similarity)",
    "blip": "BLIP image-text matching scorer",
    "llm": "chat language model for the summarizer and questions",
}

Loader = Callable[..., Any]  # loader(path: Path, spec: RoleSpec, device, dtype) -> object

# kind -> "module:function". Loaders are imported only when a role of that kind is loaded.
_LOADERS: dict[str, str | Loader] = {
    "sd15": "tdri_engine.generator:load_pipeline",
    "sdxl": "tdri_engine.generator:load_pipeline",
    "controlnet": "tdri_engine.generator:load_controlnet",
    "openpose": "tdri_engine.pose:load_openpose",
    "image-text-to-text": "tdri_engine.reflector:load_captioner",
    "open_clip": "tdri_engine.metrics:load_clip",
    "hf-clip": "tdri_engine.metrics:load_clip",
    "blip-itm": "tdri_engine.metrics:load_blip",
    "causal-lm": "tdri_engine.llm:load_llm",
}

# kind -> groups of glob patterns; a folder is complete when every group matches a file.
# Why: a half-copied folder otherwise fails deep inside from_pretrained with a cryptic error.
_WEIGHTS = ("*.safetensors", "*.bin")
_EXPECTED_FILES: dict[str, list[tuple[str, ...]]] = {
    "sd15": [
        ("model_index.json",),
        ("unet/config.json",),
        ("unet/*.safetensors", "unet/*.bin"),
        ("vae/config.json",),
        ("vae/*.safetensors", "vae/*.bin"),
        ("text_encoder/config.json",),
        ("text_encoder/*.safetensors", "text_encoder/*.bin"),
        ("tokenizer/vocab.json", "tokenizer/tokenizer.json"),
        ("scheduler/scheduler_config.json",),
    ],
    "sdxl": [
        ("model_index.json",),
        ("unet/config.json",),
        ("unet/*.safetensors", "unet/*.bin"),
        ("vae/config.json",),
        ("text_encoder/config.json",),
        ("text_encoder_2/config.json",),
        ("tokenizer/vocab.json", "tokenizer/tokenizer.json"),
        ("tokenizer_2/vocab.json", "tokenizer_2/tokenizer.json"),
        ("scheduler/scheduler_config.json",),
    ],
    "controlnet": [("config.json",), _WEIGHTS],
    "openpose": [("body_pose_model.safetensors", "body_pose_model.pth")],
    "image-text-to-text": [("config.json",), _WEIGHTS],
    "hf-clip": [("config.json",), _WEIGHTS],
    "open_clip": [("open_clip_config.json", "config.json"), (*_WEIGHTS, "*.pt")],
    "blip-itm": [("config.json",), _WEIGHTS],
    "causal-lm": [("config.json",), _WEIGHTS],
}


def register_kind(
    kind: str, loader: str | Loader, expected_files: list[tuple[str, ...]] | None = None
) -> None:
    """Add or replace the loader of a model kind (``"module:function"`` or a callable)."""
    _LOADERS[kind] = loader
    if expected_files is not None:
        _EXPECTED_FILES[kind] = list(expected_files)


def known_kinds() -> tuple[str, ...]:
    return tuple(sorted(_LOADERS))


# --------------------------------------------------------------------------------------------
# Specs and profiles


@dataclass(frozen=True)
class RoleSpec:
    """One model role: what kind of model and where its weights come from.

    ``source`` is a Hugging Face id (``"org/name"``) or a folder path. ``options`` carries
    kind-specific knobs (``"filename"`` for the pose detector, ``"revision"`` for the cache ...).
    """

    role: str
    kind: str
    source: str
    required: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "required": self.required,
            "options": dict(self.options),
        }


def _normal_tail(x: float, mean: float, sd: float) -> float:
    """P(X > x) for X ~ N(mean, sd^2); a step at the mean when sd is 0."""
    import math

    if sd <= 0:
        return 1.0 if x < mean else 0.0
    return 0.5 * math.erfc((x - mean) / (sd * math.sqrt(2.0)))


@dataclass(frozen=True)
class Thresholds:
    """The two decision thresholds of a profile's models, and where they come from.

    ``tau``: ask a clarification question when the ambiguity A = sum_i w_i (1 - s_i) passes it
    (eq. 5, s_i = CLIP(image, caption_i)). ``ae_threshold``: regenerate with Attend-and-Excite
    when 1 - CLIP(image, prompt) passes it. Both depend on the CLIP model (real CLIP cosines of
    matching pairs are about 0.2-0.35, a tiny random CLIP's are anything), so each profile
    carries its own, set by ``tdri models calibrate`` (``calibrated``) or, where the weights
    are not on this machine, estimated from published CLIP score ranges (``calibrated`` False).

    ``question_rate`` / ``ae_rate`` are the shares of rounds that pass each threshold on the
    calibration prompts (or the estimate's). ``ambiguity`` and ``misalignment`` are the mean and
    standard deviation of A and of 1 - CLIP(image, prompt) there; the rate any other threshold
    implies is read from a normal distribution with those moments (:meth:`question_rate_at`).
    """

    tau: float
    ae_threshold: float
    question_rate: float
    ae_rate: float
    ambiguity: tuple[float, float]
    misalignment: tuple[float, float]
    calibrated: bool = False
    source: str = ""

    def question_rate_at(self, tau: float) -> float:
        """The share of rounds that ask at ``tau`` (the calibrated rate at the profile's own tau)."""
        if abs(tau - self.tau) < 1e-9:
            return self.question_rate
        return _normal_tail(tau, *self.ambiguity)

    def ae_rate_at(self, threshold: float) -> float:
        if abs(threshold - self.ae_threshold) < 1e-9:
            return self.ae_rate
        return _normal_tail(threshold, *self.misalignment)

    @property
    def status(self) -> str:
        return "calibrated" if self.calibrated else "estimated, not calibrated on this machine"

    def describe(self, tau: float | None = None) -> str:
        """One line for people: the tau in force and the question rate it implies."""
        t = self.tau if tau is None else float(tau)
        own = "" if tau is None or abs(t - self.tau) < 1e-9 else f" (profile: {self.tau:.3f})"
        return (
            f"τ = {t:.3f}{own}: asks in about {100 * self.question_rate_at(t):.0f}% of rounds ({self.status})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "tau": self.tau,
            "ae_threshold": self.ae_threshold,
            "question_rate": self.question_rate,
            "ae_rate": self.ae_rate,
            "ambiguity": list(self.ambiguity),
            "misalignment": list(self.misalignment),
            "calibrated": self.calibrated,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Thresholds:
        try:
            t = cls(
                tau=float(data["tau"]),
                ae_threshold=float(data["ae_threshold"]),
                question_rate=float(data["question_rate"]),
                ae_rate=float(data["ae_rate"]),
                ambiguity=(float(data["ambiguity"][0]), float(data["ambiguity"][1])),
                misalignment=(float(data["misalignment"][0]), float(data["misalignment"][1])),
                calibrated=bool(data.get("calibrated", False)),
                source=str(data.get("source", "")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BadInput(
                f"'thresholds'{where} is incomplete or not numbers ({type(exc).__name__}: {exc}).",
                "Copy the 'thresholds' object that `tdri models calibrate` writes.",
            ) from None
        if not (
            t.tau >= 0 and 0 <= t.ae_threshold <= 1 and 0 <= t.question_rate <= 1 and 0 <= t.ae_rate <= 1
        ):
            raise BadInput(f"'thresholds'{where} has values out of range.", "Rerun `tdri models calibrate`.")
        return t


# Real CLIP ViT-B/32 (the sd15 and sdxl profiles' clip role), estimated from published ranges:
# generated images score about 0.30-0.35 against their prompt (100x that is torchmetrics'
# CLIPScore; the paper's table 1 reports 0.338 for TDRI on SD-1.4), and captions that describe one
# aspect of an image score lower, about 0.20-0.30 (CLIPScore's human-caption pairs: 0.28-0.32).
# tau: A ~ 1 - mean(s_i) = 0.74 +- 0.025, at the median, so about half the rounds ask (the paper
# gives no rate; a question asked always or never carries no information). A&E threshold:
# 1 - CLIP(I, P) ~ 0.69 +- 0.03 (SD-1.5) / 0.67 +- 0.03 (SDXL), at the paper's table 6 usage of
# about 31%. Replace them by `tdri models calibrate --profile sd15` on a machine with the weights.
ESTIMATED_THRESHOLDS: dict[str, Thresholds] = {
    "sd15": Thresholds(0.74, 0.705, 0.5, 0.31, (0.74, 0.025), (0.69, 0.03), False,
                       "estimated from published CLIP ViT-B/32 score ranges"),
    "sdxl": Thresholds(0.73, 0.685, 0.5, 0.31, (0.73, 0.025), (0.67, 0.03), False,
                       "estimated from published CLIP ViT-B/32 score ranges"),
}  # fmt: skip

# The demo profile's tiny random models, calibrated on this code by
#   tdri models calibrate --profile demo --out docs/calibration/demo.json
# (the values below are that file's "thresholds").
# Random CLIP embeddings are nearly orthogonal (cosines about 0, clipped at 0), so A sits near 1
# and 1 - CLIP(I, P) spreads over 0.5-1: thresholds no real profile would use.
DEMO_THRESHOLDS = Thresholds(
    tau=0.9751,
    ae_threshold=0.9317,
    question_rate=0.5,
    ae_rate=0.2917,
    ambiguity=(0.9727, 0.0213),
    misalignment=(0.8409, 0.1439),
    calibrated=True,
    source="tdri models calibrate --profile demo (24 prompts)",
)


@dataclass(frozen=True)
class DomainLora:
    """A profile's domain LoRA: the generator fine-tuned on a house's own pictures (``tdri finetune``).

    ``path`` is a diffusers LoRA folder (``pytorch_lora_weights.safetensors``); ``weight`` its
    strength when a project's DPO adapter is stacked on it (diffusers ``set_adapters``, both
    active at once); ``trigger_words`` the words its captions used, which prompts should carry
    to call up what it learned (shown to people; never added to a prompt behind their back).
    """

    path: str
    weight: float = 1.0
    trigger_words: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "weight": self.weight, "trigger_words": list(self.trigger_words)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> DomainLora:
        if isinstance(data, str):
            data = {"path": data}
        fix = (
            'Write it as "domain_lora": {"path": "/folder/of/the/lora", "weight": 1.0, "trigger_words": []}.'
        )
        if not isinstance(data, dict):
            raise BadInput(f"'domain_lora'{where} must be an object, not {_json_type(data)}.", fix)
        path, weight, words = data.get("path"), data.get("weight", 1.0), data.get("trigger_words", [])
        if not isinstance(path, str) or not path or len(path) > MAX_PROFILE_REF or "\0" in path:
            raise BadInput(f"'domain_lora'{where} needs a 'path' (a LoRA folder).", fix)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 4:
            raise BadInput(f"The 'weight' of 'domain_lora'{where} must be a number from 0 to 4.", fix)
        if not isinstance(words, list) or not all(isinstance(w, str) and 0 < len(w) <= 100 for w in words):
            raise BadInput(f"'trigger_words' of 'domain_lora'{where} must be a list of short texts.", fix)
        return cls(path, float(weight), tuple(words))


@dataclass(frozen=True)
class ModelProfile:
    name: str
    roles: dict[str, RoleSpec]
    is_demo: bool = False
    description: str = ""
    # Upper bounds on settings this profile's models can serve ("width", "height", "steps").
    limits: dict[str, int] = field(default_factory=dict)
    # tau and the A&E threshold for these models (a custom profile without its own: sd15's estimate)
    thresholds: Thresholds = field(default_factory=lambda: ESTIMATED_THRESHOLDS["sd15"])
    # the generator's domain LoRA (``tdri finetune``); a project's DPO adapter stacks on it
    domain_lora: DomainLora | None = None
    sample_image: str = ""  # a picture of what the profile makes (path), for people choosing one
    # the Reflector's own one-click answers: resources/templates/questions_<name>.json merged over
    # questions.json ("" = the generic ones); the atelier profile offers its world's values
    questions: str = ""

    def spec(self, role: str) -> RoleSpec:
        try:
            return self.roles[role]
        except KeyError:
            raise BadInput(
                f"The model profile '{self.name}' has no '{role}' role.",
                f"Add a '{role}' entry to the profile's roles (kinds: {', '.join(known_kinds())}).",
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "is_demo": self.is_demo,
            "roles": {r: s.to_dict() for r, s in self.roles.items()},
            **({"limits": dict(self.limits)} if self.limits else {}),
            "thresholds": self.thresholds.to_dict(),
            **({"domain_lora": self.domain_lora.to_dict()} if self.domain_lora else {}),
            **({"sample_image": self.sample_image} if self.sample_image else {}),
            **({"questions": self.questions} if self.questions else {}),
        }


def _real_roles(generator: tuple[str, str], controlnet: str) -> dict[str, RoleSpec]:
    kind, gen_id = generator
    return {
        "generator": RoleSpec("generator", kind, gen_id),
        "controlnet": RoleSpec("controlnet", "controlnet", controlnet),
        "pose": RoleSpec("pose", "openpose", "lllyasviel/Annotators"),
        "vlm": RoleSpec("vlm", "image-text-to-text", "Qwen/Qwen2-VL-2B-Instruct"),
        "clip": RoleSpec("clip", "hf-clip", "openai/clip-vit-base-patch32"),
        "blip": RoleSpec("blip", "blip-itm", "Salesforce/blip-itm-base-coco", required=False),
        "llm": RoleSpec("llm", "causal-lm", "Qwen/Qwen2.5-1.5B-Instruct"),
    }


# Kinds of the demo roles; the language roles follow what tdri_engine.demo.language builds.
DEMO_KINDS: dict[str, str] = {
    "generator": "sd15",
    "controlnet": "controlnet",
    "pose": "openpose",
    "vlm": "image-text-to-text",
    "clip": "open_clip",
    "blip": "blip-itm",
    "llm": "causal-lm",
}


# The tiny models make noise at any size, and on a CPU their cost grows fast with it (the VAE
# and the UNet attend over every latent pixel: 1.5 s per step at 128 px, 0.34 s at 64 px, 2 cores).
DEMO_LIMITS = {"width": 64, "height": 64, "steps": 8}


def demo_profile() -> ModelProfile:
    """Tiny random models built on this machine by ``tdri models demo`` (no downloads)."""
    root = paths.demo_models_dir()
    roles = {role: RoleSpec(role, kind, str(root / role)) for role, kind in DEMO_KINDS.items()}
    return ModelProfile(
        "demo",
        roles,
        is_demo=True,
        description="Tiny models with random weights, built offline: the whole loop runs, the images are noise.",
        limits=dict(DEMO_LIMITS),
        thresholds=DEMO_THRESHOLDS,
    )


# The Atelier's models, calibrated on them by
#   tdri models calibrate --profile atelier --out docs/calibration/atelier.json
# (the values below are that file's "thresholds"; see the README's calibration table).
ATELIER_THRESHOLDS = Thresholds(
    tau=0.8157,
    ae_threshold=0.8899,
    question_rate=0.5,
    ae_rate=0.2917,
    ambiguity=(0.807, 0.0333),
    misalignment=(0.8284, 0.1063),
    calibrated=True,
    source="tdri models calibrate --profile atelier --prompts docs/calibration/atelier_prompts.txt (24 prompts)",
)
# 64x64 is the size the Atelier generator was trained at (32x32 latents); its DDIM steps.
ATELIER_LIMITS = {"width": 64, "height": 64, "steps": 20}
ATELIER_GUIDANCE = 7.5  # the generator's sampling default (atelier.gen_train.DEFAULTS)


def starting_settings(profile: str) -> Any:
    """The settings a new project on ``profile`` starts with (an ``EngineSettings``), or None for
    the plain defaults. The Atelier generator was trained at 64 px and its chosen guidance is 7.5
    (docs/atelier/generator.json, guidance_sweep: on 150 held-out prompts the judge reads the
    prompted colour in 0.55 of the images at 7.5, 0.45 at 4, 0.33 at 2), so its projects start at
    its own values, as the sample project does."""
    if profile != "atelier":
        return None
    from .settings import EngineSettings

    return EngineSettings(
        width=ATELIER_LIMITS["width"],
        height=ATELIER_LIMITS["height"],
        steps=ATELIER_LIMITS["steps"],
        guidance=ATELIER_GUIDANCE,
    )


ATELIER = "atelier"
# The profile a new project, the studio's first start and the sample use where no real weights
# are configured: the Atelier's trained models. "demo" (tiny random models) stays for tests.
LOCAL_DEFAULT_PROFILE = ATELIER


def atelier_profile() -> ModelProfile:
    """The Atelier's trained models (``tdri_engine/atelier/weights``), installed into
    ``<TDRI_HOME>/models/atelier`` by ``tdri models demo``; the roles it has no trained model
    for (pose, llm, and any not committed yet) read the tiny demo models (``demo.atelier``)."""
    from .demo.atelier import role_sources

    roles = {
        role: RoleSpec(
            role,
            kind,
            str(folder),
            required=role != "blip",
            options={"name": f"{folder.parent.name}/{role}"},
        )
        for role, (kind, folder) in role_sources().items()
    }
    return ModelProfile(
        ATELIER,
        roles,
        description="The Atelier: small models trained on a garment world the engine draws itself, "
        "shipped with it (64x64 images); roles it has no trained model for use the tiny demo ones.",
        limits=dict(ATELIER_LIMITS),
        thresholds=ATELIER_THRESHOLDS,
        questions=ATELIER,  # one-click answers in the world's own words (atelier/questions.py)
    )


def builtin_profiles() -> dict[str, ModelProfile]:
    """Built-in profiles, computed on each call (the demo folder follows TDRI_HOME)."""
    return {
        "demo": demo_profile(),
        ATELIER: atelier_profile(),
        "sd15": ModelProfile(
            "sd15",
            _real_roles(
                ("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5"), "lllyasviel/sd-controlnet-openpose"
            ),
            description="Stable Diffusion 1.5 with the OpenPose ControlNet, Qwen2-VL, CLIP, BLIP and Qwen2.5.",
            thresholds=ESTIMATED_THRESHOLDS["sd15"],
        ),
        "sdxl": ModelProfile(
            "sdxl",
            _real_roles(
                ("sdxl", "stabilityai/stable-diffusion-xl-base-1.0"), "thibaud/controlnet-openpose-sdxl-1.0"
            ),
            description="SDXL base 1.0 with the SDXL OpenPose ControlNet; the other roles as in sd15.",
            thresholds=ESTIMATED_THRESHOLDS["sdxl"],
        ),
    }


DEFAULT_PROFILE = "sd15"


def _json_type(value: Any) -> str:
    """How a JSON value's type reads in a message ("a list", "a number" ...)."""
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


# Options with a fixed type; other kind-specific options pass through as given.
_OPTION_TYPES: dict[str, type] = {
    "filename": str,
    "subfolder": str,
    "variant": str,
    "revision": str,
    "scheduler": str,
    "safety_checker": bool,
    "name": str,  # what images record as the model (models.model_name)
}


def _check_options(raw: Any, role: str, where: str) -> dict[str, Any]:
    """A role's ``options`` as a dict of well-typed values; file names stay inside the model folder."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadInput(
            f"The 'options' of role '{role}'{where} must be an object, not {_json_type(raw)}.",
            'Write them as "options": {"variant": "fp16"} (or leave them out).',
        )
    for key, want in _OPTION_TYPES.items():
        if key in raw and not isinstance(raw[key], want):
            raise BadInput(
                f"Option '{key}' of role '{role}'{where} must be {_json_type(want())}, not {_json_type(raw[key])}.",
                "Fix the profile JSON.",
            )
    for key in ("filename", "subfolder"):
        value = raw.get(key)
        if value is not None and (
            not value
            or "\0" in value
            or Path(value).is_absolute()
            or ".." in Path(value).parts
            or "\\" in value
        ):
            raise BadInput(
                f"Option '{key}' of role '{role}'{where} must name something inside the model folder, got {value!r}.",
                f"Give a relative '{key}' without '..', or point the role's source at the folder itself.",
            )
    return dict(raw)


def profile_from_dict(data: dict[str, Any], *, name: str | None = None, origin: str = "") -> ModelProfile:
    """Build a profile from its JSON form. ``"extends": "sd15"`` starts from a built-in profile."""
    where = f" in {origin}" if origin else ""
    if not isinstance(data, dict):
        raise BadInput(
            f"The model profile{where} is not a JSON object.", 'Write it as {"name": ..., "roles": {...}}.'
        )
    roles: dict[str, RoleSpec] = {}
    is_demo = bool(data.get("is_demo", False))
    limits: dict[str, int] = {}
    thresholds = ESTIMATED_THRESHOLDS["sd15"]
    base_name = data.get("extends")
    if base_name is not None and not isinstance(base_name, str):
        raise BadInput(
            f"'extends'{where} must be the name of a built-in profile, not {_json_type(base_name)}.",
            f'Write it as "extends": "sd15" (built-in profiles: {", ".join(builtin_profiles())}).',
        )
    if base_name:
        builtins = builtin_profiles()
        if base_name not in builtins:
            raise BadInput(
                f"The model profile{where} extends an unknown profile '{base_name}'.",
                f"Use one of: {', '.join(builtins)}.",
            )
        roles.update(builtins[base_name].roles)
        is_demo = is_demo or builtins[base_name].is_demo
        limits.update(builtins[base_name].limits)
        thresholds = builtins[base_name].thresholds
    raw_roles = data.get("roles", {})
    if not isinstance(raw_roles, dict):
        raise BadInput(
            f"'roles'{where} must be an object mapping role names to specs.", "Fix the profile JSON."
        )
    for role, raw in raw_roles.items():
        if role not in ROLES:
            raise BadInput(f"Unknown role '{role}'{where}.", f"Roles are: {', '.join(ROLES)}.")
        if isinstance(raw, str):  # shorthand: "generator": "/models/my-sd15" keeps the base kind
            raw = {"source": raw}
        if not isinstance(raw, dict):
            raise BadInput(
                f"Role '{role}'{where} must be an object or a source string.", "Fix the profile JSON."
            )
        base = roles.get(role)
        kind = raw.get("kind", base.kind if base else None)
        source = raw.get("source", base.source if base else None)
        for key, value in (("kind", kind), ("source", source)):
            if value is not None and not isinstance(value, str):
                raise BadInput(
                    f"The '{key}' of role '{role}'{where} must be text, not {_json_type(value)}.",
                    f"Kinds: {', '.join(known_kinds())}; source: a Hugging Face id or a folder path.",
                )
        if source and (len(source) > MAX_PROFILE_REF or any(ord(ch) < 32 or ord(ch) == 127 for ch in source)):
            raise BadInput(
                f"The 'source' of role '{role}'{where} is over {MAX_PROFILE_REF} characters or holds "
                "control characters.",
                "Give a Hugging Face id (org/name) or a folder path.",
            )
        if not kind or not source:
            raise BadInput(
                f"Role '{role}'{where} needs a 'kind' and a 'source'.",
                f"Kinds: {', '.join(known_kinds())}; source: a Hugging Face id or a folder path.",
            )
        if kind not in _LOADERS:
            raise BadInput(
                f"Role '{role}'{where} has an unknown kind '{kind}'.", f"Kinds: {', '.join(known_kinds())}."
            )
        options = dict(base.options) if base else {}
        options.update(_check_options(raw.get("options"), role, where))
        required = raw.get("required", base.required if base else True)
        if not isinstance(required, bool):
            raise BadInput(
                f"'required' of role '{role}'{where} must be true or false, not {_json_type(required)}.",
                "Fix the profile JSON.",
            )
        roles[role] = RoleSpec(role, kind, str(source), required, options)
    missing = [r for r in ("generator",) if r not in roles]
    if missing:
        raise BadInput(
            f"The model profile{where} has no generator role.", "Add a 'generator' role (kind sd15 or sdxl)."
        )
    raw_limits = data.get("limits", {}) or {}
    if not isinstance(raw_limits, dict) or not all(
        k in ("width", "height", "steps") and isinstance(v, int) and not isinstance(v, bool) and v > 0
        for k, v in raw_limits.items()
    ):
        raise BadInput(
            f"'limits'{where} must map width/height/steps to positive whole numbers.", "Fix the profile JSON."
        )
    limits.update(raw_limits)
    if data.get("thresholds") is not None:
        thresholds = Thresholds.from_dict(data["thresholds"], where)
    domain = builtin_profiles()[base_name].domain_lora if base_name else None
    if data.get("domain_lora") is not None:
        domain = DomainLora.from_dict(data["domain_lora"], where)
    sample = data.get("sample_image", "")
    if not isinstance(sample, str) or len(sample) > MAX_PROFILE_REF:
        raise BadInput(f"'sample_image'{where} must be a file path (text).", "Fix the profile JSON.")
    questions = builtin_profiles()[base_name].questions if base_name else ""
    if data.get("questions") is not None:
        from .templates import QUESTIONS_NAME

        questions = data["questions"]
        if not isinstance(questions, str) or not (questions == "" or QUESTIONS_NAME.match(questions)):
            raise BadInput(
                f"'questions'{where} must name a questions template (a-z, 0-9, _), not {questions!r}.",
                'Write it as "questions": "atelier" (resources/templates/questions_atelier.json), or leave it out.',
            )
    return ModelProfile(
        name or str(data.get("name") or "custom"),
        roles,
        is_demo=is_demo,
        description=str(data.get("description", "")),
        limits=limits,
        thresholds=thresholds,
        domain_lora=domain,
        sample_image=sample,
        questions=questions,
    )


def load_profile(name_or_path: str | os.PathLike[str] | ModelProfile) -> ModelProfile:
    """A built-in profile, a user profile ``<TDRI_HOME>/profiles/<name>.json``, or a JSON path.

    A user file with a built-in's name (other than ``demo``) overrides it: that is how the
    studio's Settings > Models stores the folders chosen for the ``sd15`` profile.
    """
    if isinstance(name_or_path, ModelProfile):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise BadInput(
            f"The model profile must be a name or a file path, not {_json_type(name_or_path)}.",
            f"Use one of: {', '.join(list_profiles())}, or the path of a profile JSON file.",
        )
    text = os.fspath(name_or_path)
    if (
        not isinstance(text, str)
        or not text
        or len(text) > MAX_PROFILE_REF
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in text)
    ):
        shown = repr(text[:60]) + ("..." if len(text) > 60 else "")
        raise BadInput(
            f"The model profile {shown} is not a profile name or a usable file path "
            f"(empty, over {MAX_PROFILE_REF} characters, or with control characters).",
            f"Use one of: {', '.join(list_profiles())}, or the path of a profile JSON file.",
        )
    candidate = Path(text).expanduser()
    if text.endswith(".json") or _is_file(candidate):
        return _read_profile_file(candidate)
    builtins = builtin_profiles()
    # a user profile is looked up by a plain name only: "../x" never leaves the profiles folder
    user_file = paths.profiles_dir() / f"{text}.json"
    if text != "demo" and "/" not in text and "\\" not in text and _is_file(user_file):
        return _read_profile_file(user_file, name=text)
    if text in builtins:
        return builtins[text]
    raise BadInput(
        f"Unknown model profile '{text}'.",
        f"Use one of: {', '.join(list_profiles())}, or give the path of a profile JSON file "
        f"(user profiles live in {paths.profiles_dir()}).",
    )


MAX_PROFILE_REF = 4096  # characters of a profile name or path (PATH_MAX on Linux)
MAX_PROFILE_BYTES = 1_000_000  # a profile is a few hundred bytes; this bounds what is parsed


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False where the name cannot exist (too long, a NUL ...)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _read_profile_file(path: Path, name: str | None = None) -> ModelProfile:
    """Parse a profile file; anything wrong with it is a ``BadInput`` that names the file.

    Nesting deeper than Python's JSON parser follows (about 1,000 levels, a ``RecursionError``)
    is reported as such: a real profile is three levels deep.
    """
    try:
        if path.stat().st_size > MAX_PROFILE_BYTES:
            raise BadInput(
                f"The model profile {path} is {path.stat().st_size:,} bytes; a profile is a few hundred.",
                "Check that the path names a profile JSON file.",
            )
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"The model profile file {path} does not exist.", "Check the path.") from None
    except RecursionError:
        raise BadInput(
            f"The model profile {path} is nested too deeply to be a profile.",
            'Write it as {"name": ..., "roles": {...}} (a profile is three levels deep).',
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInput(
            f"Could not read the model profile {path}: {exc}.", "Fix or replace the file."
        ) from None
    if not isinstance(data, dict):
        raise BadInput(
            f"The model profile in {path} is not a JSON object (it is {_json_type(data)}).",
            'Write it as {"name": ..., "roles": {...}}.',
        )
    own = data.get("name")
    return profile_from_dict(
        data, name=name or (own if isinstance(own, str) and own else path.stem), origin=str(path)
    )


def save_profile(profile: ModelProfile, path: Path | None = None) -> Path:
    """Write a profile as JSON (atomically) to ``path`` or the user profiles folder."""
    target = path or paths.profiles_dir() / f"{profile.name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(profile.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, target)
    return target


def list_profiles() -> list[str]:
    names = list(builtin_profiles())
    folder = paths.profiles_dir()
    if folder.is_dir():
        names += sorted(p.stem for p in folder.glob("*.json") if p.stem not in names)
    return names


def profile_choice_label(name: str) -> str:
    """How a profile reads in a list to choose from: its name, and what sets it apart (tiny
    random models; a domain LoRA with its trigger words). An unreadable profile is its name."""
    try:
        profile = load_profile(name)
    except TdriError:
        return name
    if profile.domain_lora is not None:
        words = ", ".join(profile.domain_lora.trigger_words)
        return f"{name}  (fine-tuned{': ' + words if words else ''})"
    return name + ("  (tiny random models)" if name == "demo" else "")


# --------------------------------------------------------------------------------------------
# Offline resolution


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time with the precedence
    ``huggingface_hub.constants`` uses (HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME,
    XDG_CACHE_HOME): the library reads it once at import, and tests and the studio change it later."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(os.path.expandvars(env)).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(os.path.expandvars(home)).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def local_models_dir() -> Path:
    """Where IT may drop model folders by id: ``<TDRI_HOME>/models/<org>/<name>``."""
    return paths.tdri_home() / "models"


def _looks_like_hf_id(source: str) -> bool:
    parts = source.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not source.startswith((".", "~", "/"))
        and "\\" not in source
        and ":" not in source
    )


def model_name(profile: ModelProfile, role: str) -> str:
    """What an image records as its model: a name, never a path.

    The role's ``options.name`` when set, else its Hugging Face id, else the folder's own name
    (``demo/<folder>`` for the demo profile). Why: a path carries the user's home folder (and
    so their account name) into the provenance of every image they share.
    """
    spec = profile.spec(role)
    given = spec.options.get("name")
    if isinstance(given, str) and given.strip():
        return given.strip()
    source = spec.source
    if _looks_like_hf_id(source) and not Path(source).expanduser().is_dir():
        return source
    name = Path(source.rstrip("/\\")).name or "model"
    return f"demo/{name}" if profile.is_demo else name


def _cache_snapshot(repo_id: str, revision: str = "main") -> tuple[Path | None, Path, str]:
    """(snapshot folder or None, repo folder looked in, why an existing snapshot is unusable)
    from the hub cache, through ``huggingface_hub`` and never the network.

    ``snapshot_download(local_files_only=True)`` resolves the revision (a branch through
    ``refs/``, or a commit hash) as ``from_pretrained`` would, and refuses a snapshot its cached
    file listing shows incomplete. A cache copied without its ``refs/`` (a common way to carry
    one to an offline machine) has no branch to resolve: then the newest snapshot of the repo
    that ``scan_cache_dir`` lists is taken, as before the library did the lookup.
    """
    from huggingface_hub import scan_cache_dir, snapshot_download
    from huggingface_hub.errors import CacheNotFound, IncompleteSnapshotError, LocalEntryNotFoundError
    from huggingface_hub.file_download import repo_folder_name

    cache = hf_cache_dir()
    try:
        repo_dir = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    except ValueError as exc:  # HFValidationError: e.g. spaces or '..' in the id
        return None, cache / ("models--" + repo_id.replace("/", "--")), f"'{repo_id}' is no repo id ({exc})"
    try:
        found = snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True)
        return Path(found), repo_dir, ""
    except IncompleteSnapshotError as exc:
        return None, repo_dir, str(exc)
    except (LocalEntryNotFoundError, ValueError):  # ValueError: not a valid repo id (HFValidationError)
        pass
    if not (repo_dir / "snapshots").is_dir():
        return None, repo_dir, ""
    try:
        repos = scan_cache_dir(cache).repos
    except (CacheNotFound, OSError):
        return None, repo_dir, ""
    revisions = [
        r for repo in repos if repo.repo_id == repo_id and repo.repo_type == "model" for r in repo.revisions
    ]
    if not revisions:
        return None, repo_dir, ""
    return Path(max(revisions, key=lambda r: r.last_modified).snapshot_path), repo_dir, ""


def missing_files(path: Path, kind: str) -> list[str]:
    """Groups of expected files absent from ``path`` (empty when the folder looks complete)."""
    out = []
    for group in _EXPECTED_FILES.get(kind, []):
        if not any(any(path.glob(pattern)) for pattern in group):
            out.append(" or ".join(group))
    return out


def _under(source: str, folder: Path) -> bool:
    try:
        return Path(source).expanduser().resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError):
        return False


def _what_to_do(spec: RoleSpec, is_demo: bool) -> str:
    if _under(spec.source, local_models_dir() / ATELIER):
        return (
            "Install the Atelier models with `tdri models demo` (copies the trained weights shipped "
            "with the engine, offline, seconds); the studio does this by itself on first run."
        )
    if is_demo or _under(spec.source, paths.demo_models_dir()):
        return (
            "Build the demo models with `tdri models demo` (tiny random weights, offline, a few seconds); "
            "the studio does this by itself on first run."
        )
    if _looks_like_hf_id(spec.source):
        org, name = spec.source.split("/")
        return (
            f"Copy the model folder to {local_models_dir() / org / name}, or set its path in "
            f"Settings > Models (or as the '{spec.role}' source in the profile JSON under {paths.profiles_dir()}). "
            f"With network elsewhere: `huggingface-cli download {spec.source}` there, then copy its cache "
            f"folder models--{org}--{name} into {hf_cache_dir()} here."
        )
    return (
        f"Copy the {spec.role} model ({ROLE_HELP.get(spec.role, spec.kind)}) into {spec.source}, or point the "
        f"'{spec.role}' source in Settings > Models (or the profile JSON) at the folder that holds it."
    )


@dataclass(frozen=True)
class Resolution:
    path: Path | None
    looked_in: list[str]
    reason: str = ""
    refused: Path | None = None  # a folder the trust policy refuses; ``reason`` says why


def _locate(spec: RoleSpec) -> Resolution:
    """Try every offline place for ``spec``; say what is wrong with each folder found."""
    looked: list[str] = []
    reasons: list[str] = []
    candidates: list[Path] = []
    source = spec.source
    explicit = Path(source).expanduser()
    is_id = _looks_like_hf_id(source) and not explicit.is_dir()
    if not is_id:
        candidates.append(explicit)
    else:
        org, name = source.split("/")
        candidates.append(local_models_dir() / org / name)
    subfolder = spec.options.get("subfolder")
    for folder in candidates:
        looked.append(str(folder))
        if folder.is_dir():
            target = folder / subfolder if subfolder else folder
            refusal = trust.refusal_reason(target, spec.kind, spec.options)
            if refusal:  # checked before anything else: a refused folder is never "found"
                return Resolution(None, looked, refusal, refused=target)
            gaps = missing_files(target, spec.kind)
            if not gaps:
                return Resolution(target, looked)
            reasons.append(f"{target} is incomplete or not a {spec.kind} model (missing {'; '.join(gaps)})")
    if is_id:
        snapshot, repo_dir, problem = _cache_snapshot(source, str(spec.options.get("revision", "main")))
        looked.append(str(repo_dir))
        if problem:
            reasons.append(problem)
        if snapshot is not None:
            target = snapshot / subfolder if subfolder else snapshot
            refusal = trust.refusal_reason(target, spec.kind, spec.options)
            if refusal:
                return Resolution(None, looked, refusal, refused=target)
            gaps = missing_files(target, spec.kind)
            if not gaps:
                return Resolution(target, looked)
            reasons.append(f"the cached snapshot {target} is incomplete (missing {'; '.join(gaps)})")
    return Resolution(None, looked, "; ".join(reasons))


def resolve(spec: RoleSpec, *, is_demo: bool = False) -> Path:
    """The local folder holding ``spec``'s weights, or ModelMissing naming role, places and fix.

    A folder the trust policy refuses (custom code, only pickled weights) raises ModelRefused.
    """
    found = _locate(spec)
    if found.refused is not None:
        raise trust.refused(found.refused, spec.kind, spec.role, found.reason)
    if found.path is None:
        detail = f"({ROLE_HELP.get(spec.role, spec.kind)}, source '{spec.source}')"
        if found.reason:
            detail += f" Found but unusable: {found.reason}."
        raise ModelMissing(spec.role, found.looked_in, _what_to_do(spec, is_demo), detail=detail)
    return found.path


@dataclass(frozen=True)
class RoleStatus:
    role: str
    kind: str
    source: str
    found: bool
    path: str | None
    looked_in: list[str]
    what_to_do: str
    required: bool
    reason: str = ""
    refused: bool = False  # found, but the trust policy refuses it (``reason`` says why)


def check_profile(profile: ModelProfile) -> list[RoleStatus]:
    """One status per role: found where, or missing with every place looked and the fix."""
    out = []
    for role in sorted(profile.roles, key=lambda r: ROLES.index(r) if r in ROLES else len(ROLES)):
        spec = profile.roles[role]
        found = _locate(spec)
        out.append(
            RoleStatus(
                role=role,
                kind=spec.kind,
                source=spec.source,
                found=found.path is not None,
                path=str(found.path or found.refused or "") or None,
                looked_in=found.looked_in,
                what_to_do=(
                    trust.what_to_do(role, found.reason)
                    if found.refused is not None
                    else ("" if found.path else _what_to_do(spec, profile.is_demo))
                ),
                required=spec.required,
                reason=found.reason,
                refused=found.refused is not None,
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Device and dtype


def resolve_device(name: str = "auto") -> Any:
    """``auto`` = cuda > mps > cpu. Returns a ``torch.device``."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput(
            f"Device '{name}' was asked for, but CUDA is not available on this machine.",
            "Set the device to 'auto' or 'cpu' in Settings.",
        )
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BadInput(
            "Device 'mps' was asked for, but it is not available.", "Set the device to 'auto' or 'cpu'."
        )
    return torch.device(name)


def resolve_dtype(name: str, device: Any) -> Any:
    """``auto`` = fp16 on cuda/mps, fp32 on cpu. fp16 on the CPU becomes fp32 (slow and unsupported)."""
    import torch

    if name == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    table = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if name not in table:
        raise BadInput(f"Unknown dtype '{name}'.", "Use auto, fp16, bf16 or fp32.")
    if name == "fp16" and device.type == "cpu":
        return torch.float32
    return table[name]


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def out_of_memory(what: str, exc: BaseException | None = None) -> OutOfMemory:
    """The OutOfMemory error with the knobs that help, shared by loading and generation."""
    detail = f" ({str(exc).splitlines()[0]})" if exc is not None and str(exc) else ""
    return OutOfMemory(
        f"Out of memory while {what}{detail}.",
        "Use a smaller image size, set dtype to fp16 (or bf16), turn on CPU offload in Settings, "
        "or choose a smaller model profile.",
    )


# --------------------------------------------------------------------------------------------
# Registry


def _import_loader(target: str | Loader, kind: str) -> Loader:
    if callable(target):
        return target
    module_name, _, func = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise TdriError(
                f"This build has no loader for models of kind '{kind}' ({module_name} is not installed).",
                "Install the complete TDRI engine, or choose a profile without this kind.",
                kind="model-kind",
            ) from None
        raise
    return getattr(module, func)


class ModelRegistry:
    """Loads each role of a profile lazily, once, on one device and dtype; thread-safe."""

    def __init__(
        self,
        profile: ModelProfile | str,
        device: str = "auto",
        dtype: str = "auto",
        cpu_offload: bool = False,
    ) -> None:
        self.profile = load_profile(profile)
        self._device_name = device
        self._dtype_name = dtype
        self.cpu_offload = cpu_offload
        self._models: dict[str, Any] = {}
        self._paths: dict[str, Path] = {}
        self._lock = threading.RLock()
        self._device: Any = None
        self._dtype: Any = None

    @property
    def device(self) -> Any:
        if self._device is None:
            self._device = resolve_device(self._device_name)
        return self._device

    @property
    def dtype(self) -> Any:
        if self._dtype is None:
            self._dtype = resolve_dtype(self._dtype_name, self.device)
        return self._dtype

    def has(self, role: str) -> bool:
        """True when the profile names this role and its weights resolve here."""
        if role not in self.profile.roles:
            return False
        if role in self._models:
            return True
        return _locate(self.profile.roles[role]).path is not None

    def path(self, role: str) -> Path:
        with self._lock:
            if role not in self._paths:
                self._paths[role] = resolve(self.profile.spec(role), is_demo=self.profile.is_demo)
            return self._paths[role]

    def is_loaded(self, role: str) -> bool:
        return role in self._models

    def get(self, role: str) -> Any:
        """The loaded model of ``role``; loads it on first use (ModelMissing/ModelBroken/OutOfMemory)."""
        with self._lock:
            if role in self._models:
                return self._models[role]
            spec = self.profile.spec(role)
            path = self.path(role)
            if spec.kind not in _LOADERS:
                raise BadInput(
                    f"Unknown model kind '{spec.kind}' for role '{role}'.",
                    f"Kinds: {', '.join(known_kinds())}.",
                )
            loader = _import_loader(_LOADERS[spec.kind], spec.kind)
            self._tune_threads()
            # Why: the loader signature is fixed; runtime knobs travel in the spec's options.
            run_spec = dataclasses.replace(spec, options={**spec.options, "cpu_offload": self.cpu_offload})
            try:
                model = loader(path, run_spec, self.device, self.dtype)
            except TdriError:
                raise
            except Exception as exc:
                if _is_oom(exc):
                    raise out_of_memory(f"loading the {role} model from {path}", exc) from exc
                raise ModelBroken(
                    f"The {role} model in {path} could not be loaded as '{spec.kind}': "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                    f"Check that the folder holds a complete {ROLE_HELP.get(role, spec.kind)} "
                    f"(re-copy it), or point the '{role}' source at another folder in Settings > Models."
                    + (
                        " For the demo profile: `tdri models demo --force` rebuilds it."
                        if self.profile.is_demo
                        else ""
                    ),
                ) from exc
            self._models[role] = model
            return model

    def _tune_threads(self) -> None:
        """Demo models on the CPU run on one thread.

        Why: their matrices are tiny, and on a busy 2-core machine OpenMP threads spin against
        each other; measured 50x slower for a 32-wide linear layer than with one thread.
        """
        if self.profile.is_demo and self.device.type == "cpu":
            import torch

            torch.set_num_threads(1)

    def put(self, role: str, model: Any) -> None:
        """Hand the registry an already loaded model (tests, or a model shared by two roles)."""
        with self._lock:
            self._models[role] = model

    def unload(self, role: str | None = None) -> None:
        """Forget one role's model (or all), so its memory can be reclaimed."""
        with self._lock:
            if role is None:
                self._models.clear()
            else:
                self._models.pop(role, None)
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
