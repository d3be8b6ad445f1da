"""Tag vocabularies: the shipped sets in ``resources/tags/`` and a project's own copy.

A project starts from one shipped set (general or fashion), then grows or shrinks it; the
vocabulary lives in the project's metadata (``tag_vocabulary``), so it travels with the
project folder. Tags are normalised (trimmed, lower case, single spaces): the paper's
consistency guideline asks for one term per feature, and "Red " vs "red" would be two.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from tdri_engine import paths

log = logging.getLogger(__name__)

META_KEY = "tag_vocabulary"
CUSTOM_GROUP = "custom"
DEFAULT_SET = "general"


def normalise_tag(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def guess_set(texts: list[str]) -> str:
    """The shipped set for a project that never chose one: fashion when its tasks name
    garments (the sample project does), general otherwise."""
    garments = set(TagVocabulary.from_set("fashion").groups.get("garment", []))
    words = {w for t in texts for w in re.split(r"[^a-z-]+", t.lower()) if w}
    return "fashion" if garments & words else DEFAULT_SET


def available_sets() -> dict[str, str]:
    """Shipped tag sets: file stem -> display name."""
    out: dict[str, str] = {}
    folder = paths.resource_path("tags")
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out[p.stem] = json.loads(p.read_text(encoding="utf-8")).get("name", p.stem)
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable tag set %s: %s", p, exc)
    return out


@dataclass
class TagVocabulary:
    set_name: str = DEFAULT_SET
    groups: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_set(cls, name: str) -> TagVocabulary:
        p = paths.resource_path("tags", f"{name}.json")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("tag set %s unreadable (%s); starting empty", p, exc)
            return cls(set_name=name, groups={})
        groups = {
            str(g): _dedupe(normalise_tag(t) for t in tags) for g, tags in data.get("groups", {}).items()
        }
        return cls(set_name=name, groups=groups)

    @classmethod
    def from_meta(cls, value: Any) -> TagVocabulary | None:
        if not isinstance(value, dict) or not isinstance(value.get("groups"), dict):
            return None
        groups = {str(g): _dedupe(normalise_tag(str(t)) for t in v) for g, v in value["groups"].items()}
        return cls(set_name=str(value.get("set", DEFAULT_SET)), groups=groups)

    def to_meta(self) -> dict[str, Any]:
        return {"set": self.set_name, "groups": {g: list(v) for g, v in self.groups.items()}}

    def all_tags(self) -> list[str]:
        return _dedupe(t for tags in self.groups.values() for t in tags)

    def __contains__(self, tag: str) -> bool:
        tag = normalise_tag(tag)
        return any(tag in tags for tags in self.groups.values())

    def add(self, tag: str, group: str = CUSTOM_GROUP) -> str:
        """Add a tag (normalised) unless present; returns the normalised tag."""
        tag = normalise_tag(tag)
        if tag and tag not in self:
            self.groups.setdefault(group, []).append(tag)
        return tag

    def remove(self, tag: str) -> bool:
        tag = normalise_tag(tag)
        found = False
        for g in list(self.groups):
            if tag in self.groups[g]:
                self.groups[g].remove(tag)
                found = True
            if not self.groups[g] and g == CUSTOM_GROUP:
                del self.groups[g]
        return found

    def merged_with(self, other_set: str) -> TagVocabulary:
        """This vocabulary plus every tag of another shipped set (nothing removed)."""
        merged = TagVocabulary(set_name=other_set, groups={g: list(v) for g, v in self.groups.items()})
        for g, tags in TagVocabulary.from_set(other_set).groups.items():
            for t in tags:
                if t not in merged:
                    merged.groups.setdefault(g, []).append(t)
        return merged


def _dedupe(items: Any) -> list[str]:
    seen: dict[str, None] = {}
    for t in items:
        if t:
            seen.setdefault(t, None)
    return list(seen)
