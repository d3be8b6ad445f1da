"""The demo profile: tiny random models for every role, built on this machine with no download.

``build_demo_models`` writes one folder per role under ``<TDRI_HOME>/models/demo`` (or
``dest``) in the layout real weights use, so the demo exercises the real loading code. Every
role is built in a temporary folder and renamed into place: an interrupted build leaves no
half-written model. ``demo-profile.json`` records what was built. Seeds are fixed, so two
builds give the same weights.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from .. import paths
from ..errors import StorageError, TdriError

DEMO_VERSION = 1  # bump when a builder changes: older demo folders are rebuilt
MARKER = "demo-profile.json"
DIFFUSION_ROLES = ("generator", "controlnet", "pose")
LANGUAGE_ROLES = ("vlm", "clip", "blip", "llm")

ProgressFn = Callable[[int, int, str], None]  # (step, total, message)


def _read_marker(root: Path) -> dict:
    try:
        return json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_marker(root: Path, roles: dict[str, Path]) -> None:
    from ..models import DEMO_KINDS

    data = {
        "version": DEMO_VERSION,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "roles": {r: {"kind": DEMO_KINDS.get(r, ""), "path": str(p)} for r, p in roles.items()},
    }
    tmp = root / f".{MARKER}.{secrets.token_hex(4)}"
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, root / MARKER)


def _complete(root: Path, role: str) -> bool:
    from ..models import DEMO_KINDS, missing_files

    folder = root / role
    return folder.is_dir() and not missing_files(folder, DEMO_KINDS[role])


def _build_atomically(target: Path, build: Callable[[Path], object]) -> None:
    """Build into a sibling temp folder swapped into place (the language models' helper)."""
    from .language import _atomic_folder

    try:
        with _atomic_folder(target) as tmp:
            build(tmp)
    except OSError as exc:
        raise StorageError(
            f"Could not write the demo model '{target.name}' into {target.parent}: {exc.strerror or exc}.",
            "Check free disk space and that the folder is writable, or set TDRI_HOME to another folder.",
        ) from exc


def build_demo_models(
    dest: Path | None = None,
    *,
    force: bool = False,
    on_progress: ProgressFn | None = None,
) -> dict[str, Path]:
    """Build every demo role that is missing (all of them with ``force``); returns role -> folder."""
    from . import diffusion

    root = Path(dest) if dest is not None else paths.demo_models_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"Could not create the demo models folder {root}: {exc.strerror or exc}.",
            "Choose a writable folder with --dest, or set TDRI_HOME.",
        ) from exc
    if _read_marker(root).get("version") not in (None, DEMO_VERSION):
        force = True  # built by an older version of the builders
    report = on_progress or (lambda step, total, message: None)
    builders: dict[str, Callable[[Path], object]] = {
        "generator": lambda d: diffusion.build_sd_pipeline(d, seed=0),
        "controlnet": lambda d: diffusion.build_pose_controlnet(d, root / "generator", seed=1),
        "pose": lambda d: diffusion.build_openpose_body(d, seed=2),
    }
    total = len(DIFFUSION_ROLES) + 1
    built: dict[str, Path] = {}
    for i, role in enumerate(DIFFUSION_ROLES, start=1):
        if force or not _complete(root, role):
            report(i, total, f"building the demo {role} model")
            _build_atomically(root / role, builders[role])
        built[role] = root / role
    report(total, total, "building the demo language models (captioner, CLIP, BLIP, LLM)")
    built.update(_build_language(root, force))
    _write_marker(root, built)
    return built


def _build_language(root: Path, force: bool) -> dict[str, Path]:
    try:
        from .language import build_language_models
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.language":
            raise
        raise TdriError(
            "This build has no demo language models (tdri_engine.demo.language is missing).",
            "Install the complete TDRI engine.",
            kind="model-kind",
        ) from None
    wanted = [r for r in LANGUAGE_ROLES if force or not _complete(root, r)]
    if wanted:
        build_language_models(root, wanted)  # each role is written atomically by the builder
    return {r: root / r for r in LANGUAGE_ROLES}


def demo_models_ready(dest: Path | None = None) -> bool:
    root = Path(dest) if dest is not None else paths.demo_models_dir()
    marker = _read_marker(root)
    return marker.get("version") == DEMO_VERSION and all(
        _complete(root, r) for r in DIFFUSION_ROLES + LANGUAGE_ROLES
    )


def ensure_demo_models(dest: Path | None = None, *, on_progress: ProgressFn | None = None) -> dict[str, Path]:
    """Build the demo models only when some are missing; cheap when they are all there."""
    root = Path(dest) if dest is not None else paths.demo_models_dir()
    if demo_models_ready(root):
        return {r: root / r for r in DIFFUSION_ROLES + LANGUAGE_ROLES}
    return build_demo_models(root, on_progress=on_progress)
