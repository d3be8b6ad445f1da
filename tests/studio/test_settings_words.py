"""Settings read in words: each value has its unit and range in its label (the range the box
really accepts), a line on what it changes, and the method's parameters (τ, wᵢ, α, β) sit
apart in the Advanced group."""

from __future__ import annotations

import re

from PySide6.QtWidgets import QAbstractSpinBox, QCheckBox, QComboBox, QFormLayout, QLabel, QWidget

RANGE = re.compile(r"(\d+(?:\.\d+)?)–(\d+(?:\.\d+)?)")
ADVANCED = {"tau", "alpha", "beta"} | {f"weight_{a}" for a in ("Content", "Color", "Others")}


def rows(dlg):
    """(form label text, field widget) of every engine setting in the three settings tabs."""
    out = []
    for tab in ("generationTab", "dialogueTab", "updatesTab"):
        for form in dlg.findChild(QWidget, tab).findChildren(QFormLayout):
            for i in range(form.rowCount()):
                label = form.itemAt(i, QFormLayout.ItemRole.LabelRole)
                field = form.itemAt(i, QFormLayout.ItemRole.FieldRole)
                widget = field.widget() if field is not None else None
                if label is None or widget is None or isinstance(widget, QLabel):
                    continue
                out.append((label.widget().text(), widget))
    return out


def test_each_setting_says_its_unit_range_and_what_it_changes(studio, new_project, qtbot):
    window = studio(new_project())
    dlg = window.show_settings()
    qtbot.waitUntil(lambda: dlg._check_task.done(), timeout=10000)
    shown = rows(dlg)
    assert len(shown) >= 20
    checked = 0
    for text, widget in shown:
        spins = [widget] if isinstance(widget, QAbstractSpinBox) else widget.findChildren(QAbstractSpinBox)
        if isinstance(widget, (QAbstractSpinBox, QComboBox, QCheckBox)) or spins:
            assert not re.fullmatch(r"[^a-z]*", text), text  # words, not a bare symbol
        if spins:
            m = RANGE.search(text)
            assert m, f"no range in {text!r}"
            spin = spins[0]
            low = spin.minimum() + (spin.singleStep() if spin.specialValueText() else 0)  # "calibrated"
            assert (float(m.group(1)), float(m.group(2))) == (round(low, 2), spin.maximum()), text
            checked += 1
        what = dlg.findChild(QLabel, f"{widget.objectName()}What")
        if widget.objectName().startswith("weight_") and widget.objectName() != "weight_Others":
            continue  # one line under the seven weights
        if widget.objectName() in ("auto_update",):
            continue  # a studio preference, said by its checkbox
        assert what is not None and len(what.text().split()) >= 6, widget.objectName()
    assert checked >= 12

    advanced = dlg.findChild(QWidget, "advancedMethodGroup")
    assert "Advanced" in advanced.title() and "τ" in advanced.title()
    for text, widget in shown:
        inside = advanced.isAncestorOf(widget)
        assert inside == (widget.objectName() in ADVANCED or widget.objectName().startswith("weight_")), text
    # the symbols come after the words: "Ask when the image is this unclear (τ, 0–1)"
    tau_label = next(t for t, w in shown if w is dlg.tau_spin)
    assert tau_label.index("τ") > tau_label.index("unclear")
    dlg.reject()
