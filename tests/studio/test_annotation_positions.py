"""Pairs are shown in a random order per task, and every answer is stored for the image the
annotator saw: the choice, the preference pair and the exported ``label_0``."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tdri_engine.optimizer.export import export_pairs
from tdri_engine.records import Annotation, ImageRecord, PreferencePair, Task
from tdri_engine.store import open_project
from tdri_engine.store.positions import SHOWN_ORDER, shown_order

COLOURS = [(200, 30, 30), (30, 30, 200), (30, 160, 30), (220, 180, 20), (20, 20, 20), (230, 120, 200)]
COLOURS += [(120, 60, 10), (10, 140, 150)]


def coloured_folder(folder: Path) -> Path:
    """Eight plain images, each its own colour: what a pane shows can be told by one pixel."""
    folder.mkdir(parents=True)
    for i, c in enumerate(COLOURS):
        Image.new("RGB", (40, 40), c).save(folder / f"img_{i:02d}.png")
    return folder


def colour_of(qimage) -> tuple[int, int, int]:
    px = qimage.pixelColor(qimage.width() // 2, qimage.height() // 2)
    return (px.red(), px.green(), px.blue())


def near(a, b, tol: int = 12) -> bool:  # JPEG export moves a plain colour by a few levels
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_pairs_are_shown_in_a_random_order_and_answers_are_mapped_back_to_the_images_seen(
    studio, new_project, tmp_path, qtbot, run
):
    project = new_project()
    window = studio(project)
    window.activateWindow()
    qtbot.waitActive(window)
    view, model = window.annotation_view, window.annotation_model
    result = run(view.import_paths(str(coloured_folder(tmp_path / "in"))))
    assert len(result.tasks) == 4

    # the order is recorded in each task and balanced over the import: it varies
    orders = [t.details[SHOWN_ORDER] for t in model.tasks]
    assert sorted(map(tuple, orders)) == [(0, 1), (0, 1), (1, 0), (1, 0)]

    seen_left: dict[str, tuple[int, int, int]] = {}
    for task in model.tasks:
        model.go_to(task.id)
        qtbot.waitUntil(lambda: all(p.view.image is not None for p in view.panes), timeout=5000)
        seen_left[task.id] = colour_of(view.panes[0].view.image)
        # the description typed under the left image belongs to the image shown there
        view.focus_description(0)
        qtbot.keyClicks(QApplication.focusWidget(), "the left one")
        view.focus_work()
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_1)  # "left is better", as seen
        assert view.choice_buttons["left"].isChecked()
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    window.close()

    store = open_project(project, read_only=True)
    try:
        images = {r.id: r for r in store.all(ImageRecord)}
        colour = {iid: COLOURS[int(r.name.split("_")[1])] for iid, r in images.items()}
        for task in store.all(Task):
            ann = store.get(Annotation, task.id)
            pair = store.get(PreferencePair, f"ann-{task.id}")
            left_image = task.images[shown_order(task)[0]]
            assert colour[left_image] == seen_left[task.id]
            assert ann.descriptions[left_image] == "the left one"
            assert pair.winner == left_image  # the stored choice names the image that was seen
            assert pair.train_meta[SHOWN_ORDER] == shown_order(task)
        out = tmp_path / "pairs.jsonl"
        assert export_pairs(store, out, "jsonl") == 4
    finally:
        store.close()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    labels = sorted(r["label_0"] for r in rows)
    assert labels == [0.0, 0.0, 1.0, 1.0]  # the same key, both labels: the order was mapped back
    for r in rows:
        winner = r["jpg_0"] if r["label_0"] == 1.0 else r["jpg_1"]
        with Image.open(out.parent / winner) as im:
            got = im.convert("RGB").getpixel((20, 20))
        assert near(got, seen_left[r["pair_id"].removeprefix("ann-")]), (r, got)
