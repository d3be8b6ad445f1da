"""The refinement view shows each round's scores with their scales, measured in the engine thread
and stored with the round; the window opens a `tdri eval` report (issue 10, the studio part)."""

from __future__ import annotations

import threading
from pathlib import Path

from fake_engine import FakeClip, FakeEngine
from PIL import Image
from PySide6.QtCore import QCoreApplication, QEvent, Qt, QUrl
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import QApplication

from studio.ui.round_metrics import ABSENT
from tdri_engine.records import DialogueTurn
from tdri_engine.store import open_project


def _rounds_scored(panel, n: int) -> bool:
    return panel.table.rowCount() == n and all(
        panel.cell_text(r.image_id, "t2i_clip") not in ("…",) for r in panel._rounds()
    )


def test_each_rounds_scores_show_with_their_scales_and_come_back_from_the_project(studio, new_project, qtbot):
    project = new_project("Coats")
    engine = FakeEngine()
    window = studio(project, engine)
    window.tabs.setCurrentWidget(window.refinement_view)
    view, model = window.refinement_view, window.refinement_model
    panel = view.metrics_panel

    view.input.setPlainText("a red coat")
    with qtbot.waitSignal(model.round_finished, timeout=10000):
        qtbot.mouseClick(view.generate_button, Qt.MouseButton.LeftButton)
    view.input.setFocus()
    qtbot.keyClicks(view.input, "make it navy")
    with qtbot.waitSignal(model.round_finished, timeout=10000):
        qtbot.keyClick(view.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: _rounds_scored(panel, 2), timeout=10000)

    # measured in the engine thread, never in the GUI thread
    measured_in = {tid for name, tid in engine.calls if name == "measure"}
    assert measured_in and threading.get_ident() not in measured_in
    assert measured_in == {window.bridge.worker_thread_ident}

    # the numbers are the scorer's on the stored images and prompts: T2I vs the round's prompt,
    # I2I vs the round before; the fake profile has no BLIP, round 0 no earlier image
    rounds = panel._rounds()
    store = window.store
    images = [store.load_image(r.image_id) for r in rounds]
    clip = FakeClip()
    for row, r in enumerate(rounds):
        t2i = clip.image_text_with_warnings(images[row], [r.prompt])[0][0]
        assert panel.table.item(row, 1).text() == f"{t2i:.3f}" == panel.cell_text(r.image_id, "t2i_clip")
        assert panel.table.item(row, 2).text() == ABSENT
    assert panel.table.item(0, 3).text() == ABSENT
    assert panel.table.item(1, 3).text() == f"{clip.image_image(images[1], images[0]):.3f}"
    # the shown (right) round is the selected row, spelled out with every scale in words
    assert model.comparison.right.round == 1 and panel.table.currentRow() == 1
    detail = panel.detail.text()
    assert detail.startswith("Round 1:")
    assert (
        "T2I CLIP " in detail and "cosine of CLIP's image and text embeddings" in detail and "0–1" in detail
    )
    assert "image vs round 0's image" in detail and "1 = the same picture" in detail
    assert "BLIP: not measured (this profile has no BLIP model)" in detail
    assert "random weights" in detail  # the fake engine, like the demo, says its numbers mean nothing
    assert "0–1" in panel.table.item(0, 1).toolTip()

    # choosing round 0 on the right spells out round 0
    model.compare(None, rounds[0])
    assert panel.table.currentRow() == 0 and panel.detail.text().startswith("Round 0:")
    assert "I2I CLIP: not measured (the first round has no earlier image)" in panel.detail.text()

    # stored with the rounds: a reopened project shows the same numbers without measuring again
    shown = [[panel.table.item(r, c).text() for c in range(4)] for r in range(2)]
    path = store.path
    window.close()
    with open_project(path, read_only=True) as reread:
        turns = sorted(reread.all(DialogueTurn), key=lambda t: t.round)
        assert [f"{t.metrics['values']['t2i_clip']:.3f}" for t in turns] == [row[1] for row in shown]
    engine2 = FakeEngine()
    window2 = studio(path, engine2)
    window2.tabs.setCurrentWidget(window2.refinement_view)
    panel2 = window2.refinement_view.metrics_panel
    qtbot.waitUntil(lambda: _rounds_scored(panel2, 2), timeout=10000)
    assert [[panel2.table.item(r, c).text() for c in range(4)] for r in range(2)] == shown
    assert not [c for c in engine2.calls if c[0] == "measure"]


