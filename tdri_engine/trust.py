"""Trust policy for model folders that other people made: nothing in them runs, nothing is unpickled.

A model folder, a profile or a shared project's ``project.json`` can come from anyone, so a
folder is checked *before* any library sees it (README, "Trust policy"):

* **Weights only from safetensors**, for every role. A folder (or, for a diffusers pipeline,
  a component folder such as ``unet/``) whose weights are only pickles (``.bin``, ``.pt``,
  ``.pth``, ``.ckpt``, ``.pkl``, ``.pickle``) is refused: unpickling runs whatever code the
  file names. Loaders also pass ``use_safetensors=True``, so a pickle next to a safetensors
  file is never read. The one exception is the pose detector's original
  ``body_pose_model.pth``, read with ``torch.load(weights_only=True)``, which accepts tensors
  and nothing else.
* **No code from a folder.** Refused: a configuration with ``auto_map`` (transformers would
  import the folder's own Python files, and without ``trust_remote_code`` it asks on stdin);
  a diffusers ``model_index.json`` whose pipeline class is a ``[file, class]`` pair or whose
  component comes from a library other than diffusers or transformers; an open_clip config
  whose text tower transformers would build from a name (``hf_model_name``), whose tokenizer
  lies outside the folder, or whose tokenizer options turn on ``trust_remote_code``. Loaders
  pass ``trust_remote_code=False`` as well; the check comes first so that no library ever
  reads the user's stdin on its own behalf.

The check reads only small JSON files and file names; it imports nothing heavy, so
``tdri models check`` can run it on every role.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import ModelRefused

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SAFE_SUFFIX = ".safetensors"
# Kinds whose weights are a diffusers pipeline: one component per subfolder.
PIPELINE_KINDS = ("sd15", "sdxl")
POSE_KIND = "openpose"
POSE_SUFFIXES = (".safetensors", ".pth")
# diffusers loads pipeline components from these libraries (and its own pipeline subpackages).
COMPONENT_LIBRARIES = ("diffusers", "transformers")

_POLICY = "TDRI Studio never runs code from a model folder and never unpickles its weights."


def _is_config_name(name: str) -> bool:
    """The JSON files transformers and diffusers read settings (and ``auto_map``) from."""
    return name == "model_index.json" or name.endswith("config.json")


def _folders(root: Path) -> Iterator[Path]:
    """``root`` and its direct subfolders (a pipeline's components), hidden ones skipped."""
    yield root
    try:
        children = sorted(root.iterdir())
    except OSError:
        return
    for child in children:
        if child.is_dir() and not child.name.startswith("."):
            yield child


def _read_json(path: Path) -> Any:
    """The parsed file, or None when it cannot be read (the loader reports that file itself)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _auto_map_reason(data: Any, name: str) -> str | None:
    if not isinstance(data, dict):
        return None
    found = data.get("auto_map")
    if not found:
        # composite configs (text_config, vision_config ...) carry their own
        for key, value in data.items():
            if isinstance(value, dict) and value.get("auto_map"):
                found, name = value["auto_map"], f"{name} ({key})"
                break
    if not found:
        return None
    if isinstance(found, dict):
        first = next(iter(found.items()))
        target = first[1][0] if isinstance(first[1], list) and first[1] else first[1]
        sample = f"{first[0]} -> {target}"
    else:
        sample = str(found)[:80]
    return f"{name} names custom code to run from the folder (auto_map: {sample})"


def _diffusers_pipeline_modules() -> set[str]:
    """Names of diffusers' own pipeline subpackages (``stable_diffusion`` ...), without importing it."""
    spec = importlib.util.find_spec("diffusers")
    if spec is None or not spec.submodule_search_locations:
        return set()
    out: set[str] = set()
    for location in spec.submodule_search_locations:
        pipelines = Path(location) / "pipelines"
        if pipelines.is_dir():
            out.update(p.name for p in pipelines.iterdir() if (p / "__init__.py").is_file())
    return out


def _model_index_reason(data: Any, name: str) -> str | None:
    if not isinstance(data, dict):
        return None
    cls = data.get("_class_name")
    if isinstance(cls, (list, tuple)):
        return f"{name} names a custom pipeline to run from the folder (_class_name: {list(cls)[:2]})"
    pipeline_modules: set[str] | None = None
    for component, value in data.items():
        if component.startswith("_") or not isinstance(value, (list, tuple)) or not value:
            continue
        library = value[0]
        if library is None or library in COMPONENT_LIBRARIES:
            continue
        if pipeline_modules is None:
            pipeline_modules = _diffusers_pipeline_modules()
        if not isinstance(library, str) or library not in pipeline_modules:
            return (
                f"{name} loads its '{component}' from '{library}', which is not diffusers or transformers "
                "(custom code)"
            )
    return None


def custom_code_reason(folder: Path) -> str | None:
    """Why ``folder`` would make a library run code of its own, or None."""
    for sub in _folders(folder):
        try:
            files = sorted(p for p in sub.iterdir() if p.is_file() and _is_config_name(p.name))
        except OSError:
            continue
        for file in files:
            data = _read_json(file)
            name = _rel(file, folder)
            reason = _auto_map_reason(data, name)
            if reason is None and file.name == "model_index.json":
                reason = _model_index_reason(data, name)
            if reason:
                return reason
    return None


def _weights(folder: Path) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle files) directly in ``folder``."""
    try:
        files = [p for p in folder.iterdir() if p.is_file()]
    except OSError:
        return [], []
    safe = sorted(p for p in files if p.name.endswith(SAFE_SUFFIX))
    pickles = sorted(p for p in files if p.suffix in PICKLE_SUFFIXES)
    return safe, pickles


def _pickle_only(folders: Iterable[Path], root: Path) -> str | None:
    for sub in folders:
        safe, pickles = _weights(sub)
        if pickles and not safe:
            names = ", ".join(_rel(p, root) for p in pickles[:2])
            return (
                f"its weights {names} are pickles (loading a pickle can run code) and there is no "
                f".safetensors file beside {'them' if len(pickles) > 1 else 'it'}"
            )
    return None


# open_clip's own preference among the checkpoints of a hub-layout folder
# (open_clip.factory._find_checkpoint_in_dir, open_clip 3.x): the first listed name present wins,
# otherwise safetensors before pickles in name order.
_OPEN_CLIP_PREFERRED = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.pth",
    "model.pth",
)


def open_clip_checkpoint(folder: Path) -> Path | None:
    """The weights file open_clip would pick in a hub-layout folder (``local-dir:``)."""
    found = sorted(p for pat in ("*.safetensors", "*.bin", "*.pth") for p in folder.glob(pat))
    if not found:
        return None
    for name in _OPEN_CLIP_PREFERRED:
        if (folder / name).is_file():
            return folder / name
    found.sort(key=lambda p: p.suffix == ".safetensors", reverse=True)
    return found[0]


def _open_clip_text_reason(text_cfg: Any, name: str, folder: Path, *, hub_layout: bool) -> str | None:
    if not isinstance(text_cfg, dict):
        return None
    if text_cfg.get("hf_model_name"):
        return (
            f"{name} builds its text tower with transformers from '{text_cfg['hf_model_name']}' "
            "(hf_model_name), which is not loaded from this folder's safetensors"
        )
    kwargs = text_cfg.get("tokenizer_kwargs")
    if isinstance(kwargs, dict) and "trust_remote_code" in kwargs:
        return f"{name} asks its tokenizer to run custom code (tokenizer_kwargs.trust_remote_code)"
    tok = text_cfg.get("hf_tokenizer_name")
    if tok and not hub_layout:  # the hub layout reads the tokenizer from the folder itself
        try:
            same = Path(str(tok)).expanduser().resolve() == folder.resolve()
        except (OSError, ValueError):
            same = False
        if not same:
            return f"{name} reads its tokenizer from '{tok}', outside the model folder (hf_tokenizer_name)"
    return None


def open_clip_reason(folder: Path) -> str | None:
    """Why an open_clip folder would load a pickle or code from elsewhere, or None."""
    hub = folder / "open_clip_config.json"
    if hub.is_file():
        data = _read_json(hub)
        model_cfg = data.get("model_cfg") if isinstance(data, dict) else None
        if isinstance(model_cfg, dict):
            reason = _open_clip_text_reason(model_cfg.get("text_cfg"), hub.name, folder, hub_layout=True)
            if reason:
                return reason
        chosen = open_clip_checkpoint(folder)
        if chosen is not None and not chosen.name.endswith(SAFE_SUFFIX):
            return (
                f"open_clip would load its weights from {chosen.name}, a pickle (loading a pickle can run "
                "code); keep only open_clip_model.safetensors"
            )
        return None
    for config in sorted(folder.glob("*.json")):
        data = _read_json(config)
        if isinstance(data, dict) and "vision_cfg" in data and "text_cfg" in data:
            reason = _open_clip_text_reason(data["text_cfg"], config.name, folder, hub_layout=False)
            if reason:
                return reason
    return None


def refusal_reason(folder: Path | str, kind: str, options: dict[str, Any] | None = None) -> str | None:
    """Why the trust policy refuses ``folder`` as a model of ``kind``, or None when it may load."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if kind == POSE_KIND:
        filename = (options or {}).get("filename")
        if filename is not None and (
            not isinstance(filename, str)
            or Path(filename).name != filename
            or not filename.endswith(POSE_SUFFIXES)
        ):
            return (
                f"the pose weights file must be a .safetensors or .pth file name inside the folder, "
                f"got {filename!r} (options.filename)"
            )
        return None  # the .pth is read with weights_only=True; nothing else in the folder is read
    reason = custom_code_reason(folder)
    if reason:
        return reason
    if kind == "open_clip":
        reason = open_clip_reason(folder)
        if reason:
            return reason
    folders = list(_folders(folder))[1:] if kind in PIPELINE_KINDS else [folder]
    return _pickle_only(folders, folder)


