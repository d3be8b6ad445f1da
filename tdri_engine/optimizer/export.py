"""Preference pairs in the columns public Diffusion-DPO training code reads (Pick-a-Pic).

Columns (one row per pair; "both bad" names no winner and has no label, so it is left out, and
``tdri export pairs`` says how many were):

==========  ==================================================================================
caption     the prompt the two images were made from; the winner's when they differ (a choice
            across rounds), the prompt recorded with the choice for a tie across prompts
            (``schedule.pair_prompt``: the prompt the studio's own update trains the pair with)
jpg_0       the left image. Parquet: JPEG bytes (quality 95), as Pick-a-Pic stores them.
            JSONL: the JPEG's path relative to the JSONL file (files in ``<name>_images/``)
jpg_1       the right image, likewise
label_0     1.0 when the left image won, 0.0 when the right one did, 0.5 for a tie
pair_id     the pair's id in its project (extra column; training code ignores it)
project     the project's folder name (extra column)
==========  ==================================================================================

``datasets.load_dataset("parquet", data_files=FILE)`` reads the Parquet file as is; the public
``train_diffusion_dpo.py`` opens ``jpg_0``/``jpg_1`` with ``Image.open(io.BytesIO(...))`` and
drops ties by ``label_0``. Files are written to a temporary name and renamed.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import BadInput, TdriError
from ..records import PreferencePair
from .schedule import pair_prompt

COLUMNS = ("caption", "jpg_0", "jpg_1", "label_0", "pair_id", "project")
FORMATS = ("parquet", "jsonl")


def _jpeg(image: Any) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _rows(
    stores: Iterable[Any], skipped: list[str] | None
) -> Iterable[tuple[Any, PreferencePair, float, bytes, bytes]]:
    for store in stores:
        for pair in store.all(PreferencePair):
            label = pair.label_0
            if label is None:  # both bad
                continue
            try:
                left = _jpeg(store.load_image(pair.image_left))
                right = _jpeg(store.load_image(pair.image_right))
            except TdriError as exc:
                if skipped is not None:
                    skipped.append(f"{store.slug}/{pair.id}: {exc.message}")
                continue
            yield store, pair, label, left, right


def export_pairs(
    store_or_stores: Any,
    out_path: Path | str,
    format: str = "parquet",
    *,
    skipped: list[str] | None = None,
) -> int:
    """Write the preference pairs of one or several projects; returns the number of rows.

    Pairs whose image file is missing are left out and named in ``skipped`` (when given).
    """
    fmt = format.lower()
    if fmt not in FORMATS:
        raise BadInput(f"Unknown export format {format!r}.", "Use 'parquet' or 'jsonl'.")
    stores = list(store_or_stores) if isinstance(store_or_stores, (list, tuple)) else [store_or_stores]
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    try:
        if fmt == "parquet":
            n = _write_parquet(stores, tmp, skipped)
        else:
            n = _write_jsonl(stores, tmp, out, skipped)
        os.replace(tmp, out)
    except OSError as exc:
        from ..store.fsutil import storage_error

        raise storage_error(exc, "export the preference pairs", out) from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


def _write_parquet(stores: list[Any], tmp: Path, skipped: list[str] | None) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("caption", pa.string()),
            ("jpg_0", pa.binary()),
            ("jpg_1", pa.binary()),
            ("label_0", pa.float64()),
            ("pair_id", pa.string()),
            ("project", pa.string()),
        ]
    )
    n = 0
    # Row groups of 64 pairs: memory stays flat however many pairs a project holds.
    with pq.ParquetWriter(str(tmp), schema) as writer:
        batch: dict[str, list[Any]] = {c: [] for c in COLUMNS}

        def flush() -> None:
            if batch["caption"]:
                writer.write_table(pa.table(batch, schema=schema))
                for v in batch.values():
                    v.clear()

        for store, pair, label, left, right in _rows(stores, skipped):
            batch["caption"].append(pair_prompt(store, pair)[0])
            batch["jpg_0"].append(left)
            batch["jpg_1"].append(right)
            batch["label_0"].append(label)
            batch["pair_id"].append(pair.id)
            batch["project"].append(store.slug)
            n += 1
            if len(batch["caption"]) >= 64:
                flush()
        flush()
    return n


def _write_jsonl(stores: list[Any], tmp: Path, out: Path, skipped: list[str] | None) -> int:
    images_dir = out.with_name(out.stem + "_images")
    staging = out.with_name(f".{images_dir.name}.{secrets.token_hex(4)}.tmp")
    staging.mkdir()
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for store, pair, label, left, right in _rows(stores, skipped):
                names = []
                for side, data in (("0", left), ("1", right)):
                    name = f"{store.slug}_{pair.id}_{side}.jpg"
                    (staging / name).write_bytes(data)
                    names.append(f"{images_dir.name}/{name}")
                row = {
                    "caption": pair_prompt(store, pair)[0],
                    "jpg_0": names[0],
                    "jpg_1": names[1],
                    "label_0": label,
                    "pair_id": pair.id,
                    "project": store.slug,
                }
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
            fh.flush()
            os.fsync(fh.fileno())
        if images_dir.exists():
            shutil.rmtree(images_dir)
        os.replace(staging, images_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return n
