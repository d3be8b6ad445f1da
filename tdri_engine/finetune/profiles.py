"""Model profiles made by ``tdri finetune``: a base generator plus its domain LoRA.

A fine-tune registers a user profile ``<TDRI_HOME>/profiles/<name>.json`` (the folder
``models.load_profile`` reads): it ``extends`` the built-in profile the base came from (or the
built-in of the base's kind, for a folder), points the generator at the base and adds
``domain_lora`` (path, weight, trigger words), a description and a sample image. The studio's
Settings and ``tdri models check`` list it like any profile; a project that picks it generates
with the domain LoRA under its own DPO adapter (``generator.Generator``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .. import models, paths
from ..errors import BadInput
from ..validation import terminal_safe
from .base import BaseModel

MADE_BY = "tdri finetune"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def runs_dir() -> Path:
    """Where fine-tuning runs live by default: ``<TDRI_HOME>/finetunes/<name>``."""
    return paths.tdri_home() / "finetunes"


def check_name(name: str) -> str:
    """A profile name a fine-tune may write: a plain file name, not a built-in's, and not a user
    profile written by something else."""
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith(".json"):
        raise BadInput(
            f"--out {terminal_safe(name)!s} is not a usable profile name.",
            "Use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit (e.g. house-2026).",
            kind="finetune-name",
        )
    if name in models.builtin_profiles():
        raise BadInput(
            f"--out {name} is the name of a built-in model profile.",
            "Choose another name for the fine-tuned profile.",
            kind="finetune-name",
        )
    existing = paths.profiles_dir() / f"{name}.json"
    if existing.is_file():
        try:
            made_by = json.loads(existing.read_text(encoding="utf-8")).get("made_by")
        except (OSError, ValueError, AttributeError):
            made_by = None
        if made_by != MADE_BY:
            raise BadInput(
                f"A model profile named {name} already exists ({existing}) and was not made by a fine-tune.",
                "Choose another --out name.",
                kind="finetune-name",
            )
    return name


def profile_data(
    name: str,
    base: BaseModel,
    lora_dir: Path,
    *,
    weight: float = 1.0,
    trigger_words: tuple[str, ...] = (),
    description: str = "",
    sample_image: Path | None = None,
) -> dict[str, Any]:
    """The JSON of the fine-tuned profile (see the module docstring)."""
    builtins = models.builtin_profiles()
    generator: dict[str, Any] = {"options": {"name": f"{base.name}+{name}"}}
    if (
        base.profile is not None
        and base.profile.name in builtins
        and base.profile == builtins[base.profile.name]
    ):
        data: dict[str, Any] = {"extends": base.profile.name}
    elif base.profile is not None:  # a user profile: its roles as they are now
        data = {
            k: v
            for k, v in base.profile.to_dict().items()
            if k not in ("name", "domain_lora", "sample_image")
        }
    else:
        data = {"extends": base.kind}  # the built-in of the base's kind supplies the other roles
        generator.update(kind=base.kind, source=str(base.path))
    roles = dict(data.get("roles", {}))
    roles["generator"] = {**roles.get("generator", {}), **generator}
    roles["generator"]["options"] = {**roles["generator"].get("options", {}), **generator["options"]}
    data["roles"] = roles
    words = ", ".join(trigger_words)
    data.update(
        name=name,
        made_by=MADE_BY,
        description=description
        or f"{base.name} fine-tuned on a captioned folder (domain LoRA{': ' + words if words else ''}).",
        domain_lora={"path": str(lora_dir), "weight": weight, "trigger_words": list(trigger_words)},
    )
    if sample_image is not None:
        data["sample_image"] = str(sample_image)
    return data


def register_profile(data: dict[str, Any]) -> Path:
    """Check ``data`` as a profile (``models.profile_from_dict``) and write it atomically."""
    models.profile_from_dict(data, name=data["name"], origin="the fine-tuned profile")
    target = paths.profiles_dir() / f"{data['name']}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def domain_lora_problem(profile: models.ModelProfile) -> str:
    """Why the profile's domain LoRA cannot be used here ("" when it can, or there is none)."""
    if profile.domain_lora is None:
        return ""
    from ..errors import AdapterError
    from ..optimizer.adapters import validate_adapter_dir

    folder = Path(profile.domain_lora.path).expanduser()
    try:
        validate_adapter_dir(folder)
    except AdapterError as exc:
        return exc.message
    return learned_words_problem(profile, folder)


def learned_words_problem(profile: models.ModelProfile, folder: Path) -> str:
    """Why the LoRA's learnt words (``learned_words.safetensors``) cannot go into this profile's
    text encoder ("" when they can, or there are none): read without loading the model."""
    import json

    from ..errors import AdapterError
    from .words import load_words

    width = None
    try:
        source = Path(profile.spec("generator").source).expanduser()
        config = json.loads((source / "text_encoder" / "config.json").read_text(encoding="utf-8"))
        width = int(config["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # no readable text-encoder config: the generator checks the width when it loads
    try:
        load_words(folder, width)
    except AdapterError as exc:
        return exc.message
    return ""
