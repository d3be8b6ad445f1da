"""How unclear each part of the image is, as a small bar chart painted by hand, and the reason
for the studio's question in plain words.

Each bar is 1 − sᵢ for one of the seven aspects (0 = the image matches the prompt on it,
1 = no match), named in words a designer uses ("colour", "viewpoint"); the aspect asked about is
highlighted. The footer says in words whether the studio asks; with ``show_formula`` it shows
A = Σ wᵢ(1 − sᵢ) against τ instead (the view's "Show the formula" toggle). Hovering a bar shows
what the Reflector saw (its caption for that aspect).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QHelpEvent, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from tdri_engine.settings import ASPECTS

BAR_COLOUR = QColor("#4c8bf5")
ASKED_COLOUR = QColor("#f0a020")
TRACK_COLOUR = QColor("#2f3238")
TEXT_COLOUR = QColor("#d7dae0")
MUTED_COLOUR = QColor("#9aa0a8")

# The paper's aspect names, as a designer says them in a sentence.
ASPECT_WORDS = {
    "Content": "subject",
    "Style": "style",
    "Background": "background",
    "Size": "size",
    "Color": "colour",
    "Perspective": "viewpoint",
    "Others": "details",
}


def aspect_words(aspect: str | None) -> str:
    return ASPECT_WORDS.get(aspect or "", (aspect or "image").lower())


def aspect_label(aspect: str | None) -> str:
    """The aspect as the studio names it on screen ("Colour", "Viewpoint", "Details"): the bars,
    the question and the dialogue use one name, not the engine's key ("Color", "Others")."""
    word = aspect_words(aspect)
    return word[:1].upper() + word[1:]


def plain_reason(
    scores: dict[str, float], ambiguity: float | None, tau: float | None, asked: str | None
) -> str:
    """Why the studio asks (or not), in words: the least clear part of the image first.

    The Reflector asks about one of the three lowest-scoring aspects (paper 4.3), so the
    sentence says "the least clear part" when it is the lowest and "among the least clear
    parts" otherwise; the numbers are in :func:`formula`.
    """
    if not scores:
        return ""
    order = sorted(scores, key=lambda a: (scores[a], ASPECTS.index(a) if a in ASPECTS else 99))
    if asked:
        name = aspect_words(asked)
        verb = "are" if name.endswith("s") else "is"  # "the details are"
        if asked == order[0]:
            return f"The {name} {verb} the least clear part of the image, so the studio asks about it."
        return f"The {name} {verb} among the least clear parts of the image, so the studio asks about it."
    if ambiguity is not None and tau is not None and ambiguity > tau:
        return (
            f"The least clear part of the image is the {aspect_words(order[0])}; "
            "you settled it a moment ago, so the studio asks nothing this round."
        )
    return "The image is clear enough on every part, so the studio asks nothing this round."


def formula(scores: dict[str, float], ambiguity: float | None, tau: float | None, asked: str | None) -> str:
    """The numbers behind :func:`plain_reason` (eq. 5 of the paper, section 4.3)."""
    if not scores or ambiguity is None:
        return ""
    head = f"A = Σ wᵢ(1 − sᵢ) = {ambiguity:.3f}"
    if tau is not None:
        head += f" {'>' if ambiguity > tau else '≤'} τ = {tau:.3f}"
    lines = [
        head + (f": asks about {asked}." if asked else ": no question."),
        "sᵢ = CLIP similarity of the image and the vision-language model's caption of aspect i; "
        "1 − sᵢ per aspect: " + ", ".join(f"{a} {1 - scores[a]:.2f}" for a in ASPECTS if a in scores) + ".",
        "The question's aspect is drawn among the three lowest sᵢ (an aspect just answered or "
        "skipped is left out unless the image still disagrees with the answer).",
    ]
    return "\n".join(lines)


