"""What the refinement view shows, as plain values: rounds, the comparison, personalisation.

Made off the GUI thread (images already decoded) and handed to the GUI by the engine thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PySide6.QtGui import QImage


@dataclass
class RoundView:
    """One round as the view shows it (images already decoded, off the GUI thread)."""

    round: int
    image_id: str
    image_path: str
    prompt: str
    kind: str = "prompt"
    user_input: str = ""
    system_response: str = ""
    question: str | None = None
    question_aspect: str | None = None
    options: tuple[str, ...] = ()
    scores: dict[str, float] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    ambiguity: float | None = None
    threshold: float | None = None
    seed: int | None = None
    adapter_version: str | None = None
    warnings: tuple[str, ...] = ()
    pose_found: bool = False
    image: QImage | None = None
    thumb: QImage | None = None
    pose_map: QImage | None = None  # round 0 only: the smoothed pose map kept for later rounds
    label: str = ""  # shown under the thumbnail

    @property
    def title(self) -> str:
        return self.label or f"Round {self.round}"


@dataclass
class Personalisation:
    """The "k of N choices until the next update" panel and the adapter versions."""

    remaining: int | None = None  # k
    every: int = 40  # N
    active: str | None = None
    versions: list[Any] = field(default_factory=list)  # AdapterVersion records, oldest first
    available: bool = True
    note: str = ""
    scope: str = "project"  # "project": this project's adapter; "user": the user's, across projects
    can_compare: bool = False  # an active adapter with its weights on disk


@dataclass
class Comparison:
    """Two images side by side that a choice can be recorded for (rounds or a base/adapted pair)."""

    left: RoundView | None
    right: RoundView | None
