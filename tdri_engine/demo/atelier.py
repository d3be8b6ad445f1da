"""The Atelier profile's models: the committed, trained weights installed on this machine.

The Atelier's trained models (``tdri_engine/atelier/weights/<role>``, safetensors only, trained by
``tdri world train``) ship with the engine. ``install_atelier_models`` copies them into
``<TDRI_HOME>/models/atelier/<role>`` (a few MB, seconds): each file is hashed (SHA-256) before
and after the copy and the copy is refused when the two differ, and a ``.safetensors`` file that is
not one (a Git LFS pointer, a truncated checkout) is refused with a message. Each role is copied
into a temporary folder renamed into place, so an interrupted install leaves no half model.

Copying rather than pointing the profile into the package keeps one code path with every other
profile (a model folder under the user's data folder, judged by the trust policy), works the same
from a read-only packaged build, and lets ``--force`` repair a user's copy without touching the
package.

Roles the Atelier has no trained model for (today ``pose`` and ``llm``, and any role whose
weights are not committed yet) come from the tiny demo models (``tdri_engine.demo``), which are
built next to them. The ``controlnet`` role must match the generator's UNet, so where the Atelier
generator is committed a ControlNet is derived from it (diffusers ``ControlNetModel.from_unet``:
the UNet's encoder and zero-initialised output convolutions, so it leaves the generator's images
as they are until trained) instead of the demo ControlNet, which matches only the demo UNet.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import ModelBroken, StorageError

ATELIER_VERSION = 1  # bump when the install layout changes: older copies are reinstalled
MARKER = "atelier-models.json"
BUNDLED_WEIGHTS = "atelier_weights"  # folder name inside a packaged build (build.spec writes it)
# Roles the Atelier recipe trains, with the kind each committed folder has (its real format).
TRAINED_KINDS: dict[str, str] = {
    "generator": "sd15",
    "clip": "hf-clip",
    "vlm": "image-text-to-text",
    "blip": "blip-itm",
}
DERIVED = "controlnet"  # built here from the committed generator (see the module docstring)

ProgressFn = Callable[[int, int, str], None]


def atelier_models_dir() -> Path:
    """Where the Atelier models are installed: ``<TDRI_HOME>/models/atelier``."""
    return paths.tdri_home() / "models" / "atelier"


def committed_weights_dir() -> Path:
    """The committed weights: ``TDRI_ATELIER_WEIGHTS`` when set (tests, other installs), a
    packaged build's ``<bundle>/atelier_weights``, else the engine package's ``atelier/weights``."""
    env = os.environ.get("TDRI_ATELIER_WEIGHTS")
    if env:
        return Path(env)
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen and (Path(frozen) / BUNDLED_WEIGHTS).is_dir():
        return Path(frozen) / BUNDLED_WEIGHTS
    return Path(__file__).resolve().parent.parent / "atelier" / "weights"


def committed_roles(weights: Path | None = None) -> dict[str, Path]:
    """Role -> committed folder, for the trained roles whose folder is complete for its kind."""
    from ..models import missing_files

    root = weights if weights is not None else committed_weights_dir()
    out: dict[str, Path] = {}
    for role, kind in TRAINED_KINDS.items():
        folder = root / role
        if folder.is_dir() and not missing_files(folder, kind):
            out[role] = folder
    return out


def role_sources(weights: Path | None = None, dest: Path | None = None) -> dict[str, tuple[str, Path]]:
    """Every role of the Atelier profile -> (kind, folder): the installed copy of a committed
    model, the ControlNet derived from the committed generator, else the tiny demo model."""
    from ..models import DEMO_KINDS, ROLES

    root = dest if dest is not None else atelier_models_dir()
    committed = committed_roles(weights)
    demo_root = paths.demo_models_dir()
    out: dict[str, tuple[str, Path]] = {}
    for role in ROLES:
        if role in committed:
            out[role] = (TRAINED_KINDS[role], root / role)
        elif role == DERIVED and "generator" in committed:
            out[role] = (DEMO_KINDS[role], root / role)
        else:
            out[role] = (DEMO_KINDS[role], demo_root / role)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def check_safetensors(path: Path) -> str:
    """Why ``path`` is not a safetensors file ("" when its header reads as one).

    A safetensors file starts with the header's length (8 bytes, little endian) and the header, a
    JSON object. A Git LFS pointer or a file cut short fails here, before a loader fails on it.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return "shorter than a safetensors header"
            n = int.from_bytes(head, "little")
            if n <= 1 or 8 + n > size:
                start = head + fh.read(40)
                if start.startswith(b"version https://git-lfs"):
                    return "a Git LFS pointer, not the weights (run `git lfs pull`)"
                return "its header length does not fit the file (cut short?)"
            header = fh.read(n)
        if not header.lstrip().startswith(b"{"):
            return "its header is not JSON"
        json.loads(header)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    except ValueError:
        return "its header is not JSON"
    return ""