def what_to_do(role: str, reason: str) -> str:
    if "pickle" in reason:
        return (
            f"Use a copy of the {role} model that has .safetensors weights (most Hugging Face repositories "
            "have them), or convert it on a machine you trust with from_pretrained(...).save_pretrained"
            "(..., safe_serialization=True); or point the role at another folder in Settings > Models."
        )
    return (
        f"Use a {role} model whose architecture is built into transformers/diffusers (no custom code), "
        "or point the role at another folder in Settings > Models (or the profile JSON)."
    )


def refused(folder: Path | str, kind: str, role: str, reason: str) -> ModelRefused:
    return ModelRefused(
        f"The {role} model folder {folder} was refused: {reason}. {_POLICY}",
        what_to_do(role, reason),
    )


def check_folder(folder: Path | str, kind: str, role: str, options: dict[str, Any] | None = None) -> None:
    """Raise ``ModelRefused`` (naming the file and the reason) unless the policy lets ``folder`` load.

    Every loader calls this first, before any library reads the folder.
    """
    reason = refusal_reason(folder, kind, options)
    if reason:
        raise refused(folder, kind, role, reason)


def check_spec(folder: Path | str, spec: Any, default_role: str) -> None:
    """``check_folder`` with the kind, role and options of a ``RoleSpec`` (or a spec-like object)."""
    kind = str(getattr(spec, "kind", "") or "")
    role = str(getattr(spec, "role", "") or default_role)
    check_folder(folder, kind, role, getattr(spec, "options", None))