def test_a_round_that_cannot_be_measured_says_why_in_the_panel_and_the_dialogue_goes_on(
    studio, new_project, qtbot, monkeypatch
):
    engine = FakeEngine()
    window = studio(new_project("Shirts"), engine)
    window.tabs.setCurrentWidget(window.refinement_view)
    view, model = window.refinement_view, window.refinement_model
    from tdri_engine.errors import ModelMissing

    def missing(*_a, **_k):
        raise ModelMissing("clip", ["/models/clip"], "Copy a CLIP model into /models/clip.")

    monkeypatch.setattr(engine, "measure_round", missing)
    view.input.setPlainText("a white shirt")
    with qtbot.waitSignal(model.round_finished, timeout=10000):
        qtbot.mouseClick(view.generate_button, Qt.MouseButton.LeftButton)
    panel = view.metrics_panel
    qtbot.waitUntil(lambda: panel.detail.text().startswith("Round 0: not measured."), timeout=10000)
    assert "/models/clip" in panel.detail.text()
    assert panel.table.item(0, 1).text() == ABSENT
    assert not any("clip" in t.lower() for t in window.message_bar.texts())  # the panel says it, once
    assert model.rounds and model.rounds[0].image is not None


def _report_folder(tmp_path: Path) -> Path:
    """A report as `tdri eval` writes it (its own writer), plus a plot the Markdown shows."""
    from tdri_engine.evaluation.report import write_report

    out = tmp_path / "eval-run"
    out.mkdir()
    md = write_report(out)
    Image.new("RGB", (40, 20), (10, 120, 200)).save(out / "plot_i2i_clip.png")
    md.write_text(md.read_text(encoding="utf-8") + "\n![i2i_clip](plot_i2i_clip.png)\n", encoding="utf-8")
    return out


def test_open_evaluation_report_renders_the_folders_markdown_by_keys(studio, new_project, qtbot, tmp_path):
    window = studio(new_project("Eval"))
    folder = _report_folder(tmp_path)
    # Project ▸ Open evaluation report…, then type the folder and Return (the user's action)
    action = next(
        a for a in window.findChildren(type(window.menuBar().actions()[0])) if "evaluation report" in a.text()
    )
    action.trigger()
    dialog = window.report_file_dialog
    qtbot.waitUntil(lambda: dialog.isActiveWindow() and dialog.isAncestorOf(QApplication.focusWidget()))
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(QApplication.focusWidget(), str(folder))
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
    qtbot.waitUntil(
        lambda: window.report_dialog is not None and window.report_dialog.isVisible(), timeout=10000
    )
    shown = window.report_dialog.browser
    text = shown.toPlainText()
    assert "Evaluation: profile" in text and "paper: TDRI (Ours)" in text and "0.338" in text
    assert "|---|" not in text and "# Evaluation" not in text  # rendered as Markdown, not shown raw
    plot = shown.document().resource(
        QTextDocument.ResourceType.ImageResource.value, QUrl("plot_i2i_clip.png")
    )
    assert plot is not None and not plot.isNull()  # the plot next to the report resolves
    assert window.prefs.last_report_dir == str(folder.parent)
    # Escape closes it and the keys go back to the work
    qtbot.waitUntil(lambda: window.report_dialog.isActiveWindow())
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.report_dialog.isVisible())


def test_a_folder_without_a_report_is_refused_with_what_to_pick(studio, new_project, run, tmp_path):
    window = studio(new_project("Eval"))
    empty = tmp_path / "not-a-report"
    empty.mkdir()
    assert run(window.open_eval_report(empty)) is None
    assert window.report_dialog is None
    assert any("report.md" in t for t in window.message_bar.texts())
    binary = tmp_path / "x.md"
    binary.write_bytes(b"\x00\x01")
    assert run(window.open_eval_report(binary)) is None
    assert any("is not text" in t for t in window.message_bar.texts())


def test_a_saved_round_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    """Save as… copied straight onto the target, so a reader that saw the file could read half a
    PNG (test_scenario_designer did, once the engine thread was busy measuring scores)."""
    import shutil

    from studio.models import refinement_model

    src = tmp_path / "round.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(src)
    out = tmp_path / "keep" / "round-one.png"
    out.parent.mkdir()
    seen: list[tuple[Path, bool]] = []
    real = shutil.copyfile

    def watching(a, b, *args, **kw):
        seen.append((Path(b), out.exists()))
        return real(a, b, *args, **kw)

    monkeypatch.setattr(shutil, "copyfile", watching)
    refinement_model.copy_whole(src, out)
    assert seen and all(dst != out and not existed for dst, existed in seen)  # never written in place
    assert out.read_bytes() == src.read_bytes() and sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_closing_the_window_with_a_report_open_closes_both_quietly(tdri_home, run, tmp_path, qtbot):
    """The report's "finished" used to queue a focus call on the window being deleted."""
    from studio.prefs import StudioPrefs
    from studio.ui.main_window import MainWindow

    engine = FakeEngine()
    window = MainWindow(StudioPrefs.load(), engine_factory=lambda profile, settings: engine)
    window.show()
    qtbot.waitExposed(window)
    dialog = run(window.open_eval_report(_report_folder(tmp_path)))
    assert dialog.isVisible()
    window.close()
    assert not dialog.isVisible()
    window.deleteLater()  # as the app does on quit: the window goes before queued calls run
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    qtbot.wait(50)  # a queued call on the deleted window would raise here (pytest-qt reports it)
