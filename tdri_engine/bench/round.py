"""``tdri bench round``: whole refinement rounds through the real session, timed per stage.

    nice -n 10 tdri bench round --profile demo --out docs/bench/round_cpu.json     # CPU stage table
    tdri bench round --profile sd15 --device cuda --out docs/bench/round_gpu.json  # random weights

A round is what the studio runs between two replies: D2P (the summarizer's next prompt and the
eq. (2) blend), generation (pose ControlNet, editing the previous image by default), FR (the
VLM's seven aspect captions in one batched call, CLIP scores, ambiguity, the question), and the
write of the round to the project. The session (``tdri_engine.session``) runs unchanged; the
stages are timed from outside by wrapping the calls it makes on its parts (each wrapper
synchronises the device before reading the clock):

============== =====================================================================
d2p            ``session._summarize`` (the Summarizer)
generate       ``Generator.generate`` (prompt encoding, denoising, VAE decode)
attend_excite  ``Generator.generate`` with Attend-and-Excite's step hook, and CLIP's check
pose           round 0's pose extraction (between its Progress events)
fr_captions    the captioner's ``caption_many`` (seven aspects, one batched generate)
fr_clip        CLIP's image-text scores of the seven captions
fr_rest        the rest of ``session._reflect`` (ambiguity, the question)
store          ``session._commit`` (PNG with provenance, the records in one transaction)
other          the round's wall time minus the stages (eq. (2) blend encoding, events ...)
============== =====================================================================

Profiles: ``demo`` is the demo profile's tiny models loaded from disk through the real loaders
(the CPU table; the demo caps images at 64 px and 8 steps). ``sd15`` and ``sdxl`` put random
weights of the real architectures into the engine's registry (``tdri_engine.bench.archs``:
SD-1.5 + OpenPose ControlNet or SDXL, Qwen2-VL-2B, CLIP ViT-B/32, the OpenPose body network),
so they run on a bare GPU machine with no weights and no network. ``tiny`` is the same
injection with the tiny architectures (to check it on a CPU).

Round 0 (text-to-image, pose) is reported on its own as the process's first image; then
``--rounds`` refine rounds: the first is cold (first ControlNet edit, first blend), warm is the
median of the others, per stage. Random networks find no person, so a fixed skeleton stands in
when the pose network (which still runs and is timed) returns nobody: later rounds then run with
the pose ControlNet as with a person in the picture. Random CLIP scores every image as off-prompt,
which would trigger Attend-and-Excite in every round; it is off unless ``--attend-excite``.
Random VLMs never emit the end token: every caption runs to the captioner's 40-token limit, an
upper bound of the decode time.

Round-level levers the stage table is ready to show (besides the generator's, see
``tdri_engine.bench.generate``): the seven captions already share one batched ``generate``
(one prefill of the image per row today; a shared image prefill would shrink ``fr_captions``),
CLIP scoring overlapped with captioning (``fr_clip`` leaving the critical path: the round's total
drops by it while the stage times stay), the next round's text encoding overlapped with
reflection, and models kept resident between rounds (``models.ready_s`` is paid once; the peak
memory per round shows what residency costs).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from . import report

PROFILES: tuple[str, ...] = ("demo", "sd15", "sdxl", "tiny")
STAGES: tuple[str, ...] = (
    "d2p",
    "generate",
    "attend_excite",
    "pose",
    "fr_captions",
    "fr_clip",
    "fr_rest",
    "store",
    "other",
)
PROMPT = "a woman in a summer dress on a beach"
REPLIES = ("red", "silk", "at sunset", "watercolor", "close-up", "smiling")
# A standing figure in the OpenPose COCO-18 layout (x, y, confidence), normalised.
FIXED_PERSON = [
    (0.50, 0.15, 1.0), (0.50, 0.25, 1.0), (0.40, 0.25, 1.0), (0.36, 0.40, 1.0), (0.34, 0.55, 1.0),
    (0.60, 0.25, 1.0), (0.64, 0.40, 1.0), (0.66, 0.55, 1.0), (0.44, 0.55, 1.0), (0.43, 0.72, 1.0),
    (0.42, 0.90, 1.0), (0.56, 0.55, 1.0), (0.57, 0.72, 1.0), (0.58, 0.90, 1.0), (0.48, 0.13, 1.0),
    (0.52, 0.13, 1.0), (0.46, 0.14, 1.0), (0.54, 0.14, 1.0),
]  # fmt: skip


class StageClock:
    """Per-stage seconds of the current round, filled by wrappers around the session's calls."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.stages: dict[str, float] = defaultdict(float)
        self.in_reflect = False
        self._pose_t0: float | None = None

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage] += seconds

    def wrap(self, obj: Any, attr: str, stage: Any) -> None:
        """Replace ``obj.attr`` (on the instance only) by a timed call; ``stage`` names the
        stage, or is a function of the call's arguments that does."""
        inner = getattr(obj, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            name = stage(*args, **kwargs) if callable(stage) else stage
            report.sync(self.device)
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                report.sync(self.device)
                self.add(name, time.perf_counter() - t0)

        setattr(obj, attr, timed)

    def on_event(self, event: Any) -> None:
        if type(event).__name__ == "Progress" and event.stage == "pose":
            now = time.perf_counter()
            if event.step == 0:
                self._pose_t0 = now
            elif self._pose_t0 is not None:
                self.add("pose", now - self._pose_t0)
                self._pose_t0 = None

    def take(self, wall_s: float) -> dict[str, float]:
        s = dict(self.stages)
        s["fr_rest"] = s.pop("fr_total", 0.0) - s.get("fr_captions", 0.0) - s.get("fr_clip", 0.0)
        s["other"] = wall_s - sum(v for k, v in s.items())
        self.stages = defaultdict(float)
        return {k: round(s.get(k, 0.0), 4) for k in STAGES}


def _instrument(session: Any, engine: Any, clock: StageClock) -> None:
    clock.wrap(session, "_summarize", "d2p")
    clock.wrap(session, "_commit", "store")

    inner_reflect = session._reflect

    def reflect(*args: Any, **kwargs: Any) -> Any:
        clock.in_reflect = True
        try:
            return inner_reflect(*args, **kwargs)
        finally:
            clock.in_reflect = False

    session._reflect = reflect
    clock.wrap(session, "_reflect", "fr_total")
    gen = engine.generator
    clock.wrap(
        gen, "generate", lambda *a, **k: "attend_excite" if k.get("extra_step_callback") else "generate"
    )
    clock.wrap(engine.registry.get("vlm"), "caption_many", "fr_captions")
    clip = engine.registry.get("clip")
    # image_text() calls image_text_with_warnings(): one wrapper sees FR's scores and A&E's check
    clock.wrap(
        clip, "image_text_with_warnings", lambda *a, **k: "fr_clip" if clock.in_reflect else "attend_excite"
    )


def _engine(
    profile: str, settings: Any, device: Any, dtype: Any, fast: Any = None
) -> tuple[Any, dict[str, Any]]:
    """The Engine for ``profile``, its models ready; and how they were made (with seconds).
    ``fast``: a ``fastpath.FastPath`` applied to the generator and ControlNet (injected profiles)."""
    from ..models import ModelProfile, RoleSpec
    from ..session import Engine

    t0 = time.perf_counter()
    if profile == "demo":
        from ..demo import demo_models_ready

        built = not demo_models_ready()
        engine = Engine("demo", settings)
        engine.prepare()  # builds the demo models on first use, then loads every round role
        info = {"models": "demo profile: tiny random models loaded from disk", "built_demo_models": built}
    else:
        from . import archs

        arch = {"sd15": "sd15-controlnet", "sdxl": "sdxl", "tiny": "tiny"}[profile]
        vlm_arch, clip_arch = ("tiny", "tiny") if profile == "tiny" else ("qwen2-vl-2b", "clip-vit-b32")
        c = archs.build_components(arch, device, dtype)
        if c.controlnet is None:  # SDXL: the OpenPose ControlNet is the UNet's encoder too
            c.controlnet = _sdxl_controlnet(c, device, dtype)
        source = "random weights (tdri_engine.bench.archs)"
        kinds = {
            "generator": c.pipeline_kind,
            "controlnet": "controlnet",
            "pose": "openpose",
            "vlm": "image-text-to-text",
            "clip": "hf-clip",
        }
        roles = {r: RoleSpec(r, k, f"{source}: {r}") for r, k in kinds.items()}
        engine = Engine(ModelProfile(f"bench-{profile}", roles, description=source), settings)
        pipe = archs.text2img_pipeline(c)
        fast_notes = fast.apply(pipe, c.controlnet) if fast is not None else []
        engine.registry.put("generator", pipe)
        engine.registry.put("controlnet", c.controlnet)
        engine.registry.put("pose", archs.build_pose(device))
        engine.registry.put("vlm", archs.build_vlm(vlm_arch, device, dtype))
        engine.registry.put("clip", archs.build_clip(clip_arch, device, dtype))
        info = {
            "models": f"random weights of {arch}, VLM {vlm_arch}, CLIP {clip_arch}, OpenPose body",
            "parameters": c.parameters,
            "fast_path": fast_notes,
        }
    report.sync(device)
    info["ready_s"] = round(time.perf_counter() - t0, 3)
    info["memory_when_ready"] = report.memory(device)  # cuda_allocated_gib: the resident models
    pose_net = engine.registry.get("pose")
    engine.pose_detector = lambda image: pose_net(image) or [list(FIXED_PERSON)]
    return engine, info


def _sdxl_controlnet(c: Any, device: Any, dtype: Any) -> Any:
    """thibaud/controlnet-openpose-sdxl-1.0's architecture: ControlNetModel.from_unet of SDXL."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(1)
    with torch.device(device):
        cn = ControlNetModel.from_unet(c.parts["unet"])
    return cn.to(device=device, dtype=dtype).eval().requires_grad_(False)


def _reply(result: Any, i: int) -> Any:
    from ..api import Answer, Feedback

    word = REPLIES[i % len(REPLIES)]
    if result.question is not None:
        return Answer(result.question.aspect, word)
    return Feedback(f"make it {word}")


def _stage_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """cold = the first refine round, warm = the median of the others, per stage and in total."""
    out: dict[str, Any] = {}
    for key in ("total_s", "process_cpu_s", *STAGES):
        values = [r[key] if key.endswith("_s") else r["stages"][key] for r in rounds]
        rest = values[1:]
        out[key] = {
            "cold": round(values[0], 4) if values else None,
            "warm": round(statistics.median(rest), 4) if rest else None,
        }
    return out


def run(
    profile: str = "demo",
    *,
    device: str = "auto",
    dtype: str = "auto",
    rounds: int = 4,
    steps: int | None = None,
    size: int | None = None,
    seed: int = 7,
    attend_excite: bool = False,
    notes: list[str] | None = None,
    fast: Any = None,
) -> dict[str, Any]:
    """The round benchmark as one JSON-ready dict; ``fast``: fast-path levers of the generator
    (``tdri_engine.fastpath``: a FastPath or "sdpa,channels_last"; injected profiles only)."""
    from ..errors import BadInput
    from ..fastpath import FastPath
    from ..fastpath import parse as parse_fast
    from ..models import resolve_device, resolve_dtype
    from ..settings import EngineSettings
    from ..store import create_project

    if profile not in PROFILES:
        raise BadInput(f"Unknown benchmark profile '{profile}'.", f"Use one of: {', '.join(PROFILES)}.")
    if rounds < 2:
        raise BadInput(
            "--rounds must be at least 2 (one cold refine round, warm ones after).", "Pass --rounds 4."
        )
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    default_size = {"sdxl": 1024, "tiny": 64}.get(profile, 512)
    settings = EngineSettings(
        steps=steps or (4 if profile == "tiny" else 30),
        width=size or default_size,
        height=size or default_size,
        device=str(dev),
        dtype=dtype,
        use_attend_excite=attend_excite,
        seed=seed,
    )
    rid = report.run_id()
    report.reset_peak(dev)
    fast_path = fast if isinstance(fast, FastPath) else parse_fast(fast)
    if fast_path.any and profile == "demo":
        raise BadInput(
            "--fast applies to the injected profiles (sd15, sdxl, tiny).",
            "For the demo profile, name the levers in its generator options (fast_path).",
        )
    engine, info = _engine(profile, settings, dev, torch_dtype, fast_path)
    clock = StageClock(dev)
    per_round: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tdri-bench-round-") as tmp:
        store = create_project(Path(tmp), "bench round", profile=engine.profile_name, settings=settings)
        try:
            session = engine.open_session(store, on_event=clock.on_event, settings=settings)
            _instrument(session, engine, clock)
            result = None
            for i in range(1 + rounds):
                report.reset_peak(dev)
                c0 = time.process_time()
                t0 = time.perf_counter()
                if i == 0:
                    result = session.start(PROMPT, seed=seed)
                else:
                    result = session.refine(_reply(result, i))
                report.sync(dev)
                wall = time.perf_counter() - t0
                cpu = time.process_time() - c0
                per_round.append(
                    {
                        "round": i,
                        "kind": "start" if i == 0 else "refine",
                        "total_s": round(wall, 4),
                        # CPU seconds of this process (all threads): on a shared machine, less
                        # sensitive to other jobs than the wall time
                        "process_cpu_s": round(cpu, 4),
                        "stages": clock.take(wall),
                        "asked": result.question is not None,
                        "pose_found": result.pose_found,
                        "memory": report.memory(dev),
                    }
                )
            effective = session.settings
        finally:
            store.close()
    refine = per_round[1:]
    return {
        "benchmark": "tdri bench round",
        "run_id": rid,
        "environment": report.environment(dev),
        "settings": {
            "profile": profile,
            "steps": effective.steps,
            "width": effective.width,
            "height": effective.height,
            "guidance": effective.guidance,
            "refine_mode": effective.refine_mode,
            "edit_strength": effective.edit_strength,
            "dtype": dtype,
            "dtype_effective": str(torch_dtype).replace("torch.", ""),
            "attend_excite": attend_excite,
            "summarizer": effective.summarizer,
            "aspects_captioned": 7,
            "prompt": PROMPT,
            "seed": seed,
            "refine_rounds": rounds,
            "fast_path": fast_path.to_dict(),
        },
        "models": info,
        "round0_first_image": per_round[0],
        "refine": _stage_summary(refine),
        "rounds": per_round,
        "peak_memory": {
            "cuda_peak_gib_max_over_rounds": max(
                (r["memory"]["cuda_peak_gib"] or 0.0 for r in per_round), default=None
            )
            if dev.type == "cuda"
            else None,
            "process_peak_rss_gib": per_round[-1]["memory"]["process_peak_rss_gib"],
        },
        "notes": list(notes or [])
        + [
            "stage times from wrappers around the session's calls; 'other' = wall time minus the stages",
            "refine.cold = the first refine round (first pose-ControlNet edit), refine.warm = median of the rest",
        ],
    }


def register(sub: Any) -> None:
    p = sub.add_parser(
        "round",
        help="whole refinement rounds through the real session, per-stage times (JSON)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--profile", choices=PROFILES, default="demo")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp16", "bf16", "fp32"))
    p.add_argument("--rounds", type=int, default=4, help="refine rounds after round 0 (cold + warm)")
    p.add_argument("--steps", type=int, default=None, help="30 (the demo profile caps at 8)")
    p.add_argument("--size", type=int, default=None, help="512, sdxl 1024 (the demo profile caps at 64)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--attend-excite", action="store_true", help="let Attend-and-Excite run when CLIP asks")
    p.add_argument("--note", action="append", default=[], help="a note to keep in the JSON (repeatable)")
    p.add_argument("--fast", default="none", help="fast-path levers of the generator (see bench generate)")
    p.add_argument("--out", default=None, help="write the JSON here too")
    p.set_defaults(func=_main)


def _main(args: Any) -> int:
    data = run(
        args.profile,
        device=args.device,
        dtype=args.dtype,
        rounds=args.rounds,
        steps=args.steps,
        size=args.size,
        seed=args.seed,
        attend_excite=args.attend_excite,
        notes=args.note,
        fast=args.fast,
    )
    print(report.write_json(data, args.out))
    return 0
