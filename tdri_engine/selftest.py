"""``tdri self-test`` (and ``tdri-studio --self-test``): does this install work, end to end?

Runs, in order, each as a named part whose failure stops the test and is named in the output:

1. ``versions`` — Python, TDRI Studio, torch (and its CUDA build), diffusers, transformers.
2. ``demo models`` — the demo models in the user's data folder: copied from the packaged build
   when it carries them (``tdri_engine.packaging.bundled``), else built (``tdri models demo``).
3. ``project`` — a new project in a temporary folder (removed afterwards; ``--keep`` keeps it).
4. ``refinement round`` — round 0 from a prompt, then one refinement round with feedback.
5. ``annotation save`` — the user's choice between the two images, read back from disk by a
   second, read-only opening of the project (what a restart would see).
6. ``DPO update`` — one preference-optimisation update of one optimizer step on two pairs; the
   LoRA version must be written with its weights.

The settings are the demo's smallest (64 px, 4 steps, Attend-and-Excite off, one DPO step): the
test proves the pieces are there and connected, not the images' quality. A summary with the
versions, the device and each part's time is printed; the exit code is 0 when every part passed,
1 otherwise (the failing part, its message and what to do are printed). Nothing heavy is
imported before the test runs, so ``tdri --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROMPT = "a woman in a red dress standing on a beach"
FEEDBACK = "make the dress longer"
# 64 px and 4 steps: the demo's tiny models at their cheapest (a round is ~1 s on 2 cores).
SETTINGS: dict[str, Any] = {"width": 64, "height": 64, "steps": 4, "use_attend_excite": False, "dpo_steps": 1}

Part = tuple[str, Callable[[dict[str, Any]], str]]  # (name, fn(context) -> one-line detail)


@dataclass
class PartResult:
    name: str
    ok: bool
    seconds: float
    detail: str = ""
    what_to_do: str = ""


@dataclass
class SelfTestReport:
    parts: list[PartResult] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    device: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.parts) and all(p.ok for p in self.parts)

    @property
    def failed(self) -> PartResult | None:
        return next((p for p in self.parts if not p.ok), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failed_part": self.failed.name if self.failed else None,
            "versions": self.versions,
            "device": self.device,
            "parts": [p.__dict__ for p in self.parts],
            "total_seconds": round(sum(p.seconds for p in self.parts), 2),
        }

    def summary(self) -> str:
        lines = ["TDRI self-test"]
        lines += [f"  {k}: {v}" for k, v in self.versions.items()]
        lines.append(f"  device: {self.device or 'unknown'}")
        for p in self.parts:
            mark = "ok  " if p.ok else "FAIL"
            lines.append(f"  [{mark}] {p.name:<18} {p.seconds:7.2f} s  {p.detail}")
        total = sum(p.seconds for p in self.parts)
        if self.ok:
            lines.append(f"self-test passed: {len(self.parts)} parts in {total:.1f} s")
        else:
            failed = self.failed
            assert failed is not None
            lines.append(f"self-test FAILED in part '{failed.name}': {failed.detail}")
            if failed.what_to_do:
                lines.append(f"what to do: {failed.what_to_do}")
        return "\n".join(lines)


# -- the parts -----------------------------------------------------------------------------------


def _versions(ctx: dict[str, Any]) -> str:
    import importlib.metadata as md

    import diffusers
    import torch
    import transformers

    try:
        ours = md.version("tdri-studio")
    except md.PackageNotFoundError:
        ours = "unknown (no package metadata)"
    cuda = torch.version.cuda
    versions = {
        "python": platform.python_version(),
        "tdri-studio": ours,
        "torch": f"{torch.__version__} ({f'CUDA {cuda} build' if cuda else 'CPU-only build'})",
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "frozen": "yes (packaged build)" if getattr(sys, "frozen", False) else "no",
    }
    ctx["report"].versions.update(versions)
    return f"torch {torch.__version__}"


def _demo_models(ctx: dict[str, Any]) -> str:
    from . import paths
    from .demo import ensure_demo_models
    from .packaging.bundled import seed_demo_models

    copied = seed_demo_models()
    built = ensure_demo_models()
    root = paths.demo_models_dir()
    how = f"copied from the bundle ({copied})" if copied else "found or built"
    return f"{len(built)} roles in {root}, {how}"


def _project(ctx: dict[str, Any]) -> str:
    from .models import demo_profile, resolve_device
    from .session import Engine
    from .settings import EngineSettings
    from .store import create_project

    settings = EngineSettings(**SETTINGS)
    folder = Path(tempfile.mkdtemp(prefix="tdri-selftest-"))
    ctx["folder"] = folder
    store = create_project(folder, "Self-test", settings=settings)
    ctx["store"] = store
    ctx["engine"] = Engine(demo_profile(), settings)
    ctx["report"].device = str(resolve_device(settings.device))
    return f"{store.path}"


def _refinement_round(ctx: dict[str, Any]) -> str:
    from .api import Feedback

    engine, store = ctx["engine"], ctx["store"]
    session = engine.open_session(store)
    first = session.start(PROMPT, seed=0)
    second = session.refine(Feedback(FEEDBACK))
    for result in (first, second):
        if not Path(result.image_path).is_file():
            raise RuntimeError(f"round {result.round}'s image {result.image_path} was not written")
    ctx["session"], ctx["images"] = session, (first.image.id, second.image.id)
    asked = f", asked about '{second.question.aspect}'" if second.question else ""
    return (
        f"rounds 0 and 1 generated {first.image.width}x{first.image.height}; prompt '{second.prompt}'{asked}"
    )


def _annotation_save(ctx: dict[str, Any]) -> str:
    from .records import Choice, PreferencePair
    from .store import open_project

    session, (a, b) = ctx["session"], ctx["images"]
    saved = [session.choose(a, b, Choice.RIGHT), session.choose(b, a, Choice.LEFT)]
    reread = open_project(ctx["store"].path, read_only=True)
    try:
        found = {p.id: p.choice for p in reread.all(PreferencePair)}
    finally:
        reread.close()
    lost = [p.id for p in saved if found.get(p.id) != p.choice]
    if lost:
        raise RuntimeError(f"the choices {lost} are not in the project on disk")
    return f"{len(saved)} choices saved and read back"


def _dpo_update(ctx: dict[str, Any]) -> str:
    engine, store = ctx["engine"], ctx["store"]
    version = engine.train(store)
    folder = store.loras_dir / version.id
    weights = sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []
    if version.steps < 1 or not weights:
        raise RuntimeError(f"the update wrote no LoRA weights (version {version.id}, {version.steps} steps)")
    loss = version.loss_curve[-1] if version.loss_curve else float("nan")
    return f"version {version.id}: {version.steps} step on {version.pairs_used} pairs, loss {loss:.4f}"


ENGINE_PARTS: tuple[Part, ...] = (
    ("versions", _versions),
    ("demo models", _demo_models),
    ("project", _project),
    ("refinement round", _refinement_round),
    ("annotation save", _annotation_save),
    ("DPO update", _dpo_update),
)


def run_selftest(extra: Sequence[Part] = (), *, keep: bool = False) -> SelfTestReport:
    """Run the engine's parts, then ``extra`` (the studio adds its window); stop at the first
    failure. The temporary project is removed unless ``keep``."""
    from .errors import TdriError

    report = SelfTestReport()
    ctx: dict[str, Any] = {"report": report}
    try:
        for name, fn in (*ENGINE_PARTS, *extra):
            started = time.perf_counter()
            try:
                detail = fn(ctx)
                report.parts.append(PartResult(name, True, time.perf_counter() - started, detail))
            except TdriError as exc:
                report.parts.append(
                    PartResult(name, False, time.perf_counter() - started, exc.message, exc.what_to_do)
                )
                break
            except Exception as exc:  # a self-test reports every failure as its part's, never a traceback
                report.parts.append(
                    PartResult(
                        name,
                        False,
                        time.perf_counter() - started,
                        f"{type(exc).__name__}: {exc}",
                        "Reinstall TDRI Studio; if it fails again, send this output to your IT.",
                    )
                )
                break
    finally:
        store = ctx.get("store")
        if store is not None:
            store.close()
        engine = ctx.get("engine")
        if engine is not None:
            engine.close()
        folder = ctx.get("folder")
        if folder is not None and not keep:
            shutil.rmtree(folder, ignore_errors=True)
    for part in report.parts:
        part.seconds = round(part.seconds, 3)
    return report


def main(extra: Sequence[Part] = (), *, keep: bool = False, as_json: bool = False) -> int:
    report = run_selftest(extra, keep=keep)
    print(json.dumps(report.to_dict(), indent=2) if as_json else report.summary(), flush=True)
    return 0 if report.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "self-test",
        help="check this install end to end on the demo models (a round, a choice, a DPO step)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary project (its path is printed)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=lambda args: main(keep=args.keep, as_json=args.json))
