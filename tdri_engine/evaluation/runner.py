"""The evaluation run: every (condition, target) session, appended to JSONL as it finishes.

Output folder:

* ``run.json`` — the run's configuration; ``--resume`` refuses a folder made with other
  settings that change results (profile, target source and seed, rounds, image settings).
* ``sessions-p<k>.jsonl`` — one line per *finished* session of process k, written with one
  ``write`` and an fsync. A run killed mid-session leaves no line for it (or a cut last line,
  which reading skips), so ``--resume`` runs exactly the sessions without a line, from their
  start, with the same seeds. Lines are never rewritten.
* ``projects/`` — the dialogue conditions' projects (every image, turn and preference pair, as
  the studio would keep them); ``images/`` — the baselines' images.

Seeds: target i's session seed is ``seed * 100003 + i`` in every condition (round t of the
engine uses seed + t), so the conditions see the same targets and the same noise.

Processes: under ``accelerate launch`` (``WORLD_SIZE`` > 1 in the environment), accelerate's
``PartialState`` gives the process index k and the count n; process k runs targets k, k+n, ...
on its own device and writes its own JSONL, and the main process writes the report after all
have finished. Otherwise one process runs everything. The AO conditions' adapters are per
process (each process has its own project): with n processes each adapter sees 1/n of the choices.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..errors import BadInput, TdriError
from ..settings import EngineSettings
from .conditions import AUGMENT, DIALOGUE, SINGLE, Condition, LLMAugmenter, RuleAugmenter, parse_conditions
from .metrics import I2I_SATISFIED, Scorers
from .users import SimulatedUser, Target, file_targets, vlm_describer, world_targets

WORLD = "world"
SESSION_FILE = "sessions-p{rank}.jsonl"
# settings that change the numbers: a resumed run must match them
_MUST_MATCH = (
    "profile", "source", "target_seed", "rounds", "seed", "steps", "size", "threshold", "judge", "settings",
)  # fmt: skip


@dataclass
class EvalConfig:
    profile: str = "demo"
    targets: int = 2
    rounds: int = 2  # rounds in total, round 0 (the first image) included, as `tdri refine`
    conditions: list[str] = field(default_factory=lambda: ["single", "tdri"])
    out: str = "eval-out"
    source: str = WORLD  # "world" or a path to target images with prompts
    target_seed: int = 0
    seed: int = 0
    steps: int | None = None
    size: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    judge: str | None = None  # a trained Atelier judge folder
    score_profile: str | None = None  # whose clip/blip measure (default: the profile's own)
    threshold: float = I2I_SATISFIED
    augmenter: str = "auto"  # auto | llm | rules
    use_pose: bool = True
    settings: dict[str, Any] = field(default_factory=dict)  # EngineSettings changes for every condition

    def check(self) -> None:
        if self.targets < 1:
            raise BadInput(f"--targets must be at least 1, got {self.targets}.", "Ask for one or more.")
        if self.rounds < 1:
            raise BadInput(
                f"--rounds must be at least 1, got {self.rounds}.", "Round 0 counts: --rounds 2 runs two."
            )
        if self.augmenter not in ("auto", "llm", "rules"):
            raise BadInput(f"Unknown augmenter {self.augmenter!r}.", "Use auto, llm or rules.")
        if not 0.0 <= self.threshold <= 1.0:
            raise BadInput("--threshold must be in [0, 1] (the CLIP scale).", "Pick e.g. 0.80.")
        parse_conditions(",".join(self.conditions))


# --------------------------------------------------------------------------------------------
# processes, files, progress
# --------------------------------------------------------------------------------------------


@dataclass
class Processes:
    index: int = 0
    count: int = 1
    device: str | None = None
    state: Any = None

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def wait(self) -> None:
        if self.state is not None and self.count > 1:
            self.state.wait_for_everyone()


def processes() -> Processes:
    """accelerate's PartialState when launched by ``accelerate launch`` / torchrun with more than
    one process; one plain process otherwise (accelerate is not imported then)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return Processes()
    import torch
    from accelerate import PartialState

    # without a GPU, accelerate spreads processes over the CPU only when asked to (gloo)
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes <= 1:
        raise BadInput(
            f"WORLD_SIZE is {os.environ.get('WORLD_SIZE')} but accelerate set up one process.",
            "Start with `accelerate launch` (or torchrun), or unset WORLD_SIZE.",
        )
    d = state.device
    device = f"cuda:{d.index or 0}" if d.type == "cuda" else (d.type if d.type in ("cpu", "mps") else "auto")
    return Processes(state.process_index, state.num_processes, device, state)


