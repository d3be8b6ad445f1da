"""Images in and out of a project: provenance in the PNG, careful imports, clear refusals."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tdri_engine.errors import BadInput, StorageError
from tdri_engine.records import ImageRecord, Task
from tdri_engine.store import load_image_checked, read_provenance


def noise(w: int = 64, h: int = 48, seed: int = 0, mode: str = "RGB") -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width``×``height`` pixels (without holding them)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def test_generated_image_carries_its_provenance_even_outside_the_project(project, tmp_path: Path):
    image = noise()
    record = ImageRecord(
        prompt="a long red dress — «élégante»", seed=42, round=3, model="sd15", adapter_version="v0002"
    )
    saved = project.add_image(image, record)
    assert saved.file == f"images/{record.id}.png" and (saved.width, saved.height) == (64, 48)
    assert project.get(ImageRecord, record.id) == saved

    dragged = tmp_path / "on-the-desktop.png"
    shutil.copy(project.image_path(saved), dragged)
    prov = read_provenance(dragged)
    assert prov["prompt"] == "a long red dress — «élégante»" and prov["seed"] == 42
    assert prov["round"] == 3 and prov["adapter_version"] == "v0002" and prov["id"] == record.id
    with Image.open(dragged) as im:  # the short keys, for tools that do not parse JSON
        assert im.text["tdri:seed"] == "42" and im.text["tdri:model"] == "sd15"
        assert im.text["tdri:adapter"] == "v0002" and im.text["tdri:round"] == "3"
        assert im.text["tdri:prompt"] == "a long red dress — «élégante»"
    assert np.array_equal(np.asarray(project.load_image(saved)), np.asarray(image))


def test_read_provenance_of_a_plain_png_is_empty(tmp_path: Path):
    noise().save(tmp_path / "plain.png")
    assert read_provenance(tmp_path / "plain.png") == {}


def test_missing_referenced_image_names_the_path(project):
    saved = project.add_image(noise(), ImageRecord())
    project.image_path(saved).unlink()
    with pytest.raises(BadInput) as info:
        project.load_image(saved.id)
    assert info.value.kind == "image-missing"
    assert str(project.path / saved.file) in info.value.message and info.value.what_to_do
    with pytest.raises(BadInput) as info:
        project.load_image("no-such-image")
    assert info.value.kind == "image-missing" and "no-such-image" in info.value.message


def test_image_record_pointing_outside_the_project_is_refused(project):
    project.put(ImageRecord(id="evil", file="../../etc/passwd"))
    with pytest.raises(BadInput, match="outside the project"):
        project.load_image("evil")


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda p: p.write_bytes(b""), "empty (0 bytes)"),
        (lambda p: p.write_text("these are my notes, not a picture"), "is not an image"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00"), "damaged or truncated"),
    ],
    ids=["zero-bytes", "text-file", "png-signature-only"],
)
def test_files_that_are_not_images_are_refused_clearly(tmp_path: Path, make, phrase):
    path = tmp_path / "picture.png"
    make(path)
    with pytest.raises(BadInput) as info:
        load_image_checked(path)
    assert phrase in info.value.message and "picture.png" in info.value.message
    assert info.value.what_to_do


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_is_refused(tmp_path: Path, fmt: str):
    path = tmp_path / f"cut.{fmt.lower()}"
    noise(256, 256).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(BadInput, match="truncated or damaged"):
        load_image_checked(path)


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        ((20000, 20000), "20000×20000 pixels (400.0 megapixels)"),
        ((9000, 9000), "9000×9000 pixels (81.0 megapixels)"),
    ],
    ids=["beyond-pil-bomb-limit", "beyond-our-limit"],
)
def test_huge_image_is_refused_before_decoding(tmp_path: Path, size, shown):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(*size))
    with pytest.raises(BadInput) as info:
        load_image_checked(path)
    assert info.value.kind == "image-too-large"
    assert shown in info.value.message and "the limit is 64.0 megapixels" in info.value.message
    assert "Scale the image down" in info.value.what_to_do


def test_transparency_is_placed_on_white_and_noted(tmp_path: Path):
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 255, 0))  # fully transparent corner
    rgba.save(tmp_path / "logo.png")
    image, notes = load_image_checked(tmp_path / "logo.png")
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((5, 5)) == (255, 0, 0)
    assert any("white background" in n for n in notes)


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda: Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "CMYK"),
        (lambda: Image.new("L", (16, 16), 128), "grayscale"),
        (lambda: Image.new("I;16", (16, 16), 65535), "high bit-depth"),
        (lambda: Image.new("P", (16, 16), 3), "P image"),
    ],
)
def test_other_colour_modes_become_rgb_with_a_note(tmp_path: Path, make, phrase):
    im = make()
    path = tmp_path / ("x.jpg" if im.mode == "CMYK" else "x.png")
    im.save(path)
    image, notes = load_image_checked(path)
    assert image.mode == "RGB" and image.size == (16, 16)
    assert any(phrase in n for n in notes), notes
    if phrase == "high bit-depth":
        assert image.getpixel((0, 0)) == (255, 255, 255)  # full scale stays full scale


def test_exif_rotation_and_animation_are_handled_and_noted(tmp_path: Path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    noise(40, 20).save(tmp_path / "phone.jpg", exif=exif.tobytes())
    image, notes = load_image_checked(tmp_path / "phone.jpg")
    assert image.size == (20, 40) and any("EXIF" in n for n in notes)

    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    image, notes = load_image_checked(tmp_path / "anim.gif")
    assert any("3 frames" in n for n in notes)


def test_import_image_copies_as_png_with_its_source(project, tmp_path: Path):
    src = tmp_path / "look book" / "coat.jpg"
    src.parent.mkdir()
    noise().convert("CMYK").save(src)
    record, notes = project.import_image(src)
    assert record.origin == "imported" and record.source_path == str(src) and record.name == "coat"
    assert project.image_path(record).suffix == ".png"
    # the PNG says where it came from by file name only: a path would carry the home folder along
    assert read_provenance(project.image_path(record))["source_path"] == "coat.jpg"
    assert any("CMYK" in n for n in notes)


@pytest.fixture
def shoot(tmp_path: Path) -> Path:
    """A folder as a photographer hands it over: good images, broken ones, and a note."""
    folder = tmp_path / "shoot"
    folder.mkdir()
    for i, name in enumerate(["01.png", "02.jpg", "04.png", "06.png"]):
        noise(seed=i).save(folder / name)
    (folder / "03.png").write_bytes(b"")  # copy interrupted
    (folder / "05.png").write_text("not a picture")
    cut = (folder / "06.png").read_bytes()
    (folder / "07.png").write_bytes(cut[: len(cut) // 2])
    (folder / "README.txt").write_text("shot on Tuesday")
    (folder / ".DS_Store").write_bytes(b"\0")
    return folder


def test_import_folder_pairs_good_images_and_lists_the_bad_ones(project, shoot: Path):
    result = project.import_images(shoot)
    assert [r.name for r in result.images] == ["01", "02", "04", "06"]
    assert [len(t.images) for t in result.tasks] == [2, 2]
    assert sorted(Path(p).name for p in result.errors) == ["03.png", "05.png", "07.png"]
    assert "empty" in result.errors[str(shoot / "03.png")].message
    assert result.skipped == [str(shoot / "README.txt")]
    assert "Not imported" in result.summary()
    assert [t.id for t in project.all(Task)] == [t.id for t in result.tasks]
    for image in result.images:
        assert project.image_path(image).is_file()


def test_import_as_single_images(project, shoot: Path):
    files = [shoot / "01.png", shoot / "02.jpg", shoot / "04.png"]
    result = project.import_images(files, pair=False)
    assert [t.kind for t in result.tasks] == ["single"] * 3 and not result.errors


def test_import_that_runs_out_of_disk_leaves_nothing_behind(project, shoot: Path, monkeypatch):
    import os

    real_write = os.write
    calls = {"n": 0}

    def fills_up(fd, data):  # the third file write finds the disk full
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", fills_up)
    with pytest.raises(StorageError, match="disk is full"):
        project.import_images(shoot)
    monkeypatch.undo()
    assert project.count(Task) == 0 and project.count(ImageRecord) == 0
    assert list(project.images_dir.iterdir()) == []
