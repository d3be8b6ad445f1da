"""Events the engine emits while it works, and the cooperative cancel token.

Every event is a small frozen value. The studio renders them; the CLI prints them. Images in
events are PIL images (the engine never touches Qt); the studio converts them on its side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union

from .errors import Cancelled


class CancelToken:
    """Set from any thread; long calls poll ``raise_if_cancelled`` between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()


@dataclass(frozen=True)
class Progress:
    stage: str  # "load", "generate", "pose", "reflect", "summarize", "train" ...
    step: int
    total: int
    message: str = ""


@dataclass(frozen=True)
class Preview:
    """A cheap look at the image being denoised (latents mapped to RGB, no VAE decode)."""

    image: Any  # PIL.Image.Image
    step: int
    total: int


@dataclass(frozen=True)
class PromptReady:
    """The Summarizer's prompt P_t for this round, with any warnings (e.g. truncation)."""

    round: int
    prompt: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageReady:
    record: Any  # records.ImageRecord
    path: str  # absolute path of the PNG
    round: int


@dataclass(frozen=True)
class PoseReady:
    found: bool
    message: str = ""
    pose_map_path: str | None = None  # absolute path of the smoothed pose map, when found


@dataclass(frozen=True)
class Question:
    """A clarification question about one ambiguous aspect (Feedback-Reflection)."""

    aspect: str
    text: str
    scores: dict[str, float] = field(default_factory=dict)  # s_i per aspect
    ambiguity: float = 0.0
    options: tuple[str, ...] = ()  # one-click answers the studio can offer


@dataclass(frozen=True)
class Reflection:
    """What the Reflector saw: captions and scores per aspect, and whether it will ask."""

    captions: dict[str, str]
    scores: dict[str, float]
    ambiguity: float
    threshold: float
    asks: bool


@dataclass(frozen=True)
class TrainingProgress:
    step: int
    total: int
    loss: float
    implicit_accuracy: float


@dataclass(frozen=True)
class AdapterReady:
    version: str
    suspect: bool = False
    message: str = ""


@dataclass(frozen=True)
class Warning_:
    message: str


@dataclass(frozen=True)
class Error:
    kind: str
    message: str
    what_to_do: str = ""


@dataclass(frozen=True)
class Finished:
    what: str  # "round", "training", ...
    round: int | None = None


Event = Union[
    Progress,
    Preview,
    PromptReady,
    ImageReady,
    PoseReady,
    Question,
    Reflection,
    TrainingProgress,
    AdapterReady,
    Warning_,
    Error,
    Finished,
]
EventSink = Callable[[Event], None]


def ignore_events(_event: Event) -> None:
    """Default sink."""
