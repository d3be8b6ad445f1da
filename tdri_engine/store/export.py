"""Exports of annotations other tools read: JSONL lines and the annotation view's HTML snippet.

(Preference pairs for Diffusion-DPO training are exported by the optimizer package.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import BadInput
from ..records import Annotation, ImageRecord, Task
from ..validation import check_output_path, html_text
from .fsutil import atomic_write, storage_error, timestamp
from .images import provenance_of
from .positions import map_choice, shown_order

if TYPE_CHECKING:
    from .project import ProjectStore


def _image_entry(store: ProjectStore, image_id: str) -> dict[str, Any]:
    record = store.get(ImageRecord, image_id)
    if record is None:
        return {"id": image_id, "missing": True}
    path = store.path / record.file
    return {
        "id": record.id,
        "file": record.file,  # relative to the project folder
        "path": str(path.resolve()),
        "exists": path.is_file(),
        "width": record.width,
        "height": record.height,
        "provenance": provenance_of(record),
    }


def annotation_line(store: ProjectStore, task: Task) -> dict[str, Any]:
    """The JSONL object for one task (also what an API or a test can inspect)."""
    ann = store.get(Annotation, task.id)
    return {
        "task": task.to_dict(),
        "images": [_image_entry(store, image_id) for image_id in task.images],
        "annotated": ann is not None,
        "descriptions": dict(ann.descriptions) if ann else {},
        "tags": {k: list(v) for k, v in ann.tags.items()} if ann else {},
        "choice": ann.choice if ann else None,
        "annotator": ann.annotator if ann else "",
        "updated": ann.updated if ann else None,
    }


def annotations_jsonl(store: ProjectStore, out_path: Path | None = None) -> Path:
    """Write one JSON line per task (images with paths and provenance, descriptions, tags,
    choice) to ``out_path`` (default ``exports/annotations-<time>.jsonl``), atomically.

    Returns the path written. Unannotated tasks are included with ``"annotated": false``.
    An ``out_path`` inside a project (this one or any other) must lie in its ``exports/``:
    BadInput kind ``protected-path`` otherwise, before anything is written, so an export can
    never replace ``db.json`` or ``project.json``.
    """
    if out_path is None:
        out_path = store.exports_dir / f"annotations-{timestamp()}.jsonl"
    out_path = check_output_path(out_path, "The export file")
    lines = [
        json.dumps(annotation_line(store, task), ensure_ascii=False, allow_nan=False)
        for task in store.all(Task)
    ]
    data = ("\n".join(lines) + "\n" if lines else "").encode("utf-8")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out_path, data)
    except OSError as exc:
        raise storage_error(exc, "write the annotations export", out_path) from exc
    return out_path


def _src(store: ProjectStore, record: ImageRecord, base: Path) -> str:
    rel = os.path.relpath(store.path / record.file, base).replace(os.sep, "/")
    return quote(rel, safe="/")


def _pixels(record: ImageRecord, name: str) -> int:
    value = getattr(record, name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadInput(
            f"The image record {record.id} has {name} {value!r}, not a whole number of pixels.",
            f"db.json was edited by hand: set the {name} of image {record.id} to a whole number, "
            "or import the image again.",
            kind="bad-record",
        )
    return value


def pair_html(store: ProjectStore, task: Task | str, *, base: Path | None = None) -> str:
    """HTML snippet of a task as the annotation view shows it: one ``<figure>`` per image with
    its description and tags in the ``<figcaption>``.

    A pair's figures come in the order the annotator saw them (``store/positions.py``), each
    with ``data-shown="left|right"``; the choice line names the winning image
    (``data-winner``), since "left" in the task's own order need not be the left one on screen.
    Image sources are relative to ``base`` (default: the project folder). Every piece of
    user text is HTML-escaped, its control characters written as visible escapes (``\\x1b``):
    HTML has no place for them. A record whose size is not a whole number (``db.json`` edited
    by hand) raises BadInput naming the record, as every other failure here does.
    """
    if isinstance(task, str):
        found = store.get(Task, task)
        if found is None:
            raise BadInput(f"There is no task with id {task!r} in this project.")
        task = found
    base = Path(base) if base is not None else store.path
    ann = store.get(Annotation, task.id)
    esc = html_text
    kind = "pair" if len(task.images) == 2 else "single"
    out = [f'<section class="tdri-{kind}" data-task-id="{esc(task.id)}">']
    if task.name:
        out.append(f'  <h3 class="tdri-task-name">{esc(task.name)}</h3>')
    order = shown_order(task)
    sides = ["left", "right"] if kind == "pair" else []
    for position, index in enumerate(order):
        image_id = task.images[index]
        shown = f' data-shown="{sides[position]}"' if sides else ""
        record = store.get(ImageRecord, image_id)
        if record is None:
            out.append(
                f'  <figure class="tdri-image tdri-missing" data-image-id="{esc(image_id)}"{shown}>'
                f"<figcaption>Image missing: {esc(image_id)}</figcaption></figure>"
            )
            continue
        alt = record.prompt or record.name or record.id
        out.append(f'  <figure class="tdri-image" data-image-id="{esc(record.id)}"{shown}>')
        out.append(
            f'    <img src="{esc(_src(store, record, base))}" alt="{esc(alt)}" '
            f'width="{_pixels(record, "width")}" height="{_pixels(record, "height")}">'
        )
        out.append("    <figcaption>")
        description = ann.descriptions.get(image_id, "") if ann else ""
        out.append(f'      <p class="tdri-description">{esc(description)}</p>')
        tags = ann.tags.get(image_id, []) if ann else []
        if tags:
            items = "".join(f"<li>{esc(str(t))}</li>" for t in tags)
            out.append(f'      <ul class="tdri-tags">{items}</ul>')
        out.append("    </figcaption>")
        out.append("  </figure>")
    if ann and ann.choice:
        winner = {"left": 0, "right": 1}.get(ann.choice)
        if winner is not None and winner < len(task.images):
            win_id = task.images[winner]
            record = store.get(ImageRecord, win_id)
            name = (record.name if record is not None else "") or win_id
            side = map_choice(ann.choice, order)
            out.append(
                f'  <p class="tdri-choice" data-winner="{esc(win_id)}">Choice: the {side} image '
                f"({esc(name)}) is better</p>"
            )
        else:
            out.append(f'  <p class="tdri-choice">Choice: {esc(ann.choice.replace("_", " "))}</p>')
    out.append("</section>")
    return "\n".join(out)