def manifest(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file of ``folder``."""
    return {p.relative_to(folder).as_posix(): _sha256(p) for p in _files(folder)}


def _sizes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in _files(folder)}


def _read_marker(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _copy_role(source: Path, target: Path) -> dict[str, str]:
    """Copy ``source`` to ``target`` (atomically); returns the verified manifest."""
    from .language import _atomic_folder

    for path in _files(source):
        if path.suffix == ".safetensors":
            why = check_safetensors(path)
            if why:
                raise ModelBroken(
                    f"The committed Atelier weights {path} are {why}.",
                    "Restore the file from the repository (or reinstall the engine), then run "
                    "`tdri models demo` again.",
                )
    want = manifest(source)
    try:
        with _atomic_folder(target) as tmp:
            for rel in want:
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / rel, out)  # files only: a read-only package stays so
            got = manifest(tmp)
            if got != want:
                bad = sorted(k for k in want if got.get(k) != want[k])
                raise StorageError(
                    f"The copy of the Atelier '{target.name}' model differs from the original in "
                    f"{', '.join(bad[:3])}.",
                    "Check free disk space and the disk's health, then run `tdri models demo --force`.",
                )
    except OSError as exc:
        raise StorageError(
            f"Could not install the Atelier model '{target.name}' into {target.parent}: {exc.strerror or exc}.",
            "Check free disk space and that the folder is writable, or set TDRI_HOME to another folder.",
        ) from exc
    return want


def build_controlnet(dest: Path, generator_dir: Path, seed: int = 1) -> Path:
    """A pose ControlNet derived from the Atelier UNet (``from_unet``), its conditioning
    embedding downsampling as the VAE does (2^(VAE levels - 1)), so control and latents align."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(generator_dir / "unet", local_files_only=True)
    vae_config = json.loads((generator_dir / "vae" / "config.json").read_text(encoding="utf-8"))
    levels = len(vae_config.get("block_out_channels", (0, 0, 0, 0)))
    channels = tuple(16 * 2**i for i in range(levels))
    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels)
    controlnet.save_pretrained(dest, safe_serialization=True)
    return dest


_COMMITTED_HASHES: dict[tuple[str, tuple[tuple[str, int, int], ...]], dict[str, str]] = {}


