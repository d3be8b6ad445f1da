"""A label that shows its text as typed: never as markup.

Qt's default for a label is ``AutoText``: text that *looks* like HTML is rendered as HTML, so a
task named ``"><img src=x>`` or a file called ``<b>shoe</b>.png`` would draw an image or
bold text instead of its name. Every label of the studio is a :class:`PlainLabel`; the few
that format on purpose (the message bar, the pending question) set rich text explicitly and
escape what they insert.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget


class PlainLabel(QLabel):
    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setText(text)


def plain_tooltip(text: str) -> str:
    """``text`` for ``setToolTip`` shown as typed: tooltips, too, render what looks like HTML."""
    if not text:
        return ""
    return f'<p style="white-space:pre-wrap">{html.escape(text)}</p>'
