"""Pieces the annotation and refinement views are both built from.

``bind_shortcut`` binds a named shortcut of :mod:`studio.shortcuts` to a view (every key of the
name, active while the focus is inside the view); ``side_scroll`` wraps a view's side panel in
a scroll area that never scrolls sideways, so a small window keeps every control reachable;
``open_for_keys`` opens one of the studio's own file dialogs with the keys in its name box.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QFileDialog, QFrame, QLineEdit, QScrollArea, QWidget

from studio import shortcuts


def bind_shortcut(view: QWidget, name: str, fn: Callable[[], Any]) -> None:
    """Every key of shortcut ``name`` calls ``fn`` while the focus is in ``view`` or its children."""
    for seq in shortcuts.keys(name):
        sc = QShortcut(QKeySequence(seq), view)
        sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        sc.activated.connect(fn)


def open_for_keys(dlg: QFileDialog) -> QLineEdit | None:
    """Open ``dlg`` (window-modal, Qt's own dialog) and put the keys in its file name box at
    once: some platforms give a new dialog no focus unless it is asked for. Returns the box."""
    dlg.open()
    dlg.activateWindow()
    name_box = dlg.findChild(QLineEdit, "fileNameEdit")
    if name_box is not None:
        name_box.setFocus(Qt.FocusReason.ActiveWindowFocusReason)
    return name_box


def side_scroll(inner: QWidget, name: str, min_width: int) -> QScrollArea:
    """``inner`` in a frameless scroll area (object name ``name``) that scrolls only vertically."""
    scroll = QScrollArea()
    scroll.setObjectName(name)
    scroll.setWidget(inner)
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setMinimumWidth(min_width)
    return scroll
