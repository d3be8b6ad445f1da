"""The engine's face to the studio and the CLI: user replies, round results, and the protocols
that the real engine (``tdri_engine.session``) and any scripted stand-in implement.

Calls are blocking and meant for one worker thread that owns the models; progress and results
also arrive as events (``tdri_engine.events``) through the ``on_event`` sink given at open time.
Every long call takes a ``CancelToken`` and raises ``Cancelled`` when it is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Union

from .events import CancelToken, EventSink, Question, Reflection
from .records import Choice, DialogueTurn, ImageRecord, PreferencePair


@dataclass(frozen=True)
class Answer:
    """The user's answer to the pending clarification question."""

    aspect: str
    text: str


@dataclass(frozen=True)
class Skip:
    """The user skipped the pending question; the next round reuses the prompt."""


@dataclass(frozen=True)
class Feedback:
    """Free feedback typed by the user ("make it longer", "no belt")."""

    text: str


@dataclass(frozen=True)
class PromptEdit:
    """The user edited the Summarizer's prompt by hand; it is used as P_t verbatim."""

    prompt: str


Reply = Union[Answer, Skip, Feedback, PromptEdit]


@dataclass(frozen=True)
class RoundResult:
    """Everything one round produced, already written to the project store."""

    round: int
    turn: DialogueTurn
    image: ImageRecord
    image_path: str
    prompt: str
    reflection: Reflection | None = None
    question: Question | None = None  # asked when ambiguity > tau
    pose_found: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)


class SessionAPI(Protocol):
    """One refinement dialogue bound to a project (and optionally a task)."""

    dialogue_id: str

    @property
    def rounds(self) -> list[RoundResult]: ...

    @property
    def pending_question(self) -> Question | None: ...

    def start(
        self, prompt: str, *, seed: int | None = None, cancel: CancelToken | None = None
    ) -> RoundResult:
        """Round 0: generate from the prompt, extract and smooth the pose, reflect."""

    def refine(self, reply: Reply, *, cancel: CancelToken | None = None) -> RoundResult:
        """Round t >= 1: summarize the dialogue, generate with the pose, reflect, maybe ask."""

    def choose(self, left_image_id: str, right_image_id: str, choice: Choice) -> PreferencePair:
        """Record the user's choice between two images as a preference (both_bad included)."""


class EngineAPI(Protocol):
    """Owns the models of one profile; loads each lazily, in the calling (worker) thread."""

    @property
    def profile_name(self) -> str: ...

    @property
    def is_demo(self) -> bool: ...

    def open_session(
        self,
        store,
        *,
        task_id: str | None = None,
        dialogue_id: str | None = None,
        on_event: EventSink | None = None,
    ) -> SessionAPI: ...

    def check_models(self) -> list: ...
