"""Key presses as a user makes them, for the keys-only scenarios: every key goes to whatever
has the focus (the window when nothing inside it has), never to a widget chosen by the test."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QWidget

NO = Qt.KeyboardModifier.NoModifier
CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
ALT = Qt.KeyboardModifier.AltModifier


class Keys:
    """Presses keys on whatever has the focus (the window when nothing inside it has)."""

    def __init__(self, qtbot: Any, window: QWidget) -> None:
        self.qtbot, self.window = qtbot, window

    def focused(self) -> QWidget:
        return QApplication.focusWidget() or self.window

    def press(self, key: Qt.Key, mod: Qt.KeyboardModifier = NO) -> None:
        self.qtbot.keyClick(self.focused(), key, mod)

    def type(self, text: str) -> None:
        self.qtbot.keyClicks(self.focused(), text)
