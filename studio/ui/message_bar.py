"""One message strip of fixed height, with a history: messages never move the work.

The strip always takes the same height, so a message (or three) never pushes the images down.
It shows the most important live message on one line, elided, with its full text in the
tooltip: the newest error first (errors and warnings stay until dismissed or read in the
history), else the newest note (notes fade after ``NOTE_TIMEOUT_MS``). "History" (Ctrl+Shift+M)
lists every message of the session, newest first, as selectable text for a bug report; opening
it marks the errors as read, which clears them from the strip.

The icon is painted (a coloured disc with "!" or "i"), not a font glyph: with the default
fonts of a bare Linux install "⛔" rendered as an empty box.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.ui.plain_label import plain_tooltip
from tdri_engine.events import Error

NOTE_TIMEOUT_MS = 10000
STRIP_HEIGHT = 34
HISTORY_LIMIT = 200
LEVEL_COLOURS = {"error": "#d9534f", "warning": "#e0a526", "info": "#4a8fe0"}


class LevelIcon(QWidget):
    """A disc in the level's colour with "!" (error, warning) or "i" (note), painted."""

    def __init__(self, level: str = "info", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageIcon")
        self.level = level
        self.setFixedSize(18, 18)

    def set_level(self, level: str) -> None:
        self.level = level
        self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(LEVEL_COLOURS.get(self.level, LEVEL_COLOURS["info"])))
        r = QRectF(1, 1, self.width() - 2, self.height() - 2)
        p.drawEllipse(r)
        f = QFont(self.font())
        f.setBold(True)
        f.setPixelSize(12)
        p.setFont(f)
        p.setPen(QColor("white"))
        p.drawText(r, Qt.AlignmentFlag.AlignCenter, "i" if self.level == "info" else "!")


class MessageItem:
    """One message: its level, title, detail and when it came; ``live`` until dismissed."""

    def __init__(self, level: str, title: str, detail: str) -> None:
        self.level = level
        self.title = title
        self.detail = detail
        self.at = time.strftime("%H:%M:%S")
        self.live = True
        self.read = False

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.detail}".strip()

    def one_line(self) -> str:
        return " — ".join(s.replace("\n", " ") for s in (self.title, self.detail) if s)


def _rank(level: str) -> int:
    return {"info": 0, "warning": 1, "error": 2}.get(level, 0)


