"""The training set of a fine-tune: images with captions, checked before anything trains.

Two layouts, the ones Hugging Face ``datasets`` image folders use:

* a ``metadata.jsonl`` at the top of the folder, one JSON object per line with ``file_name``
  (relative to the folder) and ``text`` (the caption);
* otherwise a sidecar ``<image>.txt`` beside each image (``a.png`` + ``a.txt``).

:func:`scan` reads every image once (``PIL.Image.load``, so a truncated file is caught now,
not at step 3,000) and reports each problem with the file name and, for the JSONL, the line
number: unreadable images, images without a caption (or an empty one), captions that are not
clean text, duplicate images (same decoded pixels, whatever the file format), images too small
for the training size, broken JSONL lines and JSONL lines naming files that do not exist.
:func:`require_usable` turns a report into an error value (``BadInput`` kind
``finetune-data``) unless the user said to train on the usable part (``allow_problems``): a
broken set never trains silently. Nothing in the folder is executed or unpickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInput, TdriError
from ..validation import check_text, terminal_safe

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
METADATA_NAME = "metadata.jsonl"
MAX_CAPTION_CHARS = 2000  # captions past CLIP's 77 tokens are cut by the encoder anyway
MAX_IMAGE_PIXELS = 64_000_000  # a 8000x8000 photo; larger ones are refused, not decoded
SHOWN = 8  # problems listed by name per kind in a message; the report holds them all


@dataclass(frozen=True)
class Example:
    """One training image and its caption."""

    path: Path
    caption: str
    size: tuple[int, int]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the set. ``line`` is the metadata.jsonl line (1-based) when known."""

    kind: str  # unreadable | no-caption | bad-caption | duplicate | tiny | bad-jsonl | unknown-file
    file: str
    detail: str
    line: int | None = None

    def describe(self) -> str:
        where = f"{METADATA_NAME} line {self.line}" if self.line is not None else ""
        name = terminal_safe(self.file)
        if where and self.file:
            return f"{name} ({where}): {self.detail}"
        return f"{where or name}: {self.detail}"


PROBLEM_TITLES: dict[str, str] = {
    "bad-jsonl": "broken lines in metadata.jsonl",
    "unknown-file": "metadata.jsonl names files that are not there",
    "unreadable": "unreadable images",
    "no-caption": "images without a caption",
    "bad-caption": "captions that are not clean text",
    "duplicate": "duplicate images (same pixels)",
    "tiny": "images too small for the training size",
}


