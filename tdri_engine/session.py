"""The Engine and the RefinementSession: the paper's two phases as one dialogue loop.

Round 0 (Initial Generation Phase): generate I_0 from P_0, extract the pose K from I_0 and
smooth it (G_sigma), reflect (FR) and maybe ask a clarification question.
Round t >= 1 (Interactive Refinement Phase): summarize the dialogue into P_t (D2P), generate
with the kept pose, by editing I_{t-1} (default) or anew, rescue neglected subjects with
Attend-and-Excite when the image strays from the prompt, reflect and maybe ask.

Every round is written to the project in one transaction after its image exists: the PNGs
first (images/ and the pose map), then Dialogue, DialogueTurn and ImageRecord together with
``put_many``. A cancel or a crash before that leaves no record of the round at all.

The studio drives this from one worker thread; events go to the ``on_event`` sink given at
``open_session``; failures raise TdriError, which the studio turns into Error events.
"""

from __future__ import annotations

import importlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from . import events as ev
from .api import Answer, Feedback, PromptEdit, Reply, RoundResult, Skip
from .errors import BadInput, ModelMissing, TdriError
from .events import CancelToken, EventSink
from .models import ModelProfile, ModelRegistry, RoleStatus, check_profile, load_profile
from .records import Choice, Dialogue, DialogueTurn, ImageRecord, PreferencePair
from .settings import ASPECTS, EngineSettings

DEMO_NOTICE = (
    "Running on the demo profile: tiny models with random weights. The loop is real, the images are noise."
)
SEED_RANGE = 2**31  # new seeds stay in int32: some front-ends and exports cannot hold more


# how a round's note begins when Attend-and-Excite regenerated its image (measurements count it:
# an A&E note that says the edit started too late for it is a round it did not act on)
AE_REGENERATED = "The image left out part of the prompt, so it was regenerated with Attend-and-Excite"