class ElidedLabel(QLabel):
    """A one-line label that elides long text with "…" and shows the whole text as tooltip."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._full = ""
        self.set_full_text(text)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self.setToolTip(plain_tooltip(text) if text else "")
        self._elide()

    def full_text(self) -> str:
        return self._full

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name: the whole text, elided
        self.set_full_text(text)

    def text(self) -> str:  # the whole text, as a caller set it (the screen may show it elided)
        return self._full

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(10, self.width() - 4)
        QLabel.setText(self, self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, width))


class MessageBar(QFrame):
    """The strip; ``messages`` lists the live messages, ``history`` all of them."""

    changed = Signal()
    history_closed = Signal()  # the window puts the focus back on the work

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.setAccessibleName("Messages")
        self.setFixedHeight(STRIP_HEIGHT)
        self.setProperty("level", "none")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 6, 4)
        layout.setSpacing(8)
        self.icon = LevelIcon("info", self)
        layout.addWidget(self.icon)
        self.label = ElidedLabel("", self)
        self.label.setObjectName("messageText")
        self.label.setAccessibleName("Latest message")
        layout.addWidget(self.label, 1)
        self.more_button = QToolButton(self)
        self.more_button.setObjectName("messageHistoryButton")
        self.more_button.setAccessibleName("Message history")
        self.more_button.setToolTip("Every message of this session (Ctrl+Shift+M)")
        self.more_button.clicked.connect(self.show_history)
        self.more_button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        layout.addWidget(self.more_button)
        self.dismiss_button = QToolButton(self)
        self.dismiss_button.setObjectName("messageDismiss")
        self.dismiss_button.setAccessibleName("Dismiss message")
        self.dismiss_button.setText("Dismiss")
        self.dismiss_button.setToolTip("Dismiss this message")
        self.dismiss_button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.dismiss_button.clicked.connect(self.dismiss_current)
        layout.addWidget(self.dismiss_button)
        self._items: list[MessageItem] = []  # live, newest first
        self._history: list[MessageItem] = []  # all, newest first
        self.history_dialog: QDialog | None = None
        self._render()

    # ------------------------------------------------------------------ reading
    @property
    def messages(self) -> list[MessageItem]:
        return list(self._items)

    @property
    def history(self) -> list[MessageItem]:
        return list(self._history)

    def texts(self) -> list[str]:
        return [m.text for m in self._items]

    def current(self) -> MessageItem | None:
        """What the strip shows: the newest unread error or warning, else the newest note."""
        for item in self._items:
            if item.level != "info" and not item.read:
                return item
        return next((i for i in self._items if i.level == "info"), None)

    # ------------------------------------------------------------------ writing
    def show_error(self, error: Error) -> MessageItem:
        level = "info" if error.kind == "cancelled" else "error"
        return self._add(level, error.message, error.what_to_do)

    def show_warning(self, title: str, detail: str = "") -> MessageItem:
        return self._add("warning", title, detail)

    def show_info(self, title: str, detail: str = "", *, timeout_ms: int = NOTE_TIMEOUT_MS) -> MessageItem:
        item = self._add("info", title, detail)
        if timeout_ms:
            QTimer.singleShot(timeout_ms, self, lambda: self.dismiss(item))
        return item

    def dismiss(self, item: MessageItem) -> None:
        if item in self._items:
            self._items.remove(item)
            item.live = False
            self._render()
            self.changed.emit()

    def dismiss_current(self) -> None:
        item = self.current()
        if item is not None:
            self.dismiss(item)

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
        item = MessageItem(level, title, detail)
        self._items.insert(0, item)
        self._history.insert(0, item)
        del self._history[HISTORY_LIMIT:]
        self._render()
        self.changed.emit()
        return item

    # ------------------------------------------------------------------ showing
    def _render(self) -> None:
        item = self.current()
        level = item.level if item is not None else "none"
        self.icon.setVisible(item is not None)
        if item is not None:
            self.icon.set_level(item.level)
            self.label.set_full_text(f"{item.at}  {item.one_line()}")
            self.label.setAccessibleName(f"{item.level}: {item.title}")
        else:
            self.label.set_full_text("No new messages")
        self.setProperty("level", level)
        self.style().unpolish(self)
        self.style().polish(self)
        unread = sum(1 for i in self._items if i is not item and i.level != "info" and not i.read)
        more = f"History ({len(self._history)})" if self._history else "History"
        if unread:
            more = f"+{unread} more · " + more
        self.more_button.setText(more)
        self.more_button.setEnabled(bool(self._history))
        self.dismiss_button.setVisible(item is not None)

    def show_history(self) -> QDialog:
        """Every message of the session, newest first; opening it marks the errors as read."""
        if self.history_dialog is None:
            dlg = QDialog(self.window())
            dlg.setObjectName("messageHistory")
            dlg.setWindowTitle("Messages")
            dlg.resize(640, 420)
            v = QVBoxLayout(dlg)
            lst = QListWidget(dlg)
            lst.setObjectName("messageHistoryList")
            lst.setAccessibleName("Every message of this session, newest first")
            lst.setWordWrap(True)
            lst.setTextElideMode(Qt.TextElideMode.ElideNone)
            v.addWidget(lst)
            buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, dlg)
            buttons.rejected.connect(dlg.reject)
            dlg.finished.connect(lambda _r: self.history_closed.emit())
            v.addWidget(buttons)
            self.history_dialog = dlg
        dlg = self.history_dialog
        lst = dlg.findChild(QListWidget, "messageHistoryList")
        assert lst is not None
        lst.clear()
        for item in self._history:
            state = "" if item.live else "  (dismissed)"
            row = QListWidgetItem(f"{item.at}  {item.level.upper()}{state}\n{item.text}")
            row.setSizeHint(QSize(0, 16 * (2 + item.text.count("\n"))))
            lst.addItem(row)
            item.read = True
        if lst.count():
            lst.setCurrentRow(0)
        self._render()
        self.changed.emit()
        dlg.show()
        dlg.raise_()
        dlg.activateWindow()  # the keys go to the list: arrows read, Esc closes
        lst.setFocus()
        return dlg
