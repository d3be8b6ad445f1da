"""A scripted engine for studio tests: the EngineAPI / SessionAPI of ``tdri_engine.api``.

It does what the studio relies on, for real, without models: it writes dialogues, turns and
images (drawn with PIL: a garment whose colour follows the prompt) into the project store,
emits the same events the real engine emits (progress per step, previews, pose, reflection,
questions), honours the cancel token between steps, and records preferences. What it does not
do is diffusion: each round's ambiguity, question and failure come from a script, so a test
can say "round 1 asks about Color, round 2 raises an error inside the engine".
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageStat

from tdri_engine import api
from tdri_engine.errors import BadInput
from tdri_engine.events import (
    CancelToken,
    EventSink,
    Finished,
    ImageReady,
    PoseReady,
    Preview,
    Progress,
    PromptReady,
    Question,
    Reflection,
    TrainingProgress,
    ignore_events,
)
from tdri_engine.generator import GenerationResult  # the real result type: no Qt, no torch
from tdri_engine.models import RoleStatus
from tdri_engine.records import (
    AdapterVersion,
    Choice,
    Dialogue,
    DialogueTurn,
    ImageRecord,
    PreferencePair,
)
from tdri_engine.settings import ASPECTS, EngineSettings

COLOURS = {
    "red": (196, 40, 52),
    "blue": (40, 80, 190),
    "navy": (28, 42, 92),
    "green": (22, 128, 86),
    "black": (30, 30, 34),
    "white": (236, 236, 230),
    "pink": (232, 150, 170),
    "yellow": (224, 190, 40),
}


@dataclass
class ScriptedRound:
    """What one round does. ``fail`` is raised inside the engine at the middle step."""

    ambiguity: float = 0.2
    ask: tuple[str, str, tuple[str, ...]] | None = None  # aspect, question, one-click options
    fail: BaseException | None = None
    steps: int = 6
    step_delay: float = 0.0
    pose_found: bool = True
    response: str = ""


def draw_garment(prompt: str, seed: int, round_: int, size: int = 128) -> Image.Image:
    """A recognisable picture for a prompt: the first colour word colours a dress shape."""
    colour = next((c for w, c in COLOURS.items() if w in prompt.lower()), (150, 150, 150))
    bg = (230 - (seed * 13) % 40, 226 - (round_ * 17) % 40, 220)
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    s = size / 128
    long = "long" in prompt.lower() or "maxi" in prompt.lower()
    hem = 120 if long else 100
    d.polygon([(54 * s, 20 * s), (74 * s, 20 * s), (96 * s, hem * s), (32 * s, hem * s)], fill=colour)
    d.ellipse([58 * s, 6 * s, 70 * s, 18 * s], fill=(200, 170, 150))
    d.text((4, 4), f"r{round_}", fill=(0, 0, 0))
    return im


def draw_pose(size: int = 128) -> Image.Image:
    im = Image.new("RGB", (size, size), (0, 0, 0))
    d = ImageDraw.Draw(im)
    pts = [(64, 12), (64, 40), (44, 60), (84, 60), (64, 80), (50, 120), (78, 120)]
    for a, b in ((0, 1), (1, 2), (1, 3), (1, 4), (4, 5), (4, 6)):
        d.line([pts[a], pts[b]], fill=(255, 200, 0), width=4)
    return im


class FakeSession:
    def __init__(
        self,
        engine: FakeEngine,
        store: Any,
        *,
        task_id: str | None,
        dialogue_id: str | None,
        on_event: EventSink | None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.task_id = task_id
        self.emit = on_event or ignore_events
        self._rounds: list[api.RoundResult] = []
        self._pending: Question | None = None
        self._answers: list[str] = []
        self.references: list[int | None] = []  # the reference round each refine was asked to edit
        if dialogue_id is not None:
            dialogue = store.get(Dialogue, dialogue_id)
            if dialogue is None:
                raise BadInput(
                    f"There is no dialogue {dialogue_id} in this project.", "Start a new dialogue."
                )
            self.dialogue = dialogue
            self._restore()
        else:
            self.dialogue = Dialogue(task_id=task_id, title="")
        self.dialogue_id = self.dialogue.id

    # -- SessionAPI -----------------------------------------------------------------------
    @property
    def rounds(self) -> list[api.RoundResult]:
        return list(self._rounds)

    @property
    def pending_question(self) -> Question | None:
        return self._pending

    def start(
        self, prompt: str, *, seed: int | None = None, cancel: CancelToken | None = None
    ) -> api.RoundResult:
        if not prompt.strip():
            raise BadInput("The prompt is empty.", "Type what you want to see.")
        self.engine.calls.append(("start", threading.get_ident()))
        self.dialogue = self.dialogue.replace(initial_prompt=prompt, title=prompt[:60])
        self.seed = 1234 if seed is None else seed
        return self._round(prompt, "prompt", prompt, cancel)

    def refine(
        self, reply: api.Reply, *, cancel: CancelToken | None = None, reference: int | None = None
    ) -> api.RoundResult:
        self.engine.calls.append(("refine", threading.get_ident()))
        self.references.append(reference)
        if not self._rounds:
            raise BadInput("There is no round to refine yet.", "Generate a first image.")
        last = self._rounds[-1].prompt
        if isinstance(reply, api.PromptEdit):
            prompt, kind, said = reply.prompt, "feedback", reply.prompt
        elif isinstance(reply, api.Answer):
            self._answers.append(reply.text)
            prompt, kind, said = f"{last}, {reply.text}", "answer", reply.text
        elif isinstance(reply, api.Feedback):
            prompt, kind, said = f"{last}, {reply.text}", "feedback", reply.text
        else:
            prompt, kind, said = last, "skip", ""
        self.emit(PromptReady(len(self._rounds), prompt))
        return self._round(prompt, kind, said, cancel)

    def choose(self, left_image_id: str, right_image_id: str, choice: Choice) -> PreferencePair:
        self.engine.calls.append(("choose", threading.get_ident()))
        for iid in (left_image_id, right_image_id):
            if self.store.get(ImageRecord, iid) is None:
                raise BadInput(
                    f"There is no image {iid} in this project.", "Pick two images of this dialogue."
                )
        pair = PreferencePair(
            prompt=self._rounds[-1].prompt if self._rounds else "",
            image_left=left_image_id,
            image_right=right_image_id,
            choice=Choice(choice).value,
            source="studio",
            dialogue_id=self.dialogue_id,
            task_id=self.task_id,
            train_meta={"seed": getattr(self, "seed", None)},
        )
        self.store.put(pair)
        return pair

    # -- the round ------------------------------------------------------------------------
    def _round(self, prompt: str, kind: str, said: str, cancel: CancelToken | None) -> api.RoundResult:
        n = len(self._rounds)
        script = self.engine.next_script()
        cancel = cancel or CancelToken()
        steps = script.steps
        for step in range(1, steps + 1):
            cancel.raise_if_cancelled()
            if script.fail is not None and step == max(1, steps // 2):
                raise script.fail
            if script.step_delay:
                time.sleep(script.step_delay)
            self.emit(Progress("generate", step, steps))
            if step % 2 == 0:
                self.emit(Preview(draw_garment(prompt, self.seed, n, 64), step, steps))
        cancel.raise_if_cancelled()
        image = draw_garment(prompt, self.seed, n)
        # Nothing is written before the last cancel check: a cancelled round leaves no trace.
        if n == 0:
            self.store.put(self.dialogue)
        record = self.store.add_image(
            image,
            ImageRecord(
                prompt=prompt,
                seed=self.seed,
                round=n,
                model="fake-engine",
                dialogue_id=self.dialogue_id,
                parent_id=self._rounds[-1].image.id if self._rounds else None,
                steps=steps,
                adapter_version=self.store.get_meta("active_adapter"),
            ),
        )
        path = self.store.image_path(record)
        self.emit(ImageReady(record, str(path), n))
        if n == 0:
            pose_path = None
            if script.pose_found:
                pose_file = f"images/pose-{self.dialogue_id}.png"
                draw_pose().save(self.store.path / pose_file)
                pose_path = str(self.store.path / pose_file)
                self.dialogue = self.dialogue.replace(pose_file=pose_file)
                self.store.put(self.dialogue)
            self.emit(
                PoseReady(script.pose_found, "" if script.pose_found else "No person found.", pose_path)
            )
        scores = {a: 0.9 for a in ASPECTS}
        asked = script.ask
        if asked:
            scores[asked[0]] = 0.2
        ambiguity = script.ambiguity
        captions = {a: f"{a.lower()} of {prompt}" for a in ASPECTS}
        tau = self.store.settings.tau
        reflection = Reflection(captions, scores, ambiguity, tau, asks=bool(asked))
        self.emit(reflection)
        question = None
        if asked:
            question = Question(asked[0], asked[1], scores, ambiguity, tuple(asked[2]))
            self.emit(question)
        self._pending = question
        turn = DialogueTurn(
            dialogue_id=self.dialogue_id,
            round=n,
            kind=kind,
            user_input=said,
            system_response=script.response or f"Here is round {n}.",
            prompt=prompt,
            question=question.text if question else None,
            question_aspect=question.aspect if question else None,
            question_options=list(question.options) if question else [],
            aspect_scores=scores,
            ambiguity=ambiguity,
            image_id=record.id,
        )
        self.store.put(turn)
        result = api.RoundResult(
            round=n,
            turn=turn,
            image=record,
            image_path=str(path),
            prompt=prompt,
            reflection=reflection,
            question=question,
            pose_found=script.pose_found,
        )
        self._rounds.append(result)
        self.emit(Finished("round", n))
        return result

    def _restore(self) -> None:
        turns = self.store.find(DialogueTurn, lambda d: d.get("dialogue_id") == self.dialogue.id)
        for t in sorted(turns, key=lambda t: t.round):
            rec = self.store.get(ImageRecord, t.image_id)
            self.seed = rec.seed if rec and rec.seed is not None else 1234
            self._rounds.append(api.RoundResult(t.round, t, rec, str(self.store.image_path(rec)), t.prompt))
            if t.question:
                self._pending = Question(
                    t.question_aspect or "Others", t.question, t.aspect_scores, t.ambiguity or 0
                )
            else:
                self._pending = None


class FakeGenerator:
    """``engine.generator.generate``: an adapter visibly changes the picture (warmer colours)."""

    def __init__(self) -> None:
        self.settings = EngineSettings()
        self.calls: list[tuple[str, int, str | None]] = []

    def generate(
        self,
        prompt: str,
        *,
        seed: int,
        adapter_dir: Any = None,
        cancel: CancelToken | None = None,
        on_event: EventSink | None = None,
        **_: Any,
    ) -> GenerationResult:
        emit = on_event or ignore_events
        for step in range(1, 5):
            if cancel is not None:
                cancel.raise_if_cancelled()
            emit(Progress("generate", step, 4))
        image = draw_garment(prompt, seed, 0)
        adapter = Path(adapter_dir).name if adapter_dir else None
        if adapter:
            r, g, b = image.split()
            image = Image.merge("RGB", (r.point(lambda v: min(255, v + 40)), g, b))
        self.calls.append((prompt, seed, adapter))
        return GenerationResult(image, seed, 4, image.width, image.height, "fake-engine", adapter)


class FakeClip:
    """A scorer with CLIP's interface and scale (0-1) that reads pixels, not meaning: text vs
    image = how close the image's mean colour is to the first colour the text names (0.5 when
    it names none); image vs image = 1 - mean absolute pixel difference / 255."""

    @staticmethod
    def _mean(image: Image.Image) -> tuple[float, float, float]:
        r, g, b = ImageStat.Stat(image.convert("RGB")).mean
        return float(r), float(g), float(b)

    def image_text_with_warnings(
        self, image: Image.Image, texts: list[str]
    ) -> tuple[list[float], tuple[str, ...]]:
        mean = self._mean(image)
        out = []
        for text in texts:
            named = next((rgb for name, rgb in COLOURS.items() if name in text.lower()), None)
            if named is None:
                out.append(0.5)
                continue
            dist = sum((a - b) ** 2 for a, b in zip(mean, named, strict=True)) ** 0.5 / (3 * 255**2) ** 0.5
            out.append(round(1.0 - dist, 6))
        return out, ()

    def image_image(self, a: Image.Image, b: Image.Image) -> float:
        pa = a.convert("RGB").resize((16, 16)).tobytes()
        pb = b.convert("RGB").resize((16, 16)).tobytes()
        return 1.0 - sum(abs(x - y) for x, y in zip(pa, pb, strict=True)) / (255.0 * len(pa))


@dataclass
class FakeEngine:
    """EngineAPI for tests. ``script`` gives each round attempt's behaviour (the last repeats)."""

    script: list[ScriptedRound] = field(default_factory=lambda: [ScriptedRound()])
    missing_roles: tuple[str, ...] = ()
    create_error: BaseException | None = None
    profile_name: str = "fake"
    is_demo: bool = True
    calls: list[tuple[str, int]] = field(default_factory=list)
    sessions: list[FakeSession] = field(default_factory=list)
    generator: FakeGenerator = field(default_factory=FakeGenerator)
    train_steps: int = 2
    train_step_delay: float = 0.0  # seconds per training step (to hold the store a while)

    def session_settings(self, settings: EngineSettings) -> tuple[EngineSettings, list[str]]:
        return settings, []

    def close(self) -> None:
        self.calls.append(("close", threading.get_ident()))

    attempts: int = 0

    def next_script(self) -> ScriptedRound:
        """Each round attempt (a cancelled or failed one too) takes the next entry."""
        entry = self.script[min(self.attempts, len(self.script) - 1)]
        self.attempts += 1
        return entry

    def check_models(self) -> list[RoleStatus]:
        out = []
        for role in ("generator", "controlnet", "pose", "vlm", "clip", "blip", "llm"):
            missing = role in self.missing_roles
            out.append(
                RoleStatus(
                    role=role,
                    kind="fake",
                    source=f"/models/{role}",
                    found=not missing,
                    path=None if missing else f"/models/{role}",
                    looked_in=[f"/models/{role}"],
                    what_to_do=f"Copy the {role} model into /models/{role}." if missing else "",
                    required=True,
                )
            )
        return out

    def ensure_models(self, on_event: EventSink | None = None) -> list[RoleStatus]:
        self.calls.append(("ensure_models", threading.get_ident()))
        (on_event or ignore_events)(Progress("load", 1, 1, "fake models ready"))
        return self.check_models()

    def prepare(
        self, *, on_event: EventSink | None = None, cancel: CancelToken | None = None
    ) -> list[RoleStatus]:
        """Nothing to load: the fake models are ready once ``ensure_models`` said so."""
        self.ensure_models(on_event)
        return self.check_models()

    def compare_base_adapted(
        self,
        store: Any,
        prompt: str,
        *,
        seed: int | None = None,
        cancel: CancelToken | None = None,
        on_event: EventSink | None = None,
    ) -> tuple[ImageRecord, ImageRecord]:
        """Base and adapted images from the fake generator, saved like the real engine saves them."""
        from tdri_engine.optimizer import adapters

        adapter_dir = adapters.active_adapter_dir(store)
        if adapter_dir is None:
            raise BadInput("No adapter is active.", "Switch to an adapter version.")
        seed = int(seed if seed is not None else 0)
        out = []
        for title, folder in (("base", None), ("adapted", adapter_dir)):
            res = self.generator.generate(
                prompt, seed=seed, adapter_dir=folder, cancel=cancel, on_event=on_event
            )
            out.append(store.add_image(res.image, res.image_record(prompt, store.settings, name=title)))
        return out[0], out[1]

    def measure_round(self, store: Any, image_id: str, *, cancel: CancelToken | None = None) -> Any:
        """The round's scores through the engine's own ``round_metrics`` (stored with the turn),
        measured by :class:`FakeClip`; ``calls`` gets ("measure", thread) only when the scorer
        runs, so a test can tell a stored round from a measured one."""
        from tdri_engine.round_metrics import Scorers, measure_round

        def clip() -> FakeClip:
            self.calls.append(("measure", threading.get_ident()))
            return FakeClip()

        scorers = Scorers(
            clip=clip, profile=self.profile_name, models={"clip": "fake-clip"}, random_weights=True
        )
        return measure_round(scorers, store, image_id, cancel=cancel)

    def open_session(
        self,
        store: Any,
        *,
        task_id: str | None = None,
        dialogue_id: str | None = None,
        on_event: EventSink | None = None,
    ) -> FakeSession:
        if self.create_error is not None:
            raise self.create_error
        session = FakeSession(self, store, task_id=task_id, dialogue_id=dialogue_id, on_event=on_event)
        self.sessions.append(session)
        return session

    def train(
        self, store: Any, *, cancel: CancelToken | None = None, on_event: EventSink | None = None
    ) -> AdapterVersion:
        """A new adapter version over the unused decisive pairs: records, meta and a tiny LoRA
        file the optimizer's checks accept (zero weights: this engine learns nothing)."""
        pairs = [p for p in store.all(PreferencePair) if p.choice in ("left", "right") and not p.used_in]
        if len(pairs) < 2:
            raise BadInput("Fewer than 2 preference pairs: no update.", "Make more choices first.")
        n = len(store.all(AdapterVersion)) + 1
        version = AdapterVersion(
            id=f"v{n:04d}",
            parent=store.get_meta("active_adapter"),
            path=f"loras/v{n:04d}",
            pairs_used=len(pairs),
            steps=2,
            loss_curve=[0.693, 0.69],
            implicit_accuracy=0.6,
        )
        # like the real trainer: the store is read above, each step checks the cancel token,
        # and nothing is written before the last step is done
        for step in range(1, self.train_steps + 1):
            if cancel is not None:
                cancel.raise_if_cancelled()
            time.sleep(self.train_step_delay)
            (on_event or ignore_events)(TrainingProgress(step, self.train_steps, 0.69, 0.6))
        if cancel is not None:
            cancel.raise_if_cancelled()
        write_tiny_lora(store.path / version.path)
        store.put_many([version, *[p.replace(used_in=[version.id]) for p in pairs]])
        store.set_meta("active_adapter", version.id)
        return version


def write_tiny_lora(folder: Path, rank: int = 2) -> None:
    """A real (tiny) diffusers-format UNet LoRA file, so the optimizer's checks accept it."""
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    base = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    save_file(
        {
            f"{base}.lora.down.weight": np.zeros((rank, 32), dtype=np.float32),
            f"{base}.lora.up.weight": np.zeros((32, rank), dtype=np.float32),
        },
        str(folder / "pytorch_lora_weights.safetensors"),
    )


def as_engine(engine: FakeEngine) -> api.EngineAPI:
    """The fake is an ``api.EngineAPI``: the type checker proves it here (tests/test_types.py)."""
    return engine