def _optional(module: str, attr: str) -> Any | None:
    """A function of a part that may not be in this build (the optimizer), or None."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise
    return getattr(mod, attr, None)


def _emit_all(sink: EventSink, items: list[Any]) -> None:
    for item in items:
        sink(item)


# --------------------------------------------------------------------------------------------
# Engine


class Engine:
    """Owns the models of one profile (loaded lazily, in the calling worker thread).

    ``pose_detector`` replaces OpenPose by any callable image -> people (18 normalised
    keypoints each); see ``tdri_engine.pose.PoseExtractor``.
    """

    def __init__(
        self,
        profile: str | ModelProfile = "demo",
        settings: EngineSettings | None = None,
        *,
        pose_detector: Any | None = None,
    ) -> None:
        self.profile: ModelProfile = load_profile(profile)
        self.settings = settings or EngineSettings()
        self.registry = ModelRegistry(
            self.profile,
            device=self.settings.device,
            dtype=self.settings.dtype,
            cpu_offload=self.settings.cpu_offload,
        )
        self.pose_detector = pose_detector
        self._generator: Any = None

    @property
    def profile_name(self) -> str:
        return self.profile.name

    @property
    def is_demo(self) -> bool:
        return self.profile.is_demo

    @property
    def generator(self) -> Any:
        """The one Generator of this engine: its pipelines and active LoRA are shared by sessions."""
        if self._generator is None:
            from .generator import Generator

            self._generator = Generator(self.registry, self.settings)
        return self._generator

    def close(self) -> None:
        """Drop every loaded model (their memory can then be reclaimed); they reload on next use."""
        self._generator = None
        self.registry.unload()

    def check_models(self) -> list[RoleStatus]:
        return check_profile(self.profile)

    def ensure_models(self, on_event: EventSink | None = None) -> list[RoleStatus]:
        """Demo: build the tiny models on first run. Real profiles: ModelMissing for the first
        required role that is missing (its message lists the others)."""
        emit = on_event or ev.ignore_events
        if self.is_demo:
            from .demo import ensure_demo_models

            ensure_demo_models(
                on_progress=lambda step, total, msg: emit(ev.Progress("load", step, total, msg))
            )
        from .demo.atelier import ensure_atelier_models, uses_atelier

        if uses_atelier(self.profile):  # the Atelier's shipped weights, copied on first use
            ensure_atelier_models(
                on_progress=lambda step, total, msg: emit(ev.Progress("load", step, total, msg))
            )
        statuses = self.check_models()
        refused = [s for s in statuses if s.refused]  # optional or not: never load around it silently
        if refused:
            from .trust import refused as refusal

            first = refused[0]
            raise refusal(first.path or first.source, first.kind, first.role, first.reason)
        missing = [s for s in statuses if s.required and not s.found]
        if missing:
            first = missing[0]
            others = ", ".join(s.role for s in missing[1:])
            detail = f"({first.reason})" if first.reason else ""
            if others:
                detail += f" Also missing: {others} (run `tdri models check --profile {self.profile_name}`)."
            raise ModelMissing(first.role, first.looked_in, first.what_to_do, detail=detail.strip())
        return statuses

    # The roles every round uses, loaded by prepare() so the first round does not pay for them.
    PRELOAD_ROLES: tuple[str, ...] = ("generator", "controlnet", "pose", "vlm", "clip")

    def prepare(
        self, *, on_event: EventSink | None = None, cancel: CancelToken | None = None
    ) -> list[RoleStatus]:
        """Get ready for the first round: build the demo models on first run, check every role
        (``ModelMissing`` for a missing required one, as :meth:`ensure_models`), and load the
        models a round uses.

        A model that fails to load is reported as an ``Error`` event, not raised: the round that
        needs it reports it again, and the other roles stay usable. Loading imports torch and
        the model libraries in the calling thread, which is the point: the studio calls this in
        its engine thread while the user looks at the project.
        """
        emit = on_event or ev.ignore_events
        statuses = self.ensure_models(emit)  # ModelMissing names the first missing role
        found = {s.role for s in statuses if s.found}
        roles = [r for r in self.PRELOAD_ROLES if r in found]
        for i, role in enumerate(roles):
            if cancel is not None:
                cancel.raise_if_cancelled()
            emit(ev.Progress("load", i, len(roles), f"loading the {role} model"))
            try:
                self.registry.get(role)
            except TdriError as exc:
                emit(ev.Error(exc.kind, exc.message, exc.what_to_do))
                return statuses
        emit(ev.Progress("load", len(roles), len(roles), "models loaded"))
        return statuses

    def compare_base_adapted(
        self,
        store: Any,
        prompt: str,
        *,
        seed: int | None = None,
        cancel: CancelToken | None = None,
        on_event: EventSink | None = None,
    ) -> tuple[ImageRecord, ImageRecord]:
        """One image without and one with the project's active adapter, same prompt and seed.

        Both are saved in the project (a choice between them is a preference like any other).
        Raises ``BadInput`` when no adapter is active: there is nothing to compare.
        """
        from .optimizer import adapters

        adapter_dir = adapters.active_adapter_dir(store)
        if adapter_dir is None:
            raise BadInput(
                "No adapter is active, so there is nothing to compare with the base model.",
                "Switch to an adapter version, or make more choices until the first update.",
            )
        # a broken or pickled adapter is an AdapterError here: the "adapted" image would be the base's
        adapters.validate_adapter_dir(adapter_dir)
        settings, _notes = self.session_settings(store.settings)
        generator = self.generator
        generator.settings = settings
        seed = int(seed if seed is not None else 0)
        out: list[ImageRecord] = []
        for title, folder in (("base", None), ("adapted", adapter_dir)):
            res = generator.generate(prompt, seed=seed, adapter_dir=folder, cancel=cancel, on_event=on_event)
            out.append(
                store.add_image(res.image, res.image_record(prompt, settings, name=f"{title} (same seed)"))
            )
        return out[0], out[1]

    def measure_round(self, store: Any, image_id: str, *, cancel: CancelToken | None = None) -> Any:
        """The stored or newly measured scores of one round (``round_metrics.measure_round``)."""
        from .round_metrics import Scorers, measure_round

        return measure_round(Scorers.of_registry(self.registry), store, image_id, cancel=cancel)

    def session_settings(self, settings: EngineSettings) -> tuple[EngineSettings, list[str]]:
        """A project's settings within the profile's limits (the demo models are tiny), with the
        profile's calibrated tau and A&E threshold where the project leaves them empty."""
        own = self.profile.thresholds
        filled = {
            k: v
            for k, v in (("tau", own.tau), ("ae_threshold", own.ae_threshold))
            if getattr(settings, k, None) is None
        }
        if filled:
            settings = settings.replace(**filled)
        limits = self.profile.limits
        changes = {
            k: v
            for k, v in limits.items()
            if getattr(settings, k, None) is not None and getattr(settings, k) > v
        }
        if not changes:
            return settings, []
        said = ", ".join(f"{k} {getattr(settings, k)} -> {v}" for k, v in changes.items())
        note = f"The '{self.profile_name}' profile caps {said} (its models are tiny); the project settings are unchanged."
        return settings.replace(**changes), [note]

    def open_session(
        self,
        store: Any,
        *,
        task_id: str | None = None,
        dialogue_id: str | None = None,
        on_event: EventSink | None = None,
        settings: EngineSettings | None = None,
    ) -> RefinementSession:
        """A dialogue bound to ``store``; ``dialogue_id`` reopens a past dialogue from the store.

        Settings are the project's (``store.settings``) unless ``settings`` overrides them for
        this session only (the CLI's --steps and --size).
        """
        return RefinementSession(
            self, store, task_id=task_id, dialogue_id=dialogue_id, on_event=on_event, settings=settings
        )

    def train(
        self, store: Any, *, cancel: CancelToken | None = None, on_event: EventSink | None = None
    ) -> Any:
        """One preference-optimisation update of the project's LoRA (the optimizer's run_update),
        configured by the project's ``dpo_*`` settings (learning rate, steps, lambda, ControlNet)."""
        run_update = _optional("tdri_engine.optimizer.trainer", "run_update")
        config_from_settings = _optional("tdri_engine.optimizer.trainer", "config_from_settings")
        if run_update is None or config_from_settings is None:
            raise TdriError(
                "This build has no preference optimizer (tdri_engine.optimizer.trainer).",
                "Install the complete TDRI engine to train adapters.",
                kind="training",
            )
        settings, _ = self.session_settings(store.settings)
        config = config_from_settings(settings)
        return run_update(store, self.registry, settings, config=config, cancel=cancel, on_event=on_event)


