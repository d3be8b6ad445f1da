"""Domain records: plain dataclasses that round-trip through JSON.

Every record the project store holds is one of these. ``to_dict`` gives JSON-safe values;
``from_dict`` ignores keys it does not know (a newer build may have added fields) and fills
missing ones with defaults, so old projects keep opening.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

T = TypeVar("T", bound="Record")


def now_iso() -> str:
    """UTC timestamp with seconds, the one format every record uses."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_id() -> str:
    return uuid.uuid4().hex[:12]


class Choice(str, enum.Enum):
    """What the user said about two images shown side by side."""

    LEFT = "left"  # left image is better
    RIGHT = "right"  # right image is better
    TIE = "tie"  # equally good: kept, exported with label 0.5
    BOTH_BAD = "both_bad"  # kept as a record, but is not a preference pair


class Record:
    """Mixin giving JSON round-trips to the dataclasses below."""

    TABLE: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                value = value.value
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs = {k: v for k, v in data.items() if k in known}
        obj = cls(**kwargs)
        return obj

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass
class Task(Record):
    """One unit of annotation work: a single image or a pair shown side by side."""

    TABLE = "tasks"
    id: str = field(default_factory=new_id)
    name: str = ""
    images: list[str] = field(default_factory=list)  # ImageRecord ids, 1 or 2
    source: str = ""  # where the images came from: a folder, "generated", a dialogue
    category: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    status: str = "todo"  # "todo" | "done"
    created: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)

    @property
    def kind(self) -> str:
        return "pair" if len(self.images) == 2 else "single"


@dataclass
class Annotation(Record):
    """An annotator's work on one task: a description and tags per image."""

    TABLE = "annotations"
    task_id: str = ""
    descriptions: dict[str, str] = field(default_factory=dict)  # image id -> text
    tags: dict[str, list[str]] = field(default_factory=dict)  # image id -> tags
    choice: str | None = None  # a Choice value when the task is a pair and the user chose
    annotator: str = ""
    updated: str = field(default_factory=now_iso)

    @property
    def id(self) -> str:  # one annotation per task
        return self.task_id


@dataclass
class Dialogue(Record):
    """A refinement conversation (paper: the dialogue history H_t lives in its turns)."""

    TABLE = "dialogues"
    id: str = field(default_factory=new_id)
    task_id: str | None = None
    title: str = ""
    initial_prompt: str = ""
    pose_file: str | None = None  # smoothed pose map kept from round 0, relative to the project
    settings: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=now_iso)


@dataclass
class DialogueTurn(Record):
    """One round of the dialogue: what the user said, what the system made of it."""

    TABLE = "turns"
    id: str = field(default_factory=new_id)
    dialogue_id: str = ""
    round: int = 0
    kind: str = "prompt"  # "prompt" | "answer" | "skip" | "feedback"
    user_input: str = ""  # u_t
    system_response: str = ""  # r_t
    prompt: str = ""  # P_t, the prompt the generator got
    question: str | None = None  # clarification question asked after this round, if any
    question_aspect: str | None = None
    # the question's one-click answers, kept so a reopened dialogue offers them again
    # (absent in projects written before they were stored: no buttons, the question still shows)
    question_options: list[str] = field(default_factory=list)
    aspect_scores: dict[str, float] = field(default_factory=dict)  # s_i per aspect
    ambiguity: float | None = None  # A = sum w_i (1 - s_i)
    image_id: str | None = None
    created: str = field(default_factory=now_iso)
    # the round's scores for the designer, measured once after the round (round_metrics.py);
    # {} until measured and in projects written before they were stored
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImageRecord(Record):
    """An image the project holds, with its provenance (also written into the PNG)."""

    TABLE = "images"
    id: str = field(default_factory=new_id)
    file: str = ""  # relative to the project folder, e.g. "images/ab12cd34ef56.png"
    prompt: str = ""
    negative_prompt: str = ""
    seed: int | None = None
    round: int | None = None
    model: str = ""
    adapter_version: str | None = None
    width: int = 0
    height: int = 0
    steps: int | None = None
    guidance: float | None = None
    origin: str = "generated"  # "generated" | "imported"
    source_path: str | None = None  # for imported images: where it was loaded from
    dialogue_id: str | None = None
    parent_id: str | None = None  # the image a refinement round edited
    name: str = ""
    created: str = field(default_factory=now_iso)


@dataclass
class PreferencePair(Record):
    """The user's choice between two images. ``both_bad`` is kept but is no training pair."""

    TABLE = "preferences"
    id: str = field(default_factory=new_id)
    prompt: str = ""
    image_left: str = ""  # ImageRecord ids: rounds as shown; an annotation task's images[0], [1]
    image_right: str = ""
    choice: str = Choice.LEFT.value
    source: str = "studio"  # "studio" | "cli" | "annotation"
    dialogue_id: str | None = None
    task_id: str | None = None
    train_meta: dict[str, Any] = field(default_factory=dict)  # seeds, settings, latents file ...
    used_in: list[str] = field(default_factory=list)  # adapter versions trained on it
    created: str = field(default_factory=now_iso)

    @property
    def is_pair(self) -> bool:
        return self.choice != Choice.BOTH_BAD.value

    @property
    def winner(self) -> str | None:
        return {"left": self.image_left, "right": self.image_right}.get(self.choice)

    @property
    def loser(self) -> str | None:
        return {"left": self.image_right, "right": self.image_left}.get(self.choice)

    @property
    def label_0(self) -> float | None:
        """Pick-a-Pic convention: 1.0 when image 0 (left) wins, 0.5 for a tie."""
        return {"left": 1.0, "right": 0.0, "tie": 0.5}.get(self.choice)


@dataclass
class AdapterVersion(Record):
    """One LoRA adapter version under ``loras/vNNNN/`` (diffusers-format safetensors)."""

    TABLE = "adapters"
    id: str = ""  # "v0001"
    parent: str | None = None
    scope: str = "project"  # "project" (sample-specific) | "user" (generalised)
    path: str = ""  # relative to the project (or the user folder for scope "user")
    pairs_used: int = 0
    steps: int = 0
    loss_curve: list[float] = field(default_factory=list)
    implicit_accuracy: float | None = None
    status: str = "ok"  # "ok" | "suspect" | "rolled_back"
    note: str = ""
    created: str = field(default_factory=now_iso)


ALL_RECORDS: tuple[type[Record], ...] = (
    Task,
    Annotation,
    Dialogue,
    DialogueTurn,
    ImageRecord,
    PreferencePair,
    AdapterVersion,
)
