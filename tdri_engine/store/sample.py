"""The sample project the studio opens onto: garment pairs the code draws itself.

``build_sample(root)`` makes ``root/sample/`` with six pair tasks (dress, skirt, jacket,
t-shirt, trousers, coat; two colour/pattern variants each, 256×256 PNGs with provenance), two
of them already annotated. Everything is fixed (ids, times, seeds), so building twice gives
the same project; ``projects/sample/`` in the repository is this function's output.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ProjectError
from ..records import Annotation, Choice, ImageRecord, Task
from .fsutil import storage_error
from .lock import ProjectLock
from .project import create_project

if TYPE_CHECKING:
    from PIL import Image as PILImage

SAMPLE_SLUG = "sample"
SAMPLE_NAME = "Sample"
CREATED = "2025-01-15T09:00:00+00:00"
SIZE = 256
MODEL = "tdri-sample-painter (PIL drawing, no model)"
GITIGNORE = """# written when the project is opened and used; not part of the sample
.lock
.*.tmp
*.tmp
db.journal*
*.bak
*.corrupt-*
backups/
exports/
loras/
"""
MARKER_KEY = "sample_build"  # in project.json's meta: this folder is ours to rebuild
MARKER = "tdri project sample"
RUNTIME_FILES = (".lock", "db.json.bak", "db.journal", "db.journal.prev", "project.json.bak")

COLOURS = {
    "red": (196, 40, 52),
    "navy": (28, 42, 92),
    "emerald": (22, 128, 86),
    "mustard": (214, 166, 38),
    "black": (30, 30, 34),
    "white": (242, 240, 234),
    "blush": (232, 170, 172),
    "camel": (184, 134, 84),
    "denim": (70, 104, 150),
    "lilac": (176, 150, 206),
}


@dataclass(frozen=True)
class Variant:
    garment: str
    colour: str
    pattern: str  # "solid" | "stripes" | "dots" | "checks"
    accent: str = "white"

    @property
    def prompt(self) -> str:
        pattern = {
            "solid": "",
            "stripes": f" with {self.accent} vertical stripes",
            "dots": f" with {self.accent} polka dots",
            "checks": f" in a {self.accent} check pattern",
        }[self.pattern]
        return f"a {self.colour} {self.garment}{pattern}, flat lay, plain studio background"


PAIRS: tuple[tuple[Variant, Variant], ...] = (
    (Variant("dress", "red", "dots"), Variant("dress", "navy", "solid")),
    (Variant("skirt", "emerald", "stripes", "white"), Variant("skirt", "mustard", "checks", "black")),
    (Variant("jacket", "camel", "solid"), Variant("jacket", "denim", "stripes", "white")),
    (Variant("t-shirt", "white", "stripes", "navy"), Variant("t-shirt", "blush", "solid")),
    (Variant("trousers", "black", "solid"), Variant("trousers", "lilac", "checks", "white")),
    (Variant("coat", "navy", "checks", "camel"), Variant("coat", "red", "solid")),
)

ANNOTATIONS = {
    0: (
        {
            "a": "Knee-length red A-line dress with white polka dots and thin straps.",
            "b": "Plain navy A-line dress with thin straps; simple and clean.",
        },
        {"a": ["dress", "red", "polka dots", "sleeveless"], "b": ["dress", "navy", "solid", "sleeveless"]},
        Choice.LEFT,
    ),
    2: (
        {
            "a": "Camel single-breasted jacket with long sleeves and two buttons.",
            "b": "Denim-blue jacket with white pinstripes, long sleeves.",
        },
        {"a": ["jacket", "camel", "long sleeves"], "b": ["jacket", "blue", "stripes", "long sleeves"]},
        Choice.RIGHT,
    ),
}


def _silhouette(garment: str) -> list[list[tuple[int, int]]]:
    """Polygons (in 256×256 coordinates) whose union is the garment's outline."""
    if garment == "dress":
        return [
            [(104, 40), (112, 40), (112, 70), (104, 70)],  # straps
            [(144, 40), (152, 40), (152, 70), (144, 70)],
            [(98, 68), (158, 68), (150, 120), (106, 120)],  # bodice
            [(106, 118), (150, 118), (200, 226), (56, 226)],  # A-line skirt
        ]
    if garment == "skirt":
        return [[(84, 50), (172, 50), (172, 66), (84, 66)], [(84, 64), (172, 64), (214, 210), (42, 210)]]
    if garment in ("jacket", "coat"):
        bottom = 226 if garment == "coat" else 196
        return [
            [(88, 40), (168, 40), (176, bottom), (80, bottom)],  # body
            [(88, 42), (60, 60), (30, bottom - 16), (56, bottom - 8), (86, 96)],  # left sleeve
            [(168, 42), (196, 60), (226, bottom - 16), (200, bottom - 8), (170, 96)],  # right sleeve
        ]
    if garment == "t-shirt":
        return [
            [(84, 48), (172, 48), (176, 206), (80, 206)],
            [(84, 50), (44, 76), (60, 108), (88, 96)],
            [(172, 50), (212, 76), (196, 108), (168, 96)],
        ]
    if garment == "trousers":
        return [
            [(86, 36), (170, 36), (170, 52), (86, 52)],
            [(86, 50), (128, 50), (124, 226), (84, 226), (80, 120)],
            [(128, 50), (170, 50), (176, 120), (172, 226), (132, 226)],
        ]
    raise ValueError(garment)