# --------------------------------------------------------------------------------------------
# Session


@dataclass
class _RoundOutput:
    """What a round produced before anything is written."""

    image: Image.Image
    record: ImageRecord
    turn: DialogueTurn
    reflection: ev.Reflection | None
    question: ev.Question | None
    warnings: list[str]


def _reply_kind(reply: Reply) -> tuple[str, str]:
    """(turn kind, the user's words u_t) of a reply."""
    if isinstance(reply, Answer):
        return "answer", reply.text
    if isinstance(reply, Skip):
        return "skip", ""
    if isinstance(reply, Feedback):
        return "feedback", reply.text
    if isinstance(reply, PromptEdit):
        return "prompt", reply.prompt
    raise BadInput(
        f"Unknown reply {type(reply).__name__}.",
        "Answer the question, skip it, give feedback or edit the prompt.",
    )


def _normalise_reply(reply: Reply | str) -> Reply:
    if isinstance(reply, str):
        return Feedback(reply) if reply.strip() else Skip()
    if isinstance(reply, Answer):
        if reply.aspect not in ASPECTS:
            raise BadInput(f"Unknown aspect '{reply.aspect}'.", f"Answer one of: {', '.join(ASPECTS)}.")
        if not isinstance(reply.text, str):
            raise BadInput("The answer must be text.", "Type an answer, or skip.")
        if not reply.text.strip():  # an empty answer is a skip, as in the CLI
            return Skip()
    if isinstance(reply, Feedback):
        if not isinstance(reply.text, str):
            raise BadInput("The feedback must be text.", "Type some words, or skip.")
        if not reply.text.strip():
            return Skip()
    if isinstance(reply, PromptEdit) and (not isinstance(reply.prompt, str) or not reply.prompt.strip()):
        raise BadInput("The edited prompt is empty.", "Type the prompt you want, or skip.")
    _reply_kind(reply)  # rejects anything else
    return reply


