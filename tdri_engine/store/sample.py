"""The sample project the studio opens onto: garment pairs drawn by the Atelier's renderer.

``build_sample(root)`` makes ``root/sample/`` with six pair tasks (dress, skirt, coat, t-shirt,
trousers, jumpsuit; two colour/pattern variants each, 256×256 PNGs with provenance), two of them
already annotated. Each picture is ``atelier.world.render`` of an attribute record, and its prompt
is that record's full caption (``atelier.captions.full_caption``, canonical wording): the world
the Atelier profile's models were trained on, so the sample and those models speak one language.
The records travel in each task's ``details["records"]``. Everything is fixed (ids, times, seeds),
so building twice gives the same project; ``projects/sample/`` in the repository is this
function's output (rebuild it with ``tdri project sample --force --root projects`` after a
change to the renderer or the captions: a test compares the two).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ProjectError
from ..records import Annotation, Choice, ImageRecord, Task
from .fsutil import storage_error
from .lock import ProjectLock
from .project import create_project

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from ..atelier.world import Record as AtelierRecord

SAMPLE_SLUG = "sample"
SAMPLE_NAME = "Sample"
CREATED = "2025-01-15T09:00:00+00:00"
SIZE = 256
MODEL = "atelier-renderer (tdri_engine.atelier.world, no model)"
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

PROFILE = "atelier"  # models.LOCAL_DEFAULT_PROFILE: the sample runs on the Atelier's models


def _record(garment: str, color: str, pattern: str, **rest: str | None) -> AtelierRecord:
    from ..atelier.world import Record

    values: dict[str, str | None] = {
        "length": "knee-length",
        "fit": "fitted",
        "sleeves": None,
        "style": "flat lay",
        "background": "studio",
        "perspective": "front view",
        "accessory": "none",
    }
    values |= rest
    return Record(garment=garment, color=color, pattern=pattern, **values)  # type: ignore[arg-type]


def pairs() -> tuple[tuple[AtelierRecord, AtelierRecord], ...]:
    """The six pairs: one garment each, two colour/pattern variants in the same setting."""
    worn = {"style": "on a mannequin", "perspective": "full body"}
    return (
        (_record("dress", "red", "dots", sleeves="sleeveless"), _record("dress", "navy", "plain", sleeves="sleeveless")),
        (_record("skirt", "green", "stripes", length="long", fit="loose"), _record("skirt", "yellow", "checks", length="long", fit="loose")),
        (
            _record("coat", "brown", "plain", length="long", fit="loose", sleeves="long sleeves", style="on a hanger", background="street"),
            _record("coat", "blue", "stripes", length="long", fit="loose", sleeves="long sleeves", style="on a hanger", background="street"),
        ),
        (_record("t-shirt", "white", "stripes", length="short", sleeves="short sleeves"), _record("t-shirt", "pink", "plain", length="short", sleeves="short sleeves")),
        (
            _record("trousers", "black", "plain", length="long", background="runway", **worn),
            _record("trousers", "purple", "checks", length="long", background="runway", **worn),
        ),
        (
            _record("jumpsuit", "orange", "plain", length="long", fit="loose", sleeves="short sleeves", background="beach", accessory="hat", **worn),
            _record("jumpsuit", "navy", "stripes", length="long", fit="loose", sleeves="short sleeves", background="beach", accessory="hat", **worn),
        ),
    )  # fmt: skip


ANNOTATIONS = {
    0: (
        {
            "a": "Knee-length red fitted dress with white polka dots, sleeveless.",
            "b": "Plain navy fitted dress, sleeveless; simple and clean.",
        },
        {"a": ["dress", "red", "polka dots", "sleeveless"], "b": ["dress", "navy", "solid", "sleeveless"]},
        Choice.LEFT,
    ),
    2: (
        {
            "a": "Long loose brown coat with long sleeves, on a hanger.",
            "b": "Long blue coat with pale stripes and long sleeves, on a hanger.",
        },
        {"a": ["coat", "brown", "long sleeves"], "b": ["coat", "blue", "stripes", "long sleeves"]},
        Choice.RIGHT,
    ),
}


def draw_garment(record: AtelierRecord, seed: int) -> PILImage.Image:
    """The Atelier renderer's picture of ``record`` (deterministic in the seed), at 256 px."""
    from ..atelier.world import render

    return render(record, seed=seed, size=SIZE)


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
    from ..atelier.captions import full_caption
    from ..models import starting_settings

    # the Atelier generator's own size, steps and guidance: the sample's dialogues ask for them
    settings = starting_settings(PROFILE)
    store = create_project(root, SAMPLE_NAME, profile=PROFILE, settings=settings, created=CREATED)
    with store:
        records: list[object] = []
        first_task = ""
        for i, (left, right) in enumerate(pairs(), start=1):
            images = []
            for side, variant in (("a", left), ("b", right)):
                seed = 1000 + i * 10 + (side == "b")
                rec = ImageRecord(
                    id=f"s{i:02d}{side}",
                    prompt=full_caption(variant, seed=None),
                    seed=seed,
                    round=0,
                    model=MODEL,
                    origin="generated",
                    name=f"{variant.color} {variant.garment}",
                    created=CREATED,
                )
                images.append(store.add_image(draw_garment(variant, seed), rec))
            task = Task(
                id=f"sample-{i:02d}",
                name=f"{left.garment}: {left.color} or {right.color}",
                images=[images[0].id, images[1].id],
                source="sample",
                category=left.garment,
                details={
                    "prompts": [images[0].prompt, images[1].prompt],
                    "records": [left.as_dict(), right.as_dict()],
                },
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
