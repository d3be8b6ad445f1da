"""Bad input: each case shows a clear message, the studio keeps working, nothing is lost."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from fake_engine import FakeEngine, ScriptedRound
from PIL import Image

from tdri_engine.errors import ModelMissing
from tdri_engine.records import Annotation, DialogueTurn, ImageRecord, Task


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(path: Path, side: int = 20000) -> Path:
    """A valid PNG header claiming side×side pixels, a few bytes on disk (nothing allocated)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    idat = zlib.compress(row * 8)  # a few rows are enough: the size check reads the header
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )
    return path


def odd_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "a_notes.png").write_text("these are my notes, not a picture")  # a non-image named .png
    (folder / "b_empty.png").write_bytes(b"")  # 0 bytes
    huge_png(folder / "c_huge.png")
    Image.new("RGBA", (64, 80), (200, 30, 30, 90)).save(folder / "d_alpha.png")
    Image.new("CMYK", (64, 80), (0, 200, 200, 20)).save(folder / "e_cmyk.jpg")
    (folder / "f_readme.txt").write_text("not an image file at all")
    return folder


def good_pair(folder: Path) -> Path:
    folder.mkdir()
    for i, c in enumerate(((200, 40, 40), (40, 40, 200))):
        Image.new("RGB", (48, 48), c).save(folder / f"ok_{i}.png")
    return folder


def test_odd_files_are_refused_or_converted_with_a_message_and_earlier_work_stays(
    studio, new_project, tmp_path, qtbot, run
):
    window = studio(new_project())
    view, model = window.annotation_view, window.annotation_model
    run(view.import_paths(str(good_pair(tmp_path / "good"))))
    first = model.current.id
    model.set_description(0, "red square")  # earlier work that must survive
    model.flush()

    result = run(view.import_paths(str(odd_folder(tmp_path / "odd"))))
    refused = {Path(p).name for p in result.errors}
    assert refused == {"a_notes.png", "b_empty.png", "c_huge.png"}
    assert [r.name for r in result.images] == ["d_alpha", "e_cmyk"]  # converted, with notes
    assert any("transparen" in n.lower() for n in result.notes[str(tmp_path / "odd" / "d_alpha.png")])
    assert any("cmyk" in n.lower() for n in result.notes[str(tmp_path / "odd" / "e_cmyk.jpg")])
    text = "\n".join(window.message_bar.texts())
    assert "3 file(s) were not imported" in text
    for name, words in (("a_notes.png", "not an image"), ("b_empty.png", "0 bytes"), ("c_huge.png", "20000")):
        line = next(line for line in text.splitlines() if line.startswith(name))
        assert words in line, line
    assert "Skipped 1 file(s) that are not images" in text

    # the studio goes on: two tasks, the new one shown, the earlier description untouched
    assert len(model.tasks) == 2
    assert model.current.id == result.tasks[0].id
    qtbot.waitUntil(lambda: view.panes[0].view.image is not None)
    assert (
        window.store.get(Annotation, first).descriptions[model.store.get(Task, first).images[0]]
        == "red square"
    )


def test_an_image_file_missing_on_disk_says_so_and_the_task_can_still_be_annotated(
    studio, new_project, tmp_path, qtbot, run
):
    project = new_project()
    window = studio(project)
    view, model = window.annotation_view, window.annotation_model
    result = run(view.import_paths(str(good_pair(tmp_path / "good"))))
    rec = window.store.get(ImageRecord, result.tasks[0].images[1])
    window.store.image_path(rec).unlink()
    model.images_changed.emit(model.images)  # show the task again
    gone = model.position_of(1)  # the pane that shows image 1 (pairs are shown in a random order)
    qtbot.waitUntil(lambda: "Image missing" in view.panes[gone].view.message, timeout=5000)
    assert view.panes[1 - gone].view.image is not None
    assert any("Image missing" in t for t in window.message_bar.texts())
    model.set_description(1, "the file is gone but I remember it was blue")
    assert model.flush()


def test_a_missing_model_is_named_with_what_to_do_and_the_annotation_view_keeps_working(
    studio, new_project, qtbot, run
):
    missing = ModelMissing(
        "vlm", ["/models/vlm"], "Copy the vlm model into /models/vlm, or set its folder in Settings ▸ Models."
    )
    engine = FakeEngine(missing_roles=("vlm",), script=[ScriptedRound(fail=missing)])
    window = studio(new_project(), engine)
    texts = window.message_bar.texts()
    assert any("“vlm” not found" in t and "Copy the vlm model" in t for t in texts), texts
    window.refinement_view.input.setPlainText("a dress")
    fut = window.refinement_view.generate()
    qtbot.waitUntil(fut.done, timeout=10000)
    assert any(
        "Model for role 'vlm' not found" in t and "/models/vlm" in t for t in window.message_bar.texts()
    )
    assert not window.refinement_model.busy and window.refinement_model.rounds == []
    # the rest of the studio is unaffected
    window.annotation_model.reload_tasks()
    assert window.isVisible()


def test_an_exception_inside_the_engine_becomes_a_message_and_the_next_round_works(
    studio, new_project, qtbot
):
    engine = FakeEngine(
        script=[ScriptedRound(), ScriptedRound(fail=RuntimeError("CUDA kernel exploded")), ScriptedRound()]
    )
    window = studio(new_project(), engine)
    view, model = window.refinement_view, window.refinement_model
    view.input.setPlainText("a trench coat")
    with qtbot.waitSignal(model.round_finished, timeout=10000):
        view.generate()
    view.input.setPlainText("belted")
    fut = view.send()
    qtbot.waitUntil(fut.done, timeout=10000)
    error = next(m for m in window.message_bar.messages if m.level == "error")
    assert "Unexpected error in the engine: RuntimeError: CUDA kernel exploded" in error.title
    assert "Try again" in error.detail
    qtbot.waitUntil(lambda: view.input.toPlainText() == "belted", timeout=2000)  # kept for the retry
    assert len(window.store.all(DialogueTurn)) == 1
    with qtbot.waitSignal(model.round_finished, timeout=10000):
        view.send()
    assert [r.round for r in model.rounds] == [0, 1]
    assert model.rounds[1].user_input == "belted"