class AmbiguityChart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ambiguityChart")
        self.setAccessibleName("Ambiguity per aspect")
        self.setMinimumHeight(190)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._scores: dict[str, float] = {}
        self._weights: dict[str, float] = {}
        self._captions: dict[str, str] = {}
        self._ambiguity: float | None = None
        self._tau: float | None = None
        self._asked: str | None = None
        self._bar_rects: dict[str, QRectF] = {}
        self.show_formula = False

    def set_show_formula(self, on: bool) -> None:
        self.show_formula = bool(on)
        self.update()

    # ------------------------------------------------------------------ data
    def set_data(
        self,
        scores: dict[str, float],
        ambiguity: float | None,
        tau: float | None,
        asked: str | None = None,
        captions: dict[str, str] | None = None,
        weights: dict[str, float] | None = None,
    ) -> None:
        self._scores = dict(scores)
        self._ambiguity, self._tau, self._asked = ambiguity, tau, asked
        self._captions = dict(captions or {})
        self._weights = dict(weights or {})
        self.setAccessibleDescription(self.summary())
        self.update()

    def clear(self) -> None:
        self.set_data({}, None, None)

    def ambiguity_of(self, aspect: str) -> float | None:
        s = self._scores.get(aspect)
        return None if s is None else max(0.0, min(1.0, 1.0 - float(s)))

    def summary(self) -> str:
        if not self._scores:
            return "No reflection yet."
        parts = [f"{a} {self.ambiguity_of(a):.2f}" for a in ASPECTS if a in self._scores]
        head = ""
        if self._ambiguity is not None:
            head = f"A = {self._ambiguity:.2f}"
            if self._tau is not None:
                head += f" {'>' if self._ambiguity > self._tau else '≤'} τ = {self._tau:.2f}. "
        return head + "; ".join(parts)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(300, 200)

    @staticmethod
    def _label(aspect: str) -> str:
        return aspect_label(aspect)

    # ------------------------------------------------------------------ painting
    def paintEvent(self, _event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(4, 4, -4, -4)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        p.setFont(font)
        fm = p.fontMetrics()
        self._bar_rects.clear()
        if not self._scores:
            p.setPen(MUTED_COLOUR)
            p.drawText(
                rect,
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                "The ambiguity of each aspect appears here after a round.",
            )
            return
        footer_h = fm.height() * 2 + 6
        label_w = max(fm.horizontalAdvance(self._label(a)) for a in ASPECTS) + 8
        value_w = fm.horizontalAdvance("0.00") + 8
        rows = [a for a in ASPECTS if a in self._scores] + [a for a in self._scores if a not in ASPECTS]
        area = QRectF(rect.left(), rect.top(), rect.width(), rect.height() - footer_h)
        row_h = area.height() / max(1, len(rows))
        bar_h = max(6.0, min(16.0, row_h * 0.6))
        track_w = max(20.0, area.width() - label_w - value_w)
        for i, aspect in enumerate(rows):
            y = area.top() + i * row_h
            cy = y + row_h / 2
            value = self.ambiguity_of(aspect) or 0.0
            asked = aspect == self._asked
            p.setPen(ASKED_COLOUR if asked else TEXT_COLOUR)
            p.drawText(
                QRectF(area.left(), y, label_w - 6, row_h),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                self._label(aspect),
            )
            track = QRectF(area.left() + label_w, cy - bar_h / 2, track_w, bar_h)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(TRACK_COLOUR)
            p.drawRoundedRect(track, 3, 3)
            bar = QRectF(track.left(), track.top(), track.width() * value, bar_h)
            p.setBrush(ASKED_COLOUR if asked else BAR_COLOUR)
            if bar.width() > 0.5:
                p.drawRoundedRect(bar, 3, 3)
            self._bar_rects[aspect] = QRectF(area.left(), y, area.width(), row_h)
            p.setPen(TEXT_COLOUR)
            p.drawText(
                QRectF(track.right() + 4, y, value_w, row_h),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                f"{value:.2f}",
            )
        # footer: the weighted sum against the threshold
        fy = area.bottom() + 4
        p.setPen(QPen(MUTED_COLOUR, 1))
        p.drawLine(QPointF(rect.left(), fy), QPointF(rect.right(), fy))
        if self._ambiguity is not None:
            over = self._tau is not None and self._ambiguity > self._tau
            if self.show_formula:
                text = f"A = Σ wᵢ(1 − sᵢ) = {self._ambiguity:.2f}"
                if self._tau is not None:
                    text += f"   {'>' if over else '≤'}  τ = {self._tau:.2f}"
            else:
                text = "Unclear overall: asks a question" if over else "Clear enough overall"
            p.setPen(ASKED_COLOUR if over else TEXT_COLOUR)
            p.drawText(
                QRectF(rect.left(), fy + 2, rect.width(), fm.height()), Qt.AlignmentFlag.AlignLeft, text
            )
            verdict = (
                (f"asks about the {aspect_words(self._asked)}" if self._asked else "nothing left to ask")
                if over
                else "no question"
            )
            p.setPen(MUTED_COLOUR)
            p.drawText(
                QRectF(rect.left(), fy + 2 + fm.height(), rect.width(), fm.height()),
                Qt.AlignmentFlag.AlignLeft,
                verdict,
            )

    def event(self, e) -> bool:  # noqa: D401 - Qt's name
        if e.type() == e.Type.ToolTip and isinstance(e, QHelpEvent):
            for aspect, r in self._bar_rects.items():
                if r.contains(QPointF(e.pos())):
                    cap = self._captions.get(aspect, "")
                    s = self._scores.get(aspect)
                    w = self._weights.get(aspect)
                    lines = [
                        f"{self._label(aspect)} ({aspect}): similarity s = {s:.2f}"
                        if s is not None
                        else aspect
                    ]
                    if w is not None:
                        lines.append(f"weight w = {w:.2f}")
                    if cap:
                        lines.append(f"The Reflector saw: {cap}")
                    QToolTip.showText(e.globalPos(), "\n".join(lines), self)
                    return True
            QToolTip.hideText()
            e.ignore()
            return True
        return super().event(e)