@dataclass
class DatasetReport:
    folder: Path
    layout: str  # "metadata.jsonl" | "sidecar .txt"
    examples: list[Example] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    other_files: list[str] = field(default_factory=list)  # neither images nor captions
    what: str = "training"  # "training" | "prior": the set's name in messages

    @property
    def ok(self) -> bool:
        return not self.problems

    def digest(self) -> str:
        """A hash of the usable examples (files' pixels and captions): a resumed run checks it."""
        h = hashlib.sha256()
        for ex in sorted(self.examples, key=lambda e: str(e.path)):
            h.update(str(ex.path.relative_to(self.folder)).encode("utf-8", "surrogateescape"))
            h.update(b"\0" + ex.caption.encode("utf-8") + b"\0")
            h.update(_file_digest(ex.path).encode())
        return h.hexdigest()[:16]

    def summary(self) -> str:
        """Every problem grouped by kind, at most ``SHOWN`` names per kind, for people."""
        lines = [f"{len(self.examples)} usable image(s) in {terminal_safe(self.folder)} ({self.layout})."]
        for kind, title in PROBLEM_TITLES.items():
            found = [p for p in self.problems if p.kind == kind]
            if not found:
                continue
            lines.append(f"{len(found)} {title}:")
            lines += [f"  {p.describe()}" for p in found[:SHOWN]]
            if len(found) > SHOWN:
                lines.append(f"  ... and {len(found) - SHOWN} more")
        return "\n".join(lines)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _images(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if any(part.startswith(".") for part in rel):  # hidden files and folders (.git, .DS_Store)
            continue
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            out.append(p)
    return out


def _read_metadata(folder: Path, problems: list[Problem]) -> dict[str, tuple[str, int]]:
    """file_name -> (caption, line) from metadata.jsonl; broken lines become problems."""
    captions: dict[str, tuple[str, int]] = {}
    raw = (folder / METADATA_NAME).read_bytes()
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        if not line_bytes.strip():
            continue
        try:
            row = json.loads(line_bytes.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            problems.append(Problem("bad-jsonl", "", f"not a JSON object ({exc})", number))
            continue
        if not isinstance(row, dict):
            problems.append(Problem("bad-jsonl", "", "not a JSON object", number))
            continue
        name, text = row.get("file_name"), row.get("text")
        if not isinstance(name, str) or not name:
            problems.append(Problem("bad-jsonl", "", "no 'file_name' (text)", number))
            continue
        if not isinstance(text, str):
            problems.append(Problem("bad-jsonl", name, "no 'text' caption (text)", number))
            continue
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            problems.append(Problem("bad-jsonl", name, "'file_name' must be inside the folder", number))
            continue
        key = str(Path(*rel.parts)) if rel.parts else name
        if key in captions:
            problems.append(
                Problem("bad-jsonl", name, f"named again (first on line {captions[key][1]})", number)
            )
            continue
        captions[key] = (text, number)
    return captions


def scan(
    folder: Path | str, *, min_side: int = 0, what: str = "training", flag: str = "--data"
) -> DatasetReport:
    """Read ``folder`` and report every usable example and every problem (see module docstring).

    ``min_side``: an image whose shorter side is below it is reported as tiny (pass half the
    training size: more than 2x upsampling teaches the model blur). Raises ``BadInput`` only
    when there is no folder, nothing that looks like an image in it, or no caption source.
    ``what`` / ``flag`` name the folder in messages (``"prior"`` / ``"--prior-data"`` for the
    prior-preservation set, which gets the same checks).
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise BadInput(
            f"The {what} folder {terminal_safe(root)} does not exist or is not a folder.",
            f"Give {flag} the folder that holds the images and their captions.",
            kind="finetune-data",
        )
    images = _images(root)
    if not images:
        others = sorted(_rel(p, root) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        listed = ", ".join(terminal_safe(o) for o in others[:SHOWN]) + (" ..." if len(others) > SHOWN else "")
        raise BadInput(
            f"The {what} folder {terminal_safe(root)} holds no images"
            + (f" ({len(others)} other file(s): {listed})." if others else " (it is empty)."),
            f"Put the {what} images ({', '.join(sorted(IMAGE_SUFFIXES))}) in it, each with a caption: "
            f"a sidecar .txt of the same name, or a {METADATA_NAME} with file_name and text per line.",
            kind="finetune-data",
        )
    problems: list[Problem] = []
    has_meta = (root / METADATA_NAME).is_file()
    meta = _read_metadata(root, problems) if has_meta else {}
    report = DatasetReport(root, METADATA_NAME if has_meta else "sidecar .txt", what=what)
    image_set = {_rel(p, root) for p in images}
    for name, (_text, number) in meta.items():
        if name not in image_set:
            problems.append(Problem("unknown-file", name, "no such image in the folder", number))
    seen: dict[str, str] = {}
    for path in images:
        rel = _rel(path, root)
        # the caption first: a caption problem is reported even when the image is fine
        caption: str | None = None
        line: int | None = None
        if has_meta:
            if rel in meta:
                caption, line = meta[rel]
        else:
            sidecar = path.with_suffix(".txt")
            if sidecar.is_file():
                try:
                    caption = sidecar.read_bytes().decode("utf-8").strip()
                except UnicodeDecodeError:
                    problems.append(Problem("bad-caption", _rel(sidecar, root), "not UTF-8 text"))
                    continue
        if caption is None:
            where = f"no line in {METADATA_NAME}" if has_meta else f"no {path.with_suffix('.txt').name}"
            problems.append(Problem("no-caption", rel, where))
            continue
        caption = " ".join(caption.split())
        if not caption:
            problems.append(Problem("no-caption", rel, "the caption is empty", line))
            continue
        try:
            check_text(caption, "the caption", max_chars=MAX_CAPTION_CHARS)
        except TdriError as exc:
            problems.append(Problem("bad-caption", rel, exc.message, line))
            continue
        try:
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise ValueError(f"{w}x{h} is over {MAX_IMAGE_PIXELS:,} pixels")
                pixels = im.convert("RGB")
                pixels.load()
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            problems.append(Problem("unreadable", rel, f"{type(exc).__name__}: {exc}"))
            continue
        key = hashlib.sha256(f"{w}x{h}".encode() + pixels.tobytes()).hexdigest()
        if key in seen:
            problems.append(Problem("duplicate", rel, f"the same picture as {terminal_safe(seen[key])}"))
            continue
        seen[key] = rel
        if min(w, h) < min_side:
            problems.append(Problem("tiny", rel, f"{w}x{h}, under {min_side} px on its short side"))
            continue
        report.examples.append(Example(path, caption, (w, h)))
    report.problems = sorted(
        problems, key=lambda p: (list(PROBLEM_TITLES).index(p.kind), p.line or 0, p.file)
    )
    known = {_rel(p, root) for p in images} | {METADATA_NAME}
    report.other_files = sorted(
        _rel(p, root)
        for p in root.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and _rel(p, root) not in known
        and not (p.suffix == ".txt" and any(p.with_suffix(s).exists() for s in IMAGE_SUFFIXES))
    )
    return report


def require_usable(report: DatasetReport, *, allow_problems: bool = False, min_examples: int = 1) -> None:
    """``BadInput`` (kind ``finetune-data``) listing the problems, unless the set is clean or the
    user allowed training on its usable part (then the caller prints ``report.summary()``)."""
    if report.problems and not allow_problems:
        raise BadInput(
            f"The {report.what} set has problems; nothing was trained.\n{report.summary()}",
            "Fix or remove the files named above, or add --allow-problems to train on the "
            f"{len(report.examples)} usable image(s) only.",
            kind="finetune-data",
        )
    if len(report.examples) < min_examples:
        raise BadInput(
            f"The {report.what} set has {len(report.examples)} usable image(s); at least {min_examples} "
            f"are needed.\n{report.summary()}",
            "Add captioned images to the folder.",
            kind="finetune-data",
        )