def _pattern(variant: Variant) -> PILImage.Image:
    from PIL import Image, ImageDraw

    base, accent = COLOURS[variant.colour], COLOURS[variant.accent]
    img = Image.new("RGB", (SIZE, SIZE), base)
    draw = ImageDraw.Draw(img)
    if variant.pattern == "stripes":
        for x in range(0, SIZE, 16):
            draw.rectangle([x, 0, x + 5, SIZE], fill=accent)
    elif variant.pattern == "dots":
        for row, y in enumerate(range(6, SIZE, 18)):
            for x in range(6 + (row % 2) * 9, SIZE, 18):
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=accent)
    elif variant.pattern == "checks":
        for x in range(0, SIZE, 24):
            draw.rectangle([x, 0, x + 3, SIZE], fill=accent)
        for y in range(0, SIZE, 24):
            draw.rectangle([0, y, SIZE, y + 3], fill=accent)
    return img


def draw_garment(variant: Variant) -> PILImage.Image:
    """A flat-lay drawing of one garment variant (deterministic)."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", (SIZE, SIZE), (236, 233, 228))
    shadow = Image.new("L", (SIZE, SIZE), 0)
    mask = Image.new("L", (SIZE, SIZE), 0)
    for poly in _silhouette(variant.garment):
        ImageDraw.Draw(mask).polygon(poly, fill=255)
        ImageDraw.Draw(shadow).polygon([(x + 4, y + 5) for x, y in poly], fill=255)
    canvas.paste((205, 201, 194), (0, 0), shadow)
    canvas.paste(_pattern(variant), (0, 0), mask)
    draw = ImageDraw.Draw(canvas)
    for poly in _silhouette(variant.garment):  # seams
        draw.line([*poly, poly[0]], fill=(60, 56, 52), width=1)
    if variant.garment in ("jacket", "coat"):
        draw.line([(128, 40), (128, 226 if variant.garment == "coat" else 196)], fill=(60, 56, 52), width=2)
        for y in range(90, 190, 34):
            draw.ellipse([132, y, 140, y + 8], fill=(60, 56, 52))
        draw.polygon([(104, 40), (128, 90), (152, 40)], fill=(236, 233, 228))  # open neckline
    if variant.garment == "t-shirt":
        draw.ellipse([108, 38, 148, 62], fill=(236, 233, 228))
    return canvas


def is_built_sample(folder: Path) -> bool:
    """Whether ``folder`` is a sample project this app built: its ``project.json`` carries
    the marker ``meta.sample_build`` (or, from builds before the marker, the sample's fixed
    name, slug and creation time). Only such a folder may be deleted by ``--force``."""
    for name in ("project.json", "project.json.bak"):
        try:
            doc = json.loads((folder / name).read_bytes())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict):
            continue
        meta = doc.get("meta")
        if not isinstance(meta, dict):
            meta = {}
        if meta.get(MARKER_KEY) == MARKER:
            return True
        legacy = (doc.get("name"), doc.get("slug"), doc.get("created")) == (SAMPLE_NAME, SAMPLE_SLUG, CREATED)
        if legacy and doc.get("format") == "tdri-project":
            return True
    return False


def build_sample(root: Path, *, force: bool = False) -> Path:
    """Build ``root/sample`` (replacing it when ``force``); returns its path.

    ``force`` replaces only a sample this app built (:func:`is_built_sample`), and only while
    no window has it open: the project lock is taken first and held until the old folder is
    gone. Anything else named ``sample`` is the user's and is refused with a message.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ProjectError(
            f"The projects folder {root} is a file, not a folder.",
            "Choose a folder (--root) to build the sample project in.",
            kind="projects-folder",
        )
    target = root / SAMPLE_SLUG
    if target.exists() and not force:
        raise ProjectError(
            f"A sample project already exists at {target}.",
            "Open it, or pass --force to rebuild it (your changes to it are lost).",
            kind="project-exists",
        )
    if (target.exists() or target.is_symlink()) and (target.is_symlink() or not is_built_sample(target)):
        raise ProjectError(
            f"{target} is not a sample project this app built, so it was not replaced.",
            "It may hold your own files: move or rename it, then build the sample again. Nothing was deleted.",
            kind="project-exists",
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, "create the projects folder", root) from exc
    lock = ProjectLock(target) if target.exists() else None  # ProjectError when a window has it
    try:
        staging_root = root / f".sample-{secrets.token_hex(4)}"
        try:
            staging_root.mkdir()
            built = _build_into(staging_root)
            if target.exists():
                old = root / f".sample-old-{secrets.token_hex(4)}"
                os.rename(target, old)
                os.rename(built, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(built, target)
        except OSError as exc:
            raise storage_error(exc, "build the sample project", root) from exc
        finally:
            shutil.rmtree(staging_root, ignore_errors=True)
    finally:
        if lock is not None:
            lock.release()
    return target


def _build_into(root: Path) -> Path:
    store = create_project(root, SAMPLE_NAME, profile="demo", created=CREATED)
    with store:
        records: list[object] = []
        first_task = ""
        for i, (left, right) in enumerate(PAIRS, start=1):
            images = []
            for side, variant in (("a", left), ("b", right)):
                rec = ImageRecord(
                    id=f"s{i:02d}{side}",
                    prompt=variant.prompt,
                    seed=1000 + i * 10 + (side == "b"),
                    round=0,
                    model=MODEL,
                    origin="generated",
                    name=f"{variant.colour} {variant.garment}",
                    created=CREATED,
                )
                images.append(store.add_image(draw_garment(variant), rec))
            task = Task(
                id=f"sample-{i:02d}",
                name=f"{left.garment}: {left.colour} or {right.colour}",
                images=[images[0].id, images[1].id],
                source="sample",
                category=left.garment,
                details={"prompts": [left.prompt, right.prompt]},
                created=CREATED,
                updated=CREATED,
            )
            first_task = first_task or task.id
            records.append(task)
            if i - 1 in ANNOTATIONS:
                descriptions, tags, choice = ANNOTATIONS[i - 1]
                ids = {"a": images[0].id, "b": images[1].id}
                records.append(
                    Annotation(
                        task_id=task.id,
                        descriptions={ids[k]: v for k, v in descriptions.items()},
                        tags={ids[k]: v for k, v in tags.items()},
                        choice=choice.value,
                        annotator="sample",
                        updated=CREATED,
                    )
                )
                records[-2] = task.replace(status="done")
        store.put_many(records)  # type: ignore[arg-type]
        store.set_meta("last_task_id", first_task)
        store.set_meta(MARKER_KEY, MARKER)
    for name in RUNTIME_FILES:  # the repository keeps only what a fresh clone needs
        try:
            os.unlink(store.path / name)
        except FileNotFoundError:
            pass
    for sub in ("loras", "exports"):
        (store.path / sub).rmdir()  # empty; recreated on open (git keeps no empty folders)
    # The sample lives in the repository: keep what opening and saving adds out of git.
    (store.path / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    return store.path
