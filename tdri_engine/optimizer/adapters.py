"""Versioned LoRA adapters: list, activate, roll back, validate.

Layout (one folder per version, written atomically by the trainer)::

    <project>/loras/v0001/pytorch_lora_weights.safetensors   diffusers format, plain
    <project>/loras/v0001/meta.json                          parent, pairs, loss curve, accuracy ...
    <TDRI_HOME>/user_adapters/v0001/...                      the user's generalised adapters
    <TDRI_HOME>/user_adapters/index.json                     their records and the active one

A project's versions are ``AdapterVersion`` records in its store; the active one is the project
meta ``active_adapter``. The meta ``adapter_scope`` ("project", the default, or "user") says
whether the project generates with its own (sample-specific) adapter or the user's generalised
one (paper table 5). Nothing here unpickles anything: weights are only read as safetensors.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import AdapterError, BadInput
from ..records import AdapterVersion

WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
CONTROLNET_WEIGHTS_NAME = "controlnet_lora_weights.safetensors"
META_NAME = "meta.json"
SCOPES = ("project", "user")
_VERSION = re.compile(r"^v(\d{4,})$")
_user_lock = threading.Lock()


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _lora_module_key(key: str) -> tuple[str, str] | None:
    """('unet.down_blocks...to_q', 'down'|'up') for a LoRA weight key in any common naming."""
    for suffix, part in (
        (".lora.down.weight", "down"),
        (".lora.up.weight", "up"),
        (".lora_A.weight", "down"),
        (".lora_B.weight", "up"),
        (".lora_down.weight", "down"),
        (".lora_up.weight", "up"),
    ):
        if key.endswith(suffix):
            return key[: -len(suffix)], part
    return None


def pickled_weights(folder: Path) -> list[Path]:
    """Pickled weight files in an adapter folder (``.bin``, ``.pt`` ...): refused, never read."""
    from ..trust import PICKLE_SUFFIXES

    try:
        return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)
    except OSError:
        return []


def validate_adapter_dir(path: Path | str, unet: Any = None) -> None:
    """Raise ``AdapterError`` unless ``path`` holds a readable diffusers-format UNet LoRA.

    Checks: the weights file exists and is a safetensors file; every tensor is a LoRA down/up
    weight (or a LoRA alpha) of the UNet (``unet.`` keys) or the text encoder; each down has its
    up with the same rank; values are finite. With ``unet``, every LoRA must sit on a module of
    that UNet with matching input and output sizes (an SDXL LoRA on SD-1.5 is refused).
    """
    folder = Path(path)
    weights = folder / WEIGHTS_NAME
    if not folder.is_dir():
        raise AdapterError(f"The adapter folder {folder} does not exist.", "Choose another adapter version.")
    if not weights.is_file():
        pickles = pickled_weights(folder)
        if pickles:
            raise AdapterError(
                f"The adapter in {folder} was refused: its weights {pickles[0].name} are a pickle "
                f"(loading a pickle can run code), and adapters are read only from {WEIGHTS_NAME}.",
                "Convert it on a machine you trust (diffusers' save_lora_weights(..., safe_serialization="
                "True)), or choose another adapter version.",
            )
        raise AdapterError(
            f"The adapter folder {folder} has no {WEIGHTS_NAME}.",
            "Choose another adapter version, or train again.",
        )
    import torch
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            keys = list(f.keys())
            tensors = {k: f.get_tensor(k) for k in keys}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AdapterError(
            f"The adapter file {weights} is not a readable safetensors file ({exc}).",
            "The file is damaged: choose another version (the active one stays as it was).",
        ) from exc
    if not keys:
        raise AdapterError(f"The adapter file {weights} holds no weights.", "Choose another adapter version.")
    pairs: dict[str, dict[str, Any]] = {}
    foreign = []
    for key in keys:
        if key.endswith(".alpha"):
            continue
        parsed = _lora_module_key(key)
        if parsed is None or not key.startswith(("unet.", "text_encoder.", "text_encoder_2.")):
            foreign.append(key)
            continue
        module, part = parsed
        pairs.setdefault(module, {})[part] = tensors[key]
    if foreign or not any(m.startswith("unet.") for m in pairs):
        sample = ", ".join(foreign[:3]) or ", ".join(keys[:3])
        raise AdapterError(
            f"The file {weights} is not a diffusers LoRA for a Stable Diffusion UNet (keys like {sample}).",
            "Use an adapter trained by TDRI Studio or saved with diffusers' save_lora_weights.",
        )
    for module, parts in pairs.items():
        down, up = parts.get("down"), parts.get("up")
        if down is None or up is None:
            raise AdapterError(
                f"The adapter {weights} is incomplete: {module} lacks its {'up' if up is None else 'down'} weight.",
                "The file is damaged: choose another version.",
            )
        if down.shape[0] != up.shape[1]:
            raise AdapterError(
                f"The adapter {weights} is inconsistent at {module} (rank {down.shape[0]} vs {up.shape[1]}).",
                "The file is damaged: choose another version.",
            )
        if not (torch.isfinite(down.float()).all() and torch.isfinite(up.float()).all()):
            raise AdapterError(
                f"The adapter {weights} holds NaN or infinite values ({module}).",
                "This version diverged: roll back to its parent.",
            )
    if unet is not None:
        _check_against_unet(weights, pairs, unet)


def _check_against_unet(weights: Path, pairs: dict[str, dict[str, Any]], unet: Any) -> None:
    modules = dict(unet.named_modules())
    for module, parts in pairs.items():
        if not module.startswith("unet."):
            continue
        name = module[len("unet.") :]
        target = modules.get(name) or modules.get(name + ".base_layer")
        base = getattr(target, "base_layer", target)
        if base is None:
            raise AdapterError(
                f"The adapter {weights} is for another model: this UNet has no layer {name}.",
                "Use an adapter trained on this generator (SD-1.x and SDXL adapters do not mix).",
            )
        down, up = parts["down"], parts["up"]
        w = getattr(base, "weight", None)
        if w is None:
            continue
        out_f, in_f = int(w.shape[0]), int(w.shape[1])
        if int(down.shape[1]) != in_f or int(up.shape[0]) != out_f:
            raise AdapterError(
                f"The adapter {weights} is for another model: layer {name} is {in_f}->{out_f}, "
                f"the adapter expects {int(down.shape[1])}->{int(up.shape[0])}.",
                "Use an adapter trained on this generator (SD-1.x and SDXL adapters do not mix).",
            )


def read_meta(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(folder) / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------------------------
# Scopes
# --------------------------------------------------------------------------------------------


def user_adapters_dir() -> Path:
    return paths.tdri_home() / "user_adapters"


def adapter_scope(store: Any) -> str:
    scope = store.get_meta("adapter_scope", "project") or "project"
    return scope if scope in SCOPES else "project"


def set_adapter_scope(store: Any, scope: str) -> None:
    """Choose whether the project generates with its own adapter or the user's generalised one."""
    if scope not in SCOPES:
        raise BadInput(f"Unknown adapter scope {scope!r}.", "Use 'project' or 'user'.")
    store.set_meta("adapter_scope", scope)