def committed_manifest(folder: Path) -> dict[str, str]:
    """``manifest`` of a committed role, computed once per process for the same files (path,
    size, modification time): the shipped weights are read-only and about 30 MB in all."""
    stats = tuple(
        (p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in _files(folder)
    )
    key = (str(folder), stats)
    if key not in _COMMITTED_HASHES:
        _COMMITTED_HASHES[key] = manifest(folder)
    return _COMMITTED_HASHES[key]


def atelier_models_ready(dest: Path | None = None, weights: Path | None = None) -> bool:
    """Whether ``dest`` holds this version's copy of every committed role and the derived
    ControlNet: the hashes the install recorded must be the committed files' (retrained weights
    of the same architecture have the same sizes: an upgrade must still replace them), and the
    copy's sizes must be theirs (a damaged copy is seen without hashing it)."""
    from ..models import DEMO_KINDS, missing_files

    root = dest if dest is not None else atelier_models_dir()
    marker = _read_marker(root)
    if marker.get("version") != ATELIER_VERSION:
        return False
    installed = marker.get("roles", {})
    committed = committed_roles(weights)
    for role, folder in committed.items():
        entry = installed.get(role)
        if not isinstance(entry, dict) or not (root / role).is_dir():
            return False
        if _sizes(folder) != _sizes(root / role) or entry.get("files") != committed_manifest(folder):
            return False
    if "generator" in committed:
        cn = root / DERIVED
        if not cn.is_dir() or missing_files(cn, DEMO_KINDS[DERIVED]) or DERIVED not in installed:
            return False
    return True


def install_atelier_models(
    dest: Path | None = None,
    *,
    force: bool = False,
    weights: Path | None = None,
    on_progress: ProgressFn | None = None,
    demo: bool = True,
) -> dict[str, Path]:
    """Install the committed Atelier models into ``dest`` (default ``<TDRI_HOME>/models/atelier``)
    and, with ``demo``, build the tiny demo models its other roles use. Returns role -> folder
    for every role of the profile. Roles already installed from the same files are kept."""
    from ..models import DEMO_KINDS, missing_files

    root = Path(dest) if dest is not None else atelier_models_dir()
    report = on_progress or (lambda step, total, message: None)
    committed = committed_roles(weights)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"Could not create the Atelier models folder {root}: {exc.strerror or exc}.",
            "Choose a writable folder with --dest, or set TDRI_HOME.",
        ) from exc
    marker = _read_marker(root)
    if marker.get("version") != ATELIER_VERSION:
        force, marker = True, {}
    installed: dict[str, Any] = dict(marker.get("roles", {})) if isinstance(marker.get("roles"), dict) else {}
    steps = len(committed) + ("generator" in committed) + demo
    step = 0
    for role, folder in committed.items():
        step += 1
        entry = installed.get(role)
        same = (
            isinstance(entry, dict)
            and (root / role).is_dir()
            and set(entry.get("files", {})) == set(_sizes(folder))
            and _sizes(folder) == _sizes(root / role)
        )
        if (
            force
            or not same
            or not isinstance(entry, dict)
            or entry.get("files") != committed_manifest(folder)
        ):
            report(step, steps, f"installing the Atelier {role} model")
            installed[role] = {"kind": TRAINED_KINDS[role], "files": _copy_role(folder, root / role)}
    stale = [r for r in installed if r in TRAINED_KINDS and r not in committed]
    for role in stale:  # a model the package no longer carries: the profile uses the demo's now
        installed.pop(role, None)
        shutil.rmtree(root / role, ignore_errors=True)
    if "generator" in committed:
        step += 1
        cn = root / DERIVED
        gen_files = installed["generator"]["files"]
        entry = installed.get(DERIVED)
        fresh = (
            isinstance(entry, dict)
            and entry.get("from") == gen_files.get("unet/diffusion_pytorch_model.safetensors")
            and cn.is_dir()
            and not missing_files(cn, DEMO_KINDS[DERIVED])
        )
        if force or not fresh:
            report(step, steps, "deriving the Atelier pose ControlNet from its UNet")
            from .language import _atomic_folder

            with _atomic_folder(cn) as tmp:
                build_controlnet(tmp, root / "generator")
            installed[DERIVED] = {
                "kind": DEMO_KINDS[DERIVED],
                "from": gen_files.get("unet/diffusion_pytorch_model.safetensors"),
            }
    else:
        installed.pop(DERIVED, None)
    if demo:
        from . import ensure_demo_models

        report(steps, steps, "building the tiny demo models for the other roles")
        ensure_demo_models()
    data = {
        "version": ATELIER_VERSION,
        "installed": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "source": str(weights if weights is not None else committed_weights_dir()),
        "roles": installed,
    }
    tmp_marker = root / f".{MARKER}.tmp"
    tmp_marker.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp_marker, root / MARKER)
    return {role: folder for role, (_kind, folder) in role_sources(weights, root).items()}


def ensure_atelier_models(on_progress: ProgressFn | None = None) -> dict[str, Path]:
    """Install what is missing (cheap when everything is there): the Atelier copies and the
    tiny demo models its other roles use."""
    from . import demo_models_ready, ensure_demo_models

    if not atelier_models_ready():
        return install_atelier_models(on_progress=on_progress)
    if not demo_models_ready():
        ensure_demo_models(on_progress=on_progress)
    return {role: folder for role, (_kind, folder) in role_sources().items()}


def uses_atelier(profile: Any) -> bool:
    """Whether any role of ``profile`` is read from the installed Atelier folder."""
    root = atelier_models_dir().resolve()
    for spec in profile.roles.values():
        try:
            if Path(spec.source).expanduser().resolve().is_relative_to(root):
                return True
        except (OSError, ValueError):
            continue
    return False
