"""Preference pairs leave the studio in the columns Diffusion-DPO training code reads."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tdri_engine import cli
from tdri_engine.errors import BadInput
from tdri_engine.optimizer.export import export_pairs
from tdri_engine.records import ImageRecord, PreferencePair


def _image(value: int) -> Image.Image:
    return Image.fromarray(np.full((32, 48, 3), value, dtype=np.uint8), "RGB")


@pytest.fixture
def annotated(project):
    """An annotator's four choices: left, right, a tie and 'both bad' (which is no pair)."""
    pairs = []
    for i, choice in enumerate(["left", "right", "tie", "both_bad"]):
        a = project.add_image(_image(40 * i), ImageRecord(prompt=f"prompt {i}"))
        b = project.add_image(_image(40 * i + 20), ImageRecord(prompt=f"prompt {i}"))
        pairs.append(PreferencePair(prompt=f"prompt {i}", image_left=a.id, image_right=b.id, choice=choice))
    project.put_many(pairs)
    return project


def test_parquet_has_the_pick_a_pic_columns(annotated, tmp_path):
    out = tmp_path / "pairs.parquet"
    assert export_pairs(annotated, out) == 3
    table = pq.read_table(out)
    assert table.column_names[:4] == ["caption", "jpg_0", "jpg_1", "label_0"]
    rows = table.to_pylist()
    assert [r["caption"] for r in rows] == ["prompt 0", "prompt 1", "prompt 2"]  # both bad left out
    assert [r["label_0"] for r in rows] == [1.0, 0.0, 0.5]
    left = Image.open(io.BytesIO(rows[1]["jpg_0"]))
    right = Image.open(io.BytesIO(rows[1]["jpg_1"]))
    assert left.format == "JPEG" and left.size == (48, 32)
    assert abs(np.asarray(left).mean() - 40) < 2 and abs(np.asarray(right).mean() - 60) < 2  # left stays left
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_datasets_loads_the_export_offline(annotated, tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "pairs.parquet"
    export_pairs([annotated], out, "parquet")
    ds = datasets.load_dataset(
        "parquet", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert ds.num_rows == 3 and {"caption", "jpg_0", "jpg_1", "label_0"} <= set(ds.column_names)
    # what the public training script does with a row
    kept = ds.filter(lambda r: r["label_0"] in (0, 1))
    assert kept.num_rows == 2
    assert Image.open(io.BytesIO(kept[0]["jpg_1"])).convert("RGB").size == (48, 32)


def test_jsonl_points_at_jpeg_files_beside_it(annotated, tmp_path):
    out = tmp_path / "exports" / "pairs.jsonl"
    assert export_pairs(annotated, out, "jsonl") == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label_0"] for r in rows] == [1.0, 0.0, 0.5]
    for row in rows:
        for key in ("jpg_0", "jpg_1"):
            assert not row[key].startswith("/")
            assert Image.open(out.parent / row[key]).format == "JPEG"
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 3


def test_a_missing_image_is_skipped_and_named(annotated, tmp_path):
    first = annotated.all(PreferencePair)[0]
    annotated.image_path(first.image_right).unlink()
    skipped: list[str] = []
    assert export_pairs(annotated, tmp_path / "p.parquet", skipped=skipped) == 2
    assert len(skipped) == 1 and first.id in skipped[0]
    with pytest.raises(BadInput, match="Unknown export format"):
        export_pairs(annotated, tmp_path / "p.csv", "csv")


def test_cli_exports_pairs_of_several_projects(annotated, projects_root, capsys):
    from tdri_engine.store import create_project

    with create_project(projects_root, "Second") as other:
        a = other.add_image(_image(1), ImageRecord(prompt="x"))
        b = other.add_image(_image(2), ImageRecord(prompt="x"))
        other.put(PreferencePair(prompt="x", image_left=a.id, image_right=b.id, choice="right"))
        second = other.path
    first = annotated.path
    annotated.close()
    assert (
        cli.main(
            ["export", "pairs", "--project", str(first), "--project", str(second), "--format", "parquet"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Wrote 4 pairs to" in out
    written = next((first / "exports").glob("pairs-*.parquet"))
    assert sorted(set(pq.read_table(written).column("project").to_pylist())) == ["second", "test-project"]


def test_exported_pairs_train_an_adapter_with_the_accelerate_script(annotated, tiny_sd_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    from tdri_engine.optimizer import accelerate_train
    from tdri_engine.optimizer.adapters import read_meta, validate_adapter_dir

    # two decisive pairs (the tie is skipped): enough for the script
    pairs = tmp_path / "pairs.parquet"
    export_pairs(annotated, pairs)
    out = tmp_path / "adapter"
    args = ["--pretrained", str(tiny_sd_dir), "--pairs", str(pairs), "--out", str(out)]
    assert accelerate_train.main([*args, "--steps", "2", "--batch-size", "2", "--resolution", "64"]) == 0
    meta = read_meta(out)
    assert (
        meta["pairs_used"] == 2
        and meta["steps"] == 2
        and meta["loss_curve"][0] == pytest.approx(0.6931, abs=1e-3)
    )
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, local_files_only=True)
    validate_adapter_dir(out, pipe.unet)
    pipe.load_lora_weights(str(out))


def test_a_pair_is_exported_with_the_prompt_its_images_were_made_from(project, tmp_path, capsys):
    """The choice records the dialogue's latest prompt; the caption is the images' own prompt,
    the winner's when the two were made from different prompts (what the update trains with)."""
    images = {
        name: project.add_image(_image(value), ImageRecord(prompt=prompt)).id
        for name, value, prompt in (
            ("a", 10, "a coat"),
            ("b", 30, "a coat"),
            ("c", 50, "a dress"),
            ("d", 70, "a red dress"),
        )
    }
    latest = "a red dress on a beach"
    project.put_many(
        [
            PreferencePair(prompt=latest, image_left=images["a"], image_right=images["b"], choice="left"),
            PreferencePair(prompt=latest, image_left=images["c"], image_right=images["d"], choice="right"),
            PreferencePair(prompt=latest, image_left=images["a"], image_right=images["c"], choice="both_bad"),
        ]
    )
    out = tmp_path / "pairs.jsonl"
    assert (
        cli.main(["export", "pairs", "--project", str(project.path), "--format", "jsonl", "--out", str(out)])
        == 0
    )
    assert "Left out 1 'both bad' choice: they name no winner." in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["caption"] for r in rows) == ["a coat", "a red dress"]