class RefinementSession:
    """One refinement dialogue in a project: ``start`` (round 0), then ``refine`` per reply."""

    def __init__(
        self,
        engine: Engine,
        store: Any,
        *,
        task_id: str | None = None,
        dialogue_id: str | None = None,
        on_event: EventSink | None = None,
        settings: EngineSettings | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.task_id = task_id
        self.emit: EventSink = on_event or ev.ignore_events
        self.settings, notes = engine.session_settings(settings or store.settings)
        self._notes = notes
        self._summarizer: Any = None
        self._reflector: Any = None
        self._rounds: list[RoundResult] = []
        self._turns: list[DialogueTurn] = []
        self._dialogue: Dialogue | None = None
        self._pose_map: Image.Image | None = None
        self._seed: int | None = None
        store_profile = getattr(store, "profile", None)
        if store_profile and store_profile != engine.profile_name:
            self._notes.append(
                f"This project was made for the '{store_profile}' model profile; it now runs on "
                f"'{engine.profile_name}'."
            )
        if engine.is_demo:
            self._notes.append(DEMO_NOTICE)
        if dialogue_id is not None:
            self._reopen(dialogue_id)
        _emit_all(self.emit, [ev.Warning_(n) for n in self._notes])

    # -- state ---------------------------------------------------------------------------------

    @property
    def dialogue_id(self) -> str | None:
        return self._dialogue.id if self._dialogue else None

    @property
    def dialogue(self) -> Dialogue | None:
        return self._dialogue

    @property
    def rounds(self) -> list[RoundResult]:
        return list(self._rounds)

    @property
    def pending_question(self) -> ev.Question | None:
        return self._rounds[-1].question if self._rounds else None

    @property
    def pose_map(self) -> Image.Image | None:
        """The smoothed pose map from round 0 that conditions later rounds (None: no person)."""
        return self._pose_map

    @property
    def current_prompt(self) -> str:
        return self._rounds[-1].prompt if self._rounds else ""

    @property
    def notes(self) -> list[str]:
        """Things said once when the session opened (profile caps, demo notice)."""
        return list(self._notes)

    def _reopen(self, dialogue_id: str) -> None:
        dialogue = self.store.get(Dialogue, dialogue_id)
        if dialogue is None:
            raise BadInput(
                f"There is no dialogue {dialogue_id!r} in this project.",
                "Pick a dialogue from the project's list.",
            )
        turns = sorted(
            self.store.find(DialogueTurn, lambda d: d.get("dialogue_id") == dialogue_id),
            key=lambda t: t.round,
        )
        self._dialogue = dialogue
        self.task_id = self.task_id or dialogue.task_id
        self._turns = turns
        for turn in turns:
            record = self.store.get(ImageRecord, turn.image_id) if turn.image_id else None
            if record is None:
                continue  # an image deleted by hand: the turn stays in the history
            question = None
            if turn.question:
                question = ev.Question(
                    aspect=turn.question_aspect or "Others",
                    text=turn.question,
                    scores=dict(turn.aspect_scores),
                    ambiguity=float(turn.ambiguity or 0.0),
                    options=tuple(turn.question_options or ()),
                )
            self._rounds.append(
                RoundResult(
                    round=turn.round,
                    turn=turn,
                    image=record,
                    image_path=str(self.store.image_path(record)),
                    prompt=turn.prompt,
                    question=question,
                    pose_found=bool(dialogue.pose_file),
                )
            )
        if self._rounds and self._rounds[0].image.seed is not None:
            self._seed = int(self._rounds[0].image.seed)
        if dialogue.pose_file:
            try:
                with Image.open(self.store.path / dialogue.pose_file) as im:
                    self._pose_map = im.convert("RGB")
            except OSError as exc:
                self._notes.append(
                    f"The pose map of this dialogue could not be read ({exc}); later rounds run without it."
                )

    # -- parts (created on first use, in the worker thread) ----------------------------------

    def _summarize(self, turns: list[DialogueTurn], reply: Any, current_prompt: str) -> Any:
        if self._summarizer is None:
            from .summarizer import make_summarizer

            self._summarizer = make_summarizer(self.settings, self.engine.registry)
        return self._summarizer.summarize(turns, reply, current_prompt)

    def _reflect(
        self, image: Image.Image, prompt: str, cancel: CancelToken | None, settled: Any = None
    ) -> Any:
        """FR on the round's image; ``settled`` (reflector.Settled): the aspect just answered or
        skipped, which is not asked about again unless the image still disagrees."""
        if self._reflector is None:
            from .reflector import make_reflector

            self._reflector = make_reflector(self.settings, self.engine.registry, self._seed)
        if settled is None:
            return self._reflector.reflect(image, prompt, cancel=cancel)
        return self._reflector.reflect(image, prompt, cancel=cancel, settled=settled)

    def _adapter_dir(self) -> Path | None:
        active = _optional("tdri_engine.optimizer.adapters", "active_adapter_dir")
        return active(self.store) if active is not None else None

    def _generator(self) -> Any:
        gen = self.engine.generator
        gen.settings = self.settings  # the engine's generator serves this session's settings now
        # the project's active ControlNet LoRA (eq. 9), loaded when a round runs with the pose
        active_cn = _optional("tdri_engine.optimizer.adapters", "active_controlnet_adapter_dir")
        gen.controlnet_adapter_dir = active_cn(self.store) if active_cn is not None else None
        return gen

    # -- the rounds ----------------------------------------------------------------------------

    def start(
        self, prompt: str, *, seed: int | None = None, cancel: CancelToken | None = None
    ) -> RoundResult:
        """Round 0: generate I_0 from P_0, extract and smooth the pose, reflect, maybe ask."""
        if self._rounds:
            raise BadInput(
                "This dialogue has already started.", "Reply to it with refine(), or open a new session."
            )
        if not isinstance(prompt, str):
            raise BadInput("The prompt must be text.", "Type what the image should show.")
        if not prompt.strip():
            raise BadInput("The prompt is empty.", "Describe the image you want, e.g. 'a red dress'.")
        seed = self._pick_seed(seed)
        self._seed = seed
        emit = self.emit
        if cancel is not None:
            cancel.raise_if_cancelled()

        emit(ev.Progress("summarize", 0, 1))
        summary = self._summarize([], prompt, prompt)
        p0 = summary.prompt or prompt.strip()
        warnings = list(summary.warnings)
        emit(ev.PromptReady(0, p0, tuple(warnings)))
        emit(ev.Progress("summarize", 1, 1))

        gen = self._generator()
        result = gen.generate(p0, seed=seed, adapter_dir=self._adapter_dir(), cancel=cancel, on_event=emit)
        warnings += result.warnings

        pose = None
        if self.settings.use_pose:
            emit(ev.Progress("pose", 0, 1))
            from .pose import PoseExtractor

            pose = PoseExtractor(self.engine.registry, self.settings, self.engine.pose_detector).extract(
                result.image, cancel=cancel
            )
            emit(ev.Progress("pose", 1, 1, pose.message))

        dialogue = Dialogue(
            task_id=self.task_id,
            title=p0[:80],
            initial_prompt=prompt,
            settings=self.settings.to_dict(),
        )
        out = self._finish_round(
            0, result, p0, "prompt", prompt, parent=None, dialogue=dialogue, cancel=cancel
        )
        out.warnings[:0] = warnings

        # Write: the pose map PNG, the image PNG, then all records in one transaction.
        from .store.images import save_png

        smoothed = pose.smoothed if pose is not None and pose.found else None
        pose_path = None
        if pose is not None and smoothed is not None:
            dialogue.pose_file = f"images/pose-{dialogue.id}.png"
            pose_path = self.store.path / dialogue.pose_file
            save_png(
                pose_path,
                smoothed,
                {
                    "kind": "pose-map",
                    "dialogue_id": dialogue.id,
                    "sigma": self.settings.pose_sigma,
                    "keypoints": pose.keypoints,
                },
            )
        try:
            round_result = self._commit(out, dialogue, pose_found=smoothed is not None)
        except BaseException:
            if pose_path is not None:
                pose_path.unlink(missing_ok=True)
            raise
        self._dialogue = dialogue
        self._pose_map = smoothed

        if pose is not None:
            emit(ev.PoseReady(pose.found, pose.message, str(pose_path) if pose_path else None))
        self._announce(round_result, out, said=summary.warnings)
        return round_result

    def refine(
        self, reply: Reply | str, *, cancel: CancelToken | None = None, reference: int | None = None
    ) -> RoundResult:
        """Round t: D2P prompt from the dialogue and the reply, generate with the pose, reflect.

        ``reference``: the round whose image this round edits (refine mode "edit"); default the
        latest. The paper always edits I_{t-1}; a designer who liked an earlier round more can
        build on it instead, while the dialogue (and so the D2P prompt) goes on from the latest.
        """
        if not self._rounds or self._dialogue is None:
            raise BadInput("The dialogue has not started yet.", "Start it with a prompt first.")
        reply = _normalise_reply(reply)
        base = self._rounds[-1]
        if reference is not None:
            found = next((r for r in self._rounds if r.round == reference), None)
            if found is None:
                raise BadInput(
                    f"There is no round {reference} in this dialogue.",
                    "Pick one of this dialogue's rounds as the reference.",
                )
            base = found
        if cancel is not None:
            cancel.raise_if_cancelled()
        t = self._rounds[-1].round + 1
        emit = self.emit
        previous = self._rounds[-1]
        kind, user_text = _reply_kind(reply)
        settled = None
        if previous.question is not None and isinstance(reply, (Answer, Skip)):
            from .reflector import Settled

            aspect = reply.aspect if isinstance(reply, Answer) else previous.question.aspect
            settled = Settled(aspect, reply.text if isinstance(reply, Answer) else None)

        emit(ev.Progress("summarize", 0, 1))
        summary = self._summarize(list(self._turns), reply, previous.prompt)
        warnings = list(summary.warnings)
        prompt = (
            reply.prompt.strip() if isinstance(reply, PromptEdit) else (summary.prompt or previous.prompt)
        )
        emit(ev.PromptReady(t, prompt, tuple(warnings)))
        emit(ev.Progress("summarize", 1, 1))

        gen = self._generator()
        s = self.settings
        embeds = None
        history = (summary.history_prompt or "").strip()
        if not isinstance(reply, PromptEdit) and summary.latest_text and history and history != prompt:
            # Eq. (2): alpha*E(history) + beta*E(latest). The latest input enters as P_t, the
            # summarizer's rendering of u_t into the prompt: a bare answer ("red") is no image
            # description, and averaging unrelated token sequences position by position blurs both.
            from .generator import encode_prompt_blend

            embeds = encode_prompt_blend(
                gen.base_pipeline(), history, prompt, s.alpha, s.beta, negative_prompt=s.negative_prompt
            )
        pose_map = self._pose_map if s.use_pose else None
        init = None
        if s.refine_mode == "edit":
            init = self.store.load_image(base.image)
        elif base is not previous:
            warnings.append(
                f"Rounds are made anew (refine mode 'scratch'), so round {base.round} was not edited; "
                "set Settings > Refine mode to 'edit' to build on a reference round."
            )
        seed = (self._seed or 0) + t  # a new draw each round, reproducible from the dialogue's seed
        adapter = self._adapter_dir()
        result = gen.generate(
            prompt,
            seed=seed,
            pose_map=pose_map,
            init_image=init,
            prompt_embeds=embeds,
            adapter_dir=adapter,
            cancel=cancel,
            on_event=emit,
        )
        warnings += result.warnings
        result, ae_note = self._attend_and_excite(
            gen, result, prompt, embeds, pose_map, init, seed, adapter, cancel
        )
        if ae_note:
            warnings.append(ae_note)

        out = self._finish_round(
            t,
            result,
            prompt,
            kind,
            user_text,
            parent=base.image.id if init is not None else None,
            dialogue=self._dialogue,
            cancel=cancel,
            settled=settled,
        )
        out.warnings[:0] = warnings
        round_result = self._commit(out, None, pose_found=pose_map is not None)
        self._announce(round_result, out, said=summary.warnings)
        return round_result

    def _attend_and_excite(
        self,
        gen: Any,
        result: Any,
        prompt: str,
        embeds: Any,
        pose_map: Any,
        init: Any,
        seed: int,
        adapter: Path | None,
        cancel: CancelToken | None,
    ) -> tuple[Any, str]:
        """AO's prompt-fidelity half: regenerate with Attend-and-Excite when 1 - sim(I, P) > threshold."""
        s = self.settings
        if not s.use_attend_excite:
            return result, ""
        attend_excite = _optional("tdri_engine.optimizer.attend_excite", "AttendExcite")
        if attend_excite is None or not self.engine.registry.has("clip"):
            return result, ""
        clip = self.engine.registry.get("clip")
        misalignment = 1.0 - float(clip.image_text(result.image, [prompt])[0])
        # session_settings fills an empty threshold from the profile; a settings object set by hand
        # later may still leave it empty
        threshold = (
            s.ae_threshold if s.ae_threshold is not None else self.engine.profile.thresholds.ae_threshold
        )
        if misalignment <= threshold:
            return result, ""
        pipe = gen.pipeline(gen.mode_for(pose_map, init))
        hook = attend_excite.for_prompt(pipe, prompt, s)
        if hook is None:
            return result, ""
        # plain words first, the numbers last (the studio shows the sentence as it is)
        # three decimals: a calibrated threshold can sit at 0.997, and "1.00 > 1.00" reads as nonsense
        measured = f"1 - CLIP similarity {misalignment:.3f} > threshold {threshold:.3f}"
        if init is not None and not hook.acts_on_edit(s.steps, s.edit_strength):
            hook.remove(pipe)  # A&E acts on the schedule's first half; this edit starts after it
            return result, (
                "The image left out part of the prompt, but this edit (strength "
                f"{s.edit_strength:.2f} of {s.steps} steps) starts after the early steps "
                "Attend-and-Excite acts on, so the round was not regenerated. Raise the edit strength, "
                f"or refine from scratch, to let it act ({measured})."
            )
        self.emit(ev.Progress("attend-excite", 0, 1, "regenerating with Attend-and-Excite"))
        try:
            again = gen.generate(
                prompt,
                seed=seed,
                pose_map=pose_map,
                init_image=init,
                prompt_embeds=embeds,
                adapter_dir=adapter,
                extra_step_callback=hook.callback,
                cancel=cancel,
                on_event=self.emit,
            )
        finally:
            remove = getattr(hook, "remove", None)
            if remove is not None:  # a cancel mid-run must not leave its processors on the shared UNet
                remove(pipe)
        after = 1.0 - float(clip.image_text(again.image, [prompt])[0])
        excited = ", ".join(f"'{w}'" for w in getattr(hook, "words", ()))
        return again, " ".join(
            [
                f"{AE_REGENERATED} on {excited}, which strengthens neglected words ({measured}; now {after:.3f}).",
                *getattr(hook, "notes", ()),
            ]
        )

    def _finish_round(
        self,
        t: int,
        result: Any,
        prompt: str,
        kind: str,
        user_text: str,
        *,
        parent: str | None,
        dialogue: Dialogue,
        cancel: CancelToken | None,
        settled: Any = None,
    ) -> _RoundOutput:
        """Reflect on the image and build (not write) the round's records."""
        if cancel is not None:
            cancel.raise_if_cancelled()
        self.emit(ev.Progress("reflect", 0, 1))
        reflection = self._reflect(result.image, prompt, cancel, settled)
        self.emit(ev.Progress("reflect", 1, 1))
        if cancel is not None:
            cancel.raise_if_cancelled()
        s = self.settings
        question = reflection.question
        record = result.image_record(
            prompt, s, round=t, dialogue_id=dialogue.id, parent_id=parent, name=f"round {t}"
        )
        r = reflection.reflection
        if question is not None:
            response = question.text
        else:
            response = (
                "No question: the image is clear enough on every part "
                f"(ambiguity A = {r.ambiguity:.2f} <= tau {r.threshold:.2f})."
            )
        turn = DialogueTurn(
            dialogue_id=dialogue.id,
            round=t,
            kind=kind,
            user_input=user_text,
            system_response=response,
            prompt=prompt,
            question=question.text if question else None,
            question_aspect=question.aspect if question else None,
            question_options=list(question.options) if question else [],
            aspect_scores=dict(r.scores),
            ambiguity=float(r.ambiguity),
            image_id=record.id,
        )
        return _RoundOutput(
            result.image, record, turn, r, question, list(getattr(reflection, "warnings", ()))
        )

    def _commit(self, out: _RoundOutput, dialogue: Dialogue | None, *, pose_found: bool) -> RoundResult:
        """Write the image, then every record of the round in one transaction."""
        from .store.images import provenance_of, save_png

        record = out.record.replace(file=f"images/{out.record.id}.png")
        path = self.store.path / record.file
        save_png(path, out.image, provenance_of(record))
        records: list[Any] = [record, out.turn]
        if dialogue is not None:
            records.insert(0, dialogue)
        try:
            self.store.put_many(records)
        except BaseException:
            path.unlink(missing_ok=True)  # no image file without its record
            raise
        self._turns.append(out.turn)
        result = RoundResult(
            round=out.turn.round,
            turn=out.turn,
            image=record,
            image_path=str(path),
            prompt=out.turn.prompt,
            reflection=out.reflection,
            question=out.question,
            pose_found=pose_found,
            warnings=tuple(dict.fromkeys(out.warnings)),
        )
        self._rounds.append(result)
        return result

    def _announce(self, result: RoundResult, out: _RoundOutput, *, said: tuple[str, ...] = ()) -> None:
        """The round's events; warnings already given with PromptReady are not repeated."""
        emit = self.emit
        for w in result.warnings:
            if w not in said:
                emit(ev.Warning_(w))
        emit(ev.ImageReady(result.image, result.image_path, result.round))
        if out.reflection is not None:
            emit(out.reflection)
        if out.question is not None:
            emit(out.question)
        emit(ev.Finished("round", result.round))

    def _pick_seed(self, seed: int | None) -> int:
        if seed is None:
            seed = self.settings.seed
        if seed is None:
            return secrets.randbelow(SEED_RANGE)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise BadInput(
                f"The seed must be a whole number >= 0, got {seed!r}.",
                "Pick another seed, or leave it empty.",
            )
        return seed

    # -- preferences ---------------------------------------------------------------------------

    def choose(
        self, left_image_id: str, right_image_id: str, choice: Choice | str, *, source: str = "studio"
    ) -> PreferencePair:
        """Record the user's choice between two images (both_bad is kept, but is no training pair)."""
        try:
            choice = Choice(choice)
        except ValueError:
            raise BadInput(
                f"Unknown choice {choice!r}.", f"Use one of: {', '.join(c.value for c in Choice)}."
            ) from None
        if left_image_id == right_image_id:
            raise BadInput("The two images of a choice must differ.", "Pick two different images.")
        images = []
        for image_id in (left_image_id, right_image_id):
            record = self.store.get(ImageRecord, image_id)
            if record is None:
                raise BadInput(
                    f"There is no image {image_id!r} in this project.",
                    "Choose between images of this project.",
                )
            images.append(record)
        left, right = images
        prompt = self.current_prompt or left.prompt
        pair = PreferencePair(
            prompt=prompt,
            image_left=left.id,
            image_right=right.id,
            choice=choice.value,
            source=source,
            dialogue_id=self.dialogue_id,
            task_id=self.task_id,
            train_meta={
                "prompt": prompt,
                "prompts": {left.id: left.prompt, right.id: right.prompt},
                "seeds": {left.id: left.seed, right.id: right.seed},
                "rounds": {left.id: left.round, right.id: right.round},
                "negative_prompt": self.settings.negative_prompt,
                "model": left.model,
                "adapter": left.adapter_version,
                "settings": self.settings.to_dict(),
            },
        )
        self.store.put(pair)
        return pair