def usage_key(version: AdapterVersion | str, scope: str) -> str:
    """What a preference pair's ``used_in`` records: ``v0003`` or ``user:v0003``."""
    vid = version if isinstance(version, str) else version.id
    return vid if scope == "project" else f"user:{vid}"


class _UserIndex:
    """The user's generalised adapters: ``index.json`` beside their folders (atomic writes)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or user_adapters_dir()
        self.file = self.root / "index.json"

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"active": None, "versions": []}
        except (OSError, ValueError) as exc:
            raise AdapterError(
                f"The user adapter index {self.file} cannot be read ({exc}).",
                f"Restore it from {self.file}.bak, or delete it to start over.",
            ) from exc
        data.setdefault("active", None)
        data.setdefault("versions", [])
        return data

    def save(self, data: dict[str, Any]) -> None:
        from ..store.fsutil import atomic_write, storage_error

        self.root.mkdir(parents=True, exist_ok=True)
        try:
            atomic_write(self.file, (json.dumps(data, indent=2) + "\n").encode("utf-8"), keep_backup=True)
        except OSError as exc:
            raise storage_error(exc, "save the user adapters", self.file) from exc


# --------------------------------------------------------------------------------------------
# Listing and choosing
# --------------------------------------------------------------------------------------------


def _scope_of(store: Any, scope: str | None) -> str:
    return scope if scope in SCOPES else adapter_scope(store)


def versions_root(store: Any, scope: str | None = None) -> Path:
    return store.loras_dir if _scope_of(store, scope) == "project" else user_adapters_dir()


def list_versions(store: Any, scope: str | None = None) -> list[AdapterVersion]:
    """Every adapter version of the scope (default: the project's), oldest first."""
    if _scope_of(store, scope) == "project":
        versions = store.all(AdapterVersion)
    else:
        versions = [AdapterVersion.from_dict(d) for d in _UserIndex().load()["versions"]]
    return sorted(versions, key=lambda v: v.id)


def get_version(store: Any, version_id: str, scope: str | None = None) -> AdapterVersion:
    for v in list_versions(store, scope):
        if v.id == version_id:
            return v
    known = ", ".join(v.id for v in list_versions(store, scope)) or "none yet"
    raise AdapterError(f"There is no adapter version {version_id!r}.", f"Known versions: {known}.")


def version_dir(store: Any, version: AdapterVersion) -> Path:
    root = store.path if version.scope == "project" else user_adapters_dir()
    return (root / version.path) if version.path else versions_root(store, version.scope) / version.id


def active_version_id(store: Any, scope: str | None = None) -> str | None:
    if _scope_of(store, scope) == "project":
        return store.get_meta("active_adapter")
    return _UserIndex().load()["active"]


def active_adapter(store: Any, scope: str | None = None) -> AdapterVersion | None:
    """The active version of the project's scope, or None (the base model)."""
    vid = active_version_id(store, scope)
    if not vid:
        return None
    for v in list_versions(store, scope):
        if v.id == vid:
            return v
    return None


def active_adapter_dir(store: Any) -> Path | None:
    """The folder the generator should load (``pipe.load_lora_weights``), or None for the base.

    A version whose weights file has gone missing gives None rather than failing generation;
    ``tdri adapters list`` shows it as missing. A folder with only pickled weights is returned,
    so that loading it refuses it with a message (the round says it ran without it) instead of
    passing over it in silence.
    """
    version = active_adapter(store)
    if version is None:
        return None
    folder = version_dir(store, version)
    return folder if (folder / WEIGHTS_NAME).is_file() or pickled_weights(folder) else None


# ControlNet LoRAs (eq. 9 tunes the pose ControlNet) form their own line of versions beside the
# UNet's: the project meta ``active_controlnet_adapter`` names the one that pose-conditioned
# rounds load onto the ControlNet, so a project can use a UNet LoRA and a ControlNet LoRA at
# once. ControlNet tuning is per project (the user scope's generalised adapter is a UNet LoRA).
CONTROLNET_ACTIVE_META = "active_controlnet_adapter"


def is_controlnet_version(folder: Path) -> bool:
    """True for a version folder holding a ControlNet LoRA (and no UNet LoRA)."""
    folder = Path(folder)
    return (folder / CONTROLNET_WEIGHTS_NAME).is_file() and not (folder / WEIGHTS_NAME).is_file()


def validate_controlnet_adapter_dir(path: Path | str) -> None:
    """Raise ``AdapterError`` unless ``path`` holds a readable ControlNet LoRA (safetensors,
    LoRA down/up weights only, finite values)."""
    import torch
    from safetensors import SafetensorError, safe_open

    weights = Path(path) / CONTROLNET_WEIGHTS_NAME
    if not weights.is_file():
        raise AdapterError(
            f"The adapter folder {path} has no {CONTROLNET_WEIGHTS_NAME}.",
            "Choose another adapter version, or train again.",
        )
    try:
        with safe_open(str(weights), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AdapterError(
            f"The adapter file {weights} is not a readable safetensors file ({exc}).",
            "The file is damaged: choose another version.",
        ) from exc
    foreign = [k for k in tensors if not k.endswith(".alpha") and _lora_module_key(k) is None]
    if not tensors or foreign:
        raise AdapterError(
            f"The file {weights} is not a ControlNet LoRA (keys like {', '.join((foreign or ['none'])[:3])}).",
            "Use an adapter trained by TDRI Studio with ControlNet tuning.",
        )
    if not all(bool(torch.isfinite(t.float()).all()) for t in tensors.values()):
        raise AdapterError(
            f"The adapter {weights} holds NaN or infinite values.", "This version diverged: train again."
        )


def active_controlnet_adapter_dir(store: Any) -> Path | None:
    """The ControlNet LoRA folder pose-conditioned rounds load, or None (the ControlNet as shipped)."""
    vid = store.get_meta(CONTROLNET_ACTIVE_META, None)
    if not vid:
        return None
    for v in list_versions(store, "project"):
        if v.id == vid:
            folder = version_dir(store, v)
            return folder if (folder / CONTROLNET_WEIGHTS_NAME).is_file() else None
    return None


def _set_active(store: Any, version_id: str | None, scope: str) -> None:
    if scope == "project":
        store.set_meta("active_adapter", version_id)
    else:
        with _user_lock:
            index = _UserIndex()
            data = index.load()
            data["active"] = version_id
            index.save(data)


def activate(
    store: Any, version_id: str | None, *, scope: str | None = None, unet: Any = None
) -> AdapterVersion | None:
    """Make ``version_id`` the active adapter (None: the base model).

    The files are validated first (``unet`` adds the shape check): a corrupt or foreign file
    raises ``AdapterError`` and the active version stays as it was.
    """
    sc = _scope_of(store, scope)
    if version_id is None:
        _set_active(store, None, sc)
        if sc == "project":
            store.set_meta(CONTROLNET_ACTIVE_META, None)  # the base model: the ControlNet as shipped too
        return None
    version = get_version(store, version_id, sc)
    folder = version_dir(store, version)
    if sc == "project" and is_controlnet_version(folder):  # the ControlNet's line of versions
        validate_controlnet_adapter_dir(folder)
        store.set_meta(CONTROLNET_ACTIVE_META, version.id)
        return version
    validate_adapter_dir(folder, unet)
    _set_active(store, version.id, sc)
    return version


def rollback(store: Any, *, scope: str | None = None) -> AdapterVersion | None:
    """Go back to the active version's parent (None: the base model); returns the new active one.

    The version left is marked ``rolled_back``, so its preference pairs count as unused again
    and the next update trains on them.
    """
    sc = _scope_of(store, scope)
    current = active_adapter(store, sc)
    if current is None:
        raise AdapterError(
            "No adapter is active: there is nothing to roll back.", "The base model is in use."
        )
    parent = get_version(store, current.parent, sc) if current.parent else None
    if parent is not None:
        validate_adapter_dir(version_dir(store, parent))
    record_version(
        store, current.replace(status="rolled_back", note=(current.note + " Rolled back.").strip())
    )
    _set_active(store, parent.id if parent else None, sc)
    return parent


def record_version(store: Any, version: AdapterVersion, pairs: list[Any] | None = None) -> None:
    """Save a version record (and the pairs marked as used by it) in its scope."""
    if version.scope == "project":
        store.put_many([version, *(pairs or [])])
        return
    with _user_lock:
        index = _UserIndex()
        data = index.load()
        data["versions"] = [d for d in data["versions"] if d.get("id") != version.id] + [version.to_dict()]
        index.save(data)
    if pairs:
        store.put_many(pairs)


def user_pair_key(store: Any, pair: Any) -> str:
    """A pair's name across projects, for the user scope: ``<project slug>/<pair id>``."""
    return f"{store.slug}/{pair.id}"


def record_user_pairs(version_id: str, keys: list[str]) -> None:
    """Remember which pairs (of any project) a user-scope version trained on."""
    with _user_lock:
        index = _UserIndex()
        data = index.load()
        data.setdefault("used", {})[version_id] = list(keys)
        index.save(data)


def user_used_pairs(*, accepted_only: bool) -> set[str]:
    """Keys of the pairs used by user-scope versions (only by accepted ones, if asked)."""
    data = _UserIndex().load()
    status = {d.get("id"): d.get("status", "ok") for d in data["versions"]}
    out: set[str] = set()
    for vid, keys in (data.get("used") or {}).items():
        if not accepted_only or status.get(vid) == "ok":
            out.update(keys)
    return out


def next_version_id(store: Any, scope: str) -> str:
    root = versions_root(store, scope)
    numbers = [int(m.group(1)) for v in list_versions(store, scope) if (m := _VERSION.match(v.id))]
    if root.is_dir():
        numbers += [int(m.group(1)) for p in root.iterdir() if (m := _VERSION.match(p.name))]
    return f"v{(max(numbers) + 1) if numbers else 1:04d}"


def describe(store: Any, version: AdapterVersion) -> str:
    """One line for ``tdri adapters list`` and the studio."""
    active = active_version_id(store, version.scope) == version.id
    folder = version_dir(store, version)
    missing = ""
    if not (folder / WEIGHTS_NAME).is_file():
        missing = "  [pickled weights: refused]" if pickled_weights(folder) else "  [weights missing]"
    acc = "-" if version.implicit_accuracy is None else f"{version.implicit_accuracy:.2f}"
    final = f"{version.loss_curve[-1]:.4f}" if version.loss_curve else "-"
    return (
        f"{'*' if active else ' '} {version.id}  {version.status:<11} parent={version.parent or 'base':<6} "
        f"pairs={version.pairs_used:<4} steps={version.steps:<5} loss={final} acc={acc}  {version.created}{missing}"
    )
