"""A non-modal message bar: errors say what happened and what to do; nothing blocks the window.

Messages stack (newest on top, a few at most); errors stay until dismissed, notes fade after
a while. Each message is selectable text so it can be copied into a bug report.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from tdri_engine.events import Error

MAX_MESSAGES = 4
NOTE_TIMEOUT_MS = 10000


class MessageItem(QFrame):
    dismissed = Signal(object)

    def __init__(self, level: str, title: str, detail: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.level = level
        self.title = title
        self.detail = detail
        self.setObjectName("messageItem")
        self.setProperty("level", level)  # the style sheet colours by level
        self.setAccessibleName(f"{level}: {title}")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        icon = QLabel({"error": "⛔", "warning": "⚠", "info": "ℹ"}.get(level, "ℹ"))
        icon.setObjectName("messageIcon")
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        layout.addWidget(icon)
        text = f"<b>{_esc(title)}</b>"
        if detail:
            text += f"<br><span>{_esc(detail)}</span>"
        self.label = QLabel(text)
        self.label.setObjectName("messageText")
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.label, 1)
        close = QToolButton()
        close.setObjectName("messageDismiss")
        close.setAccessibleName("Dismiss message")
        close.setText("✕")
        close.setToolTip("Dismiss")
        close.clicked.connect(lambda: self.dismissed.emit(self))
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.detail}".strip()


def _rank(level: str) -> int:
    return {"info": 0, "warning": 1, "error": 2}.get(level, 0)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br>")


class MessageBar(QWidget):
    """Holds the visible messages; ``messages`` lists them for tests and screen readers."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.setAccessibleName("Messages")
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(8, 4, 8, 0)
        self._layout.setSpacing(4)
        self._items: list[MessageItem] = []
        self.setVisible(False)

    @property
    def messages(self) -> list[MessageItem]:
        return list(self._items)

    def texts(self) -> list[str]:
        return [m.text for m in self._items]

    def show_error(self, error: Error) -> MessageItem:
        level = "info" if error.kind == "cancelled" else "error"
        return self._add(level, error.message, error.what_to_do)

    def show_warning(self, title: str, detail: str = "") -> MessageItem:
        return self._add("warning", title, detail)

    def show_info(self, title: str, detail: str = "", *, timeout_ms: int = NOTE_TIMEOUT_MS) -> MessageItem:
        item = self._add("info", title, detail)
        if timeout_ms:
            QTimer.singleShot(timeout_ms, item, lambda: self.dismiss(item))
        return item

    def dismiss(self, item: MessageItem) -> None:
        if item in self._items:
            self._items.remove(item)
            self._layout.removeWidget(item)
            item.deleteLater()
            self.setVisible(bool(self._items))
            self.changed.emit()

    def clear(self) -> None:
        for item in list(self._items):
            self.dismiss(item)

    def _add(self, level: str, title: str, detail: str) -> MessageItem:
        # The same message twice (a retried save) shows once; a note that becomes a warning
        # (a round's warning first announced as an event) is replaced, not doubled.
        for item in list(self._items):
            if (item.title, item.detail) == (title, detail):
                if item.level == level or _rank(item.level) > _rank(level):
                    return item
                self.dismiss(item)
        item = MessageItem(level, title, detail, self)
        item.dismissed.connect(self.dismiss)
        self._items.insert(0, item)
        self._layout.insertWidget(0, item)
        while len(self._items) > MAX_MESSAGES:
            self.dismiss(self._items[-1])
        self.setVisible(True)
        self.changed.emit()
        return item