def shard(items: list[Any], index: int, count: int) -> list[Any]:
    """Items index, index + count, ... (every item in exactly one shard)."""
    return items[index::count]


def read_sessions(out: Path) -> list[dict[str, Any]]:
    """Every finished session line of every process; a cut last line (a kill mid-write) is skipped."""
    rows = []
    for path in sorted(Path(out).glob("sessions-p*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and "condition" in row and "target" in row:
                rows.append(row)
    return rows


def append_line(path: Path, row: dict[str, Any]) -> None:
    """One JSON line, written whole and fsynced: a finished session survives any later kill."""
    data = (json.dumps(row, sort_keys=True) + "\n").encode("utf-8")
    with open(path, "ab+") as fh:
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":  # a line cut by a kill: end it, so this one stays whole
                data = b"\n" + data
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """A line per finished session on stderr: count, share, time per session, ETA."""

    def __init__(self, total: int, stream: TextIO | None = None, prefix: str = ""):
        self.total, self.done, self.start = total, 0, time.monotonic()
        self.stream = stream if stream is not None else sys.stderr
        self.prefix = prefix

    def eta(self) -> float:
        if self.done == 0:
            return float("nan")
        return (time.monotonic() - self.start) / self.done * (self.total - self.done)

    def tick(self, label: str) -> str:
        self.done += 1
        elapsed = time.monotonic() - self.start
        width = 20
        filled = int(width * self.done / max(1, self.total))
        line = (
            f"{self.prefix}[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {label} "
            f"| {elapsed / self.done:.1f} s/session | elapsed {_fmt_s(elapsed)} | ETA {_fmt_s(self.eta())}"
        )
        print(line, file=self.stream, flush=True)
        return line


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------


class EvalRun:
    """One evaluation: models, targets and conditions of ``config``; :meth:`run` does the work."""

    def __init__(
        self,
        config: EvalConfig,
        *,
        profile: Any = None,
        stream: TextIO | None = None,
        pose_detector: Any = None,
        procs: Processes | None = None,
        engine: Any = None,
    ) -> None:
        """``profile`` (a name or ModelProfile) overrides ``config.profile``; ``engine`` reuses
        an Engine whose models are already loaded (its settings only give device and dtype)."""
        config.check()
        self.config = config
        self.conditions: list[Condition] = parse_conditions(",".join(config.conditions))
        self.out = Path(config.out)
        self.stream = stream if stream is not None else sys.stderr
        self.procs = procs or processes()
        self._profile_arg = profile if profile is not None else config.profile
        self._pose_detector = pose_detector
        self._engines: dict[str, Any] = {"": engine} if engine is not None else {}
        if engine is not None and profile is None:
            self._profile_arg = engine.profile
        self._projects: dict[str, Any] = {}
        self._scorers: Scorers | None = None
        self._augmenter: Any = None
        self._describe: Callable[[Any, str], str] | None = None

    # -- set-up ------------------------------------------------------------------------------

    def base_settings(self) -> EngineSettings:
        c = self.config
        changes: dict[str, Any] = dict(c.settings)
        changes |= {"device": self.procs.device or c.device, "dtype": c.dtype, "use_pose": c.use_pose}
        if c.steps is not None:
            changes["steps"] = c.steps
        if c.size is not None:
            changes["width"] = changes["height"] = c.size
        return EngineSettings(**changes)

    def engine(self, vlm_profile: str | None = None) -> Any:
        """The profile's engine; a VLM-swap engine shares every loaded model but the vlm."""
        from ..models import load_profile
        from ..session import Engine

        key = vlm_profile or ""
        if key in self._engines:
            return self._engines[key]
        if not key:
            engine = Engine(self._profile_arg, self.base_settings(), pose_detector=self._pose_detector)
            engine.ensure_models()
        else:
            import dataclasses

            main = self.engine()
            other = load_profile(key)
            roles = dict(main.profile.roles) | {"vlm": other.spec("vlm")}
            swapped = dataclasses.replace(
                main.profile, roles=roles, name=f"{main.profile.name}+vlm:{vlm_profile}"
            )
            engine = Engine(swapped, self.base_settings(), pose_detector=self._pose_detector)
            for role in ("generator", "controlnet", "pose", "clip", "blip", "llm"):
                if main.registry.is_loaded(role):
                    engine.registry.put(role, main.registry.get(role))
        self._engines[key] = engine
        return engine

    def scorers(self) -> Scorers:
        if self._scorers is None:
            c = self.config
            registry = self.engine().registry
            if c.score_profile:
                from ..session import Engine

                registry = Engine(c.score_profile, self.base_settings()).registry
            blip = registry.get("blip") if registry.has("blip") else None
            judge = None
            if c.judge:
                from ..atelier import judge as judge_mod

                judge = judge_mod.load(Path(c.judge))
            self._scorers = Scorers(registry.get("clip"), blip, judge, c.threshold)
        return self._scorers

    def targets(self) -> list[Target]:
        c = self.config
        s = self.engine().session_settings(self.base_settings())[0]
        size = (s.width, s.height)
        if c.source == WORLD:
            return world_targets(c.targets, seed=c.target_seed, size=size)
        return file_targets(Path(c.source), c.targets, size=size)

    def augmenter(self) -> Any:
        if self._augmenter is None:
            mode = self.config.augmenter
            registry = self.engine().registry
            if mode == "llm" or (mode == "auto" and registry.has("llm")):
                self._augmenter = LLMAugmenter(registry.get("llm"))
            else:
                self._augmenter = RuleAugmenter()
        return self._augmenter

    def describe(self) -> Callable[[Any, str], str]:
        if self._describe is None:
            self._describe = vlm_describer(self.engine().registry.get("vlm"))
        return self._describe

    def _run_json(self) -> dict[str, Any]:
        c = asdict(self.config)
        c["profile"] = getattr(self._profile_arg, "name", None) or str(self._profile_arg)
        s = self.engine().session_settings(self.base_settings())[0]
        c["command"] = command_line(self.config, c["profile"])
        c["steps"], c["size"] = s.steps, [s.width, s.height]
        return c

    def prepare_out(self, resume: bool) -> None:
        """Create the output folder, or check that a resumed one was made with these settings."""
        self.out.mkdir(parents=True, exist_ok=True)
        meta = self.out / "run.json"
        mine = self._run_json()
        if meta.is_file():
            try:
                theirs = json.loads(meta.read_text(encoding="utf-8"))
            except ValueError:
                theirs = {}
            if not resume:
                raise BadInput(
                    f"{self.out} already holds an evaluation run.",
                    "Add --resume to continue it, or choose another --out.",
                )
            diff = [k for k in _MUST_MATCH if theirs.get(k) != mine.get(k)]
            if diff:
                said = ", ".join(f"{k}: {theirs.get(k)!r} there, {mine.get(k)!r} now" for k in diff)
                raise BadInput(
                    f"The run in {self.out} was made with other settings ({said}).",
                    "Resume with the same settings, or choose another --out.",
                )
        elif self.procs.is_main:
            meta.write_text(json.dumps(mine, indent=2, sort_keys=True), encoding="utf-8")

    # -- sessions ----------------------------------------------------------------------------

    def session_seed(self, index: int) -> int:
        return self.config.seed * 100003 + index

    def _project(self, name: str, settings: EngineSettings, fresh: bool = False) -> Any:
        from ..store import create_project, open_project
        from ..store.slug import slugify

        name = slugify(name)
        if name in self._projects and not fresh:
            return self._projects[name]
        root = self.out / "projects"
        root.mkdir(parents=True, exist_ok=True)
        folder = root / name
        if fresh and folder.is_dir():
            old = self._projects.pop(name, None)
            if old is not None:
                old.close()
            shutil.rmtree(folder)  # a sample-specific adapter starts from nothing
        if folder.is_dir():
            store = open_project(folder)
        else:
            profile = self.engine().profile_name
            store = create_project(root, name, profile=profile, settings=settings)
            if store.path.name != name:  # the store names its folder; keep ours stable for resume
                store.close()
                raise TdriError(f"Project folder {store.path} is not {folder}.", "Use a plain --out path.")
        self._projects[name] = store
        return store

    def close(self) -> None:
        for store in self._projects.values():
            store.close()
        self._projects.clear()

    def run_session(self, cond: Condition, target: Target, index: int) -> dict[str, Any]:
        """One session of ``cond`` toward ``target``: the rounds' metrics and what happened."""
        started = time.monotonic()
        engine = self.engine(cond.vlm_profile)
        settings, notes = engine.session_settings(self.base_settings().replace(**cond.settings))
        seed = self.session_seed(index)
        scorers = self.scorers()
        rounds: list[dict[str, Any]] = []
        if cond.kind in (SINGLE, AUGMENT):
            self._baseline(cond, engine, settings, target, seed, rounds, notes)
        elif cond.kind == DIALOGUE:
            self._dialogue(cond, engine, settings, target, seed, rounds, notes)
        else:  # pragma: no cover - parse_conditions knows every kind
            raise BadInput(f"Unknown condition kind {cond.kind!r}.", "Use a listed condition.")
        return {
            "condition": cond.name,
            "label": cond.label,
            "target": target.id,
            "target_index": index,
            "target_prompt": target.prompt,
            "start_prompt": target.start_prompt,
            "in_world": target.in_world,
            "seed": seed,
            "process": self.procs.index,
            "satisfaction_rule": scorers.satisfaction_rule(target.in_world),
            "wall_s": round(time.monotonic() - started, 3),
            "finished_at": round(time.time(), 3),
            "notes": list(dict.fromkeys(notes)),
            "rounds": rounds,
        }

    def _save_baseline(self, cond: Condition, target: Target, t: int, image: Any) -> str:
        folder = self.out / "images" / cond.name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{target.id}-r{t}.png"
        image.save(path)
        return str(path.relative_to(self.out))

    def _baseline(
        self,
        cond: Condition,
        engine: Any,
        settings: EngineSettings,
        target: Target,
        seed: int,
        rounds: list[dict[str, Any]],
        notes: list[str],
    ) -> None:
        gen = engine.generator
        gen.settings = settings
        scorers = self.scorers()
        previous = None
        for t in range(self.config.rounds):
            t0 = time.monotonic()
            if cond.kind == SINGLE and t > 0:  # one shot: the image stays what it was
                rounds.append(dict(rounds[-1], round=t, seconds=0.0, consistency=1.0))
                continue
            prompt = target.start_prompt
            if cond.kind == AUGMENT:
                prompt, said = self.augmenter().augment(target.start_prompt, seed + t)
                notes.extend(said)
            result = gen.generate(prompt, seed=seed + t)
            notes.extend(result.warnings)
            row: dict[str, Any] = {"round": t, "prompt": prompt, "question_aspect": None, "answer": None}
            row["ae"] = False
            row["image"] = self._save_baseline(cond, target, t, result.image)
            row |= scorers.round_metrics(result.image, target, previous)
            row["seconds"] = round(time.monotonic() - t0, 3)
            rounds.append(row)
            previous = result.image

    def _dialogue(
        self,
        cond: Condition,
        engine: Any,
        settings: EngineSettings,
        target: Target,
        seed: int,
        rounds: list[dict[str, Any]],
        notes: list[str],
    ) -> None:
        from ..errors import TrainingError
        from ..session import AE_REGENERATED

        scorers = self.scorers()
        if cond.train == "sample":
            every = max(2, self.config.rounds // 2)
            settings = settings.replace(update_every=every)
            store = self._project(f"{cond.name}-{target.id}", settings, fresh=True)
        else:
            store = self._project(f"{cond.name}-p{self.procs.index}", settings)
        describe = None if target.in_world else self.describe()
        user = SimulatedUser(target, scorers.clip.image_image, describe)
        session = engine.open_session(store, settings=settings)
        notes.extend(n for n in session.notes)
        t0 = time.monotonic()
        result = session.start(target.start_prompt, seed=seed)
        image = store.load_image(result.image)
        row: dict[str, Any] = {"round": 0, "prompt": result.prompt, "answer": None, "ae": False}
        row |= {
            "question_aspect": result.question.aspect if result.question else None,
            "image": result.image_path,
        }
        row |= scorers.round_metrics(image, target, None)
        row["seconds"] = round(time.monotonic() - t0, 3)
        rounds.append(row)
        for t in range(1, self.config.rounds):
            t0 = time.monotonic()
            reply = user.reply(result.question)
            asked = result.question.aspect if result.question else None
            new = session.refine(reply)
            new_image = store.load_image(new.image)
            choice, sim_old, sim_new = user.choose(image, new_image)
            session.choose(result.image.id, new.image.id, choice, source="eval")
            trained = None
            if cond.train:
                from ..optimizer.schedule import should_update

                if should_update(store, settings.update_every):
                    try:
                        version = engine.train(store)
                        trained = getattr(version, "name", None) or getattr(version, "id", None) or "done"
                    except TrainingError as exc:
                        notes.append(f"round {t}: the DPO update did not run ({exc.message})")
            row = {
                "round": t,
                "prompt": new.prompt,
                "asked": asked,
                "answer": getattr(reply, "text", None),
                "question_aspect": new.question.aspect if new.question else None,
                # regenerated with A&E; "ae_wanted": the image missed part of the prompt by the
                # threshold, whether or not A&E could act (an edit may start after its steps)
                "ae": any(w.startswith(AE_REGENERATED) for w in new.warnings),
                "ae_wanted": any("Attend-and-Excite" in w for w in new.warnings),
                "choice": choice.value,
                "adapter": new.image.adapter_version,
                "trained": trained,
                "image": new.image_path,
            }
            row |= scorers.round_metrics(new_image, target, image)
            row["seconds"] = round(time.monotonic() - t0, 3)
            rounds.append(row)
            notes.extend(w for w in new.warnings if "Attend-and-Excite" not in w)
            result, image = new, new_image

    # -- the whole run -------------------------------------------------------------------------

    def run(self, *, resume: bool = False, report: bool = True) -> dict[str, Any]:
        """Run every session not yet in the JSONL; then (main process) write the report.
        Returns {"ran", "skipped", "report"}."""
        if self.procs.is_main:  # one process checks and writes run.json; the others wait for it
            self.prepare_out(resume)
        self.procs.wait()
        done = {(r["condition"], r["target"]) for r in read_sessions(self.out)}
        targets = self.targets()
        mine = shard(list(enumerate(targets)), self.procs.index, self.procs.count)
        jobs = [(c, i, t) for c in self.conditions for i, t in mine if (c.name, t.id) not in done]
        skipped = len(mine) * len(self.conditions) - len(jobs)
        if skipped:
            print(f"resuming: {skipped} finished sessions kept, {len(jobs)} to run", file=self.stream)
        prefix = f"p{self.procs.index} " if self.procs.count > 1 else ""
        progress = Progress(len(jobs), self.stream, prefix)
        path = self.out / SESSION_FILE.format(rank=self.procs.index)
        try:
            for cond, index, target in jobs:
                row = self.run_session(cond, target, index)
                append_line(path, row)
                progress.tick(f"{cond.name} {target.id}")
        finally:
            self.close()
        self.procs.wait()
        written = None
        if report and self.procs.is_main:
            from .report import write_report

            written = write_report(self.out)
        return {"ran": len(jobs), "skipped": skipped, "report": written}


def command_line(config: EvalConfig, profile: str) -> str:
    """The ``tdri eval`` command that makes this run (written into run.json and the report)."""
    import shlex

    c = config
    parts = ["tdri", "eval", "--profile", profile, "--targets", str(c.targets), "--rounds", str(c.rounds)]
    parts += ["--conditions", ",".join(c.conditions), "--out", c.out]
    if c.source != WORLD:
        parts += ["--targets-from", c.source]
    for flag, value, default in (
        ("--target-seed", c.target_seed, 0),
        ("--seed", c.seed, 0),
        ("--steps", c.steps, None),
        ("--size", c.size, None),
        ("--device", c.device, "auto"),
        ("--dtype", c.dtype, "auto"),
        ("--judge", c.judge, None),
        ("--score-profile", c.score_profile, None),
        ("--threshold", c.threshold, I2I_SATISFIED),
        ("--augmenter", c.augmenter, "auto"),
    ):
        if value != default:
            parts += [flag, str(value)]
    if not c.use_pose:
        parts.append("--no-pose")
    for key, value in sorted(c.settings.items()):
        parts += ["--set", f"{key}={json.dumps(value)}"]
    return " ".join(shlex.quote(p) for p in parts)
