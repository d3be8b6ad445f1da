"""The engine's face to the studio and the CLI: user replies, round results, and the protocols
that the real engine (``tdri_engine.session``) and any scripted stand-in implement.

Calls are blocking and meant for one worker thread that owns the models; progress and results
also arrive as events (``tdri_engine.events``) through the ``on_event`` sink given at open time.
Every long call takes a ``CancelToken`` and raises ``Cancelled`` when it is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Union

from .events import CancelToken, EventSink, Question, Reflection
from .records import AdapterVersion, Choice, DialogueTurn, ImageRecord, PreferencePair
from .settings import EngineSettings

if TYPE_CHECKING:  # these import the store and the models' modules: for the type checker only
    from .generator import GenerationResult
    from .models import RoleStatus
    from .round_metrics import RoundMetrics
    from .store.project import ProjectStore


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

    @property
    def dialogue_id(self) -> str | None:
        """The dialogue's record id (None only before a reopened dialogue was found)."""

    @property
    def rounds(self) -> list[RoundResult]: ...

    @property
    def pending_question(self) -> Question | None: ...

    def start(
        self, prompt: str, *, seed: int | None = None, cancel: CancelToken | None = None
    ) -> RoundResult:
        """Round 0: generate from the prompt, extract and smooth the pose, reflect."""

    def refine(
        self, reply: Reply, *, cancel: CancelToken | None = None, reference: int | None = None
    ) -> RoundResult:
        """Round t >= 1: summarize the dialogue, generate with the pose, reflect, maybe ask.
        ``reference``: the round whose image is edited (default the latest)."""

    def choose(self, left_image_id: str, right_image_id: str, choice: Choice) -> PreferencePair:
        """Record the user's choice between two images as a preference (both_bad included)."""


class GeneratorAPI(Protocol):
    """The engine's one text-to-image generator (its pipelines and active LoRA are shared)."""

    settings: EngineSettings  # size, steps, guidance...: set before a call, read by it

    def generate(
        self,
        prompt: str,
        *,
        seed: int,
        adapter_dir: Path | None = None,
        cancel: CancelToken | None = None,
        on_event: EventSink | None = None,
    ) -> GenerationResult:
        """One image; ``adapter_dir`` a LoRA version folder, None for the base model."""


class EngineAPI(Protocol):
    """Owns the models of one profile; loads each lazily, in the calling (worker) thread.

    Everything the studio and the CLI ask of an engine; the real one is
    ``tdri_engine.session.Engine``. Projects are passed as the store that holds them
    (``tdri_engine.store.ProjectStore``); nothing here keeps one after the call returns,
    except a session, which holds its store until it is dropped.
    """

    @property
    def profile_name(self) -> str: ...

    @property
    def is_demo(self) -> bool: ...

    @property
    def generator(self) -> GeneratorAPI: ...

    def close(self) -> None:
        """Drop every loaded model; they load again on next use."""

    def check_models(self) -> list[RoleStatus]:
        """One status per role of the profile: found where, or missing and how to fix it."""

    def ensure_models(self, on_event: EventSink | None = None) -> list[RoleStatus]:
        """Build the demo models on first run; ``ModelMissing`` for a missing required role."""

    def prepare(
        self, *, on_event: EventSink | None = None, cancel: CancelToken | None = None
    ) -> list[RoleStatus]:
        """:meth:`ensure_models`, then load the models a round uses (the one-time engine load)."""

    def session_settings(self, settings: EngineSettings) -> tuple[EngineSettings, list[str]]:
        """A project's settings within the profile's limits, and a note per value capped."""

    def open_session(
        self,
        store: ProjectStore,
        *,
        task_id: str | None = None,
        dialogue_id: str | None = None,
        on_event: EventSink | None = None,
    ) -> SessionAPI:
        """A new dialogue in ``store``, or the past one ``dialogue_id`` reopened."""

    def train(
        self, store: ProjectStore, *, cancel: CancelToken | None = None, on_event: EventSink | None = None
    ) -> AdapterVersion | None:
        """One preference-optimisation update of the project's LoRA; the new version, if any."""

    def compare_base_adapted(
        self,
        store: ProjectStore,
        prompt: str,
        *,
        seed: int | None = None,
        cancel: CancelToken | None = None,
        on_event: EventSink | None = None,
    ) -> tuple[ImageRecord, ImageRecord]:
        """The same prompt and seed without and with the active adapter, both saved."""

    def measure_round(
        self, store: ProjectStore, image_id: str, *, cancel: CancelToken | None = None
    ) -> RoundMetrics:
        """The scores of the round whose image is ``image_id`` (T2I CLIP, BLIP where the profile
        has it, I2I CLIP against the image the round started from), each with its scale
        (``tdri_engine.round_metrics``); measured once and stored with the round."""
