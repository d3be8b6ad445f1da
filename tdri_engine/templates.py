"""The template files D2P and FR read (``resources/templates/*.json``): keyword lists, VLM aspect
instructions, question templates with their options, and the LLM chat prompts.

The structured summarizer, the Reflector and the evaluation's simulated users all read them
through :func:`default_templates` (read once); :func:`load_templates` reads another folder and
names the file that is bad.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import TdriError
from .settings import ASPECTS


@dataclass(frozen=True)
class Templates:
    """Everything D2P and FR read from ``resources/templates``: keyword lists, VLM aspect
    instructions, question templates with options, and the LLM chat prompts."""

    keywords: dict[str, list[str]]
    vlm: dict[str, Any]
    questions: dict[str, Any]
    llm: dict[str, Any]
    folder: Path | None = None


_TEMPLATE_FILES = {"keywords": "keywords.json", "vlm": "vlm_aspects.json", "questions": "questions.json",
                   "llm": "llm_prompts.json"}  # fmt: skip


def load_templates(folder: Path | None = None) -> Templates:
    """Read the template files (default: ``resources/templates``); say clearly which one is bad."""
    from .paths import resource_path

    folder = Path(folder) if folder is not None else resource_path("templates")
    data: dict[str, Any] = {}
    for key, name in _TEMPLATE_FILES.items():
        path = folder / name
        try:
            data[key] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TdriError(
                f"The template file {path} could not be read ({exc}).",
                "Restore resources/templates from the installation (or set TDRI_RESOURCES to a folder that has it).",
                kind="resources",
            ) from exc
    missing = [a for a in ASPECTS if a not in data["vlm"].get("instructions", {})]
    missing += [a for a in ASPECTS if a not in data["questions"].get("aspects", {})]
    if missing:
        raise TdriError(
            f"The templates in {folder} lack the aspects {sorted(set(missing))}.",
            "Every aspect needs a VLM instruction (vlm_aspects.json) and a question (questions.json).",
            kind="resources",
        )
    return Templates(folder=folder, **data)


_default_templates: Templates | None = None


def default_templates() -> Templates:
    """The installed templates, read once."""
    global _default_templates
    if _default_templates is None:
        _default_templates = load_templates()
    return _default_templates


QUESTIONS_NAME = re.compile(r"^[a-z0-9_]{1,40}$")
_questions_cache: dict[str, Templates] = {}


def questions_templates(name: str, base: Templates | None = None) -> Templates:
    """``base`` (default: the installed templates) with ``questions_<name>.json`` merged over its
    questions: a model profile's own one-click answers (``ModelProfile.questions``; the atelier
    profile's are the world's values, ``atelier/questions.py``). Per aspect, the keys the file
    gives (``options``, ``stated_by``, ``templates``) replace the generic ones; its top-level
    keys (``max_options``, ``shown_last``) replace questions.json's. An empty name is ``base``."""
    base = base or default_templates()
    if not name:
        return base
    if not isinstance(name, str) or not QUESTIONS_NAME.match(name):
        raise TdriError(
            f"The questions template name {name!r} is not a plain name.",
            "Name a file resources/templates/questions_<name>.json by its <name> (a-z, 0-9, _).",
            kind="resources",
        )
    cached = base is default_templates()  # the installed ones are read once, as default_templates
    if cached and name in _questions_cache:
        return _questions_cache[name]
    folder = base.folder if base.folder is not None else _installed_folder()
    path = folder / f"questions_{name}.json"
    try:
        extra = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(extra, dict) or not isinstance(extra.get("aspects", {}), dict):
            raise ValueError("not an object with 'aspects'")
        questions = {k: v for k, v in base.questions.items() if k != "aspects"}
        questions.update({k: v for k, v in extra.items() if k not in ("aspects", "_about")})
        aspects = {a: dict(spec) for a, spec in base.questions["aspects"].items()}
        for aspect, spec in extra.get("aspects", {}).items():
            if aspect not in aspects or not isinstance(spec, dict):
                raise ValueError(f"unknown aspect {aspect!r} or not an object")
            aspects[aspect].update(spec)
        for spec in aspects.values():
            for pattern in dict(spec.get("stated_by", {})).values():
                re.compile(pattern)
    except (OSError, ValueError, re.error) as exc:
        raise TdriError(
            f"The questions template {path} could not be read ({exc}).",
            "Restore resources/templates from the installation, or choose a profile without it.",
            kind="resources",
        ) from exc
    questions["aspects"] = aspects
    merged = Templates(base.keywords, base.vlm, questions, base.llm, base.folder)
    if cached:
        _questions_cache[name] = merged
    return merged


def _installed_folder() -> Path:
    from .paths import resource_path

    return resource_path("templates")


@dataclass(frozen=True)
class ChatTemplate:
    """A system + user message pair with ``{placeholders}``, from llm_prompts.json."""

    system: str
    user: str
    max_new_tokens: int = 60
    max_chars: int = 300

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChatTemplate:
        return cls(
            system=str(data["system"]),
            user=str(data["user"]),
            max_new_tokens=int(data.get("max_new_tokens", 60)),
            max_chars=int(data.get("max_chars", 300)),
        )

    def messages(self, **values: str) -> list[dict[str, str]]:
        # str.replace, not str.format: user text may hold braces of its own
        user = self.user
        for key, value in values.items():
            user = user.replace("{" + key + "}", value)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
