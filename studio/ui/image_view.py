"""An image panel that fits, zooms and pans, with an optional overlay (the pose map).

Fit is the default and survives resizing; the wheel (or +/-) zooms under the cursor, a drag
pans, double-click or 0 toggles fit and 100%. With no image it paints a message instead
(e.g. "Image missing: … re-import it"), so an empty panel always says why it is empty.

A plain widget that paints one pixmap, rather than a QGraphicsView: a new image (a live
preview several times a second) then costs one small repaint, not a scene update.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPixmap, QWheelEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from studio.ui.plain_label import plain_tooltip

MIN_ZOOM, MAX_ZOOM = 0.05, 32.0
BACKGROUND = QColor("#1e1f22")
MESSAGE = QColor("#c9ccd1")


class ImageView(QWidget):
    clicked = Signal()
    zoom_changed = Signal(float)

    def __init__(
        self, parent: QWidget | None = None, *, name: str = "imageView", accessible: str = "Image"
    ) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setAccessibleName(accessible)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)  # we paint every pixel
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 120)
        self.setCursor(Qt.CursorShape.OpenHandCursor)
        self._image: QImage | None = None
        self._pixmap = QPixmap()
        self._overlay: QImage | None = None
        self._overlay_pixmap = QPixmap()
        self._overlay_on = False
        self._message = ""
        self._fit = True
        self._zoom = 1.0
        self._offset = QPointF(0, 0)  # image top-left in widget coordinates (when not fitting)
        self._drag_from: QPointF | None = None

    # ------------------------------------------------------------------ content
    @property
    def image(self) -> QImage | None:
        return self._image

    @property
    def message(self) -> str:
        return self._message

    @property
    def fit_mode(self) -> bool:
        return self._fit

    @property
    def overlay_shown(self) -> bool:
        return self._overlay_on and not self._overlay_pixmap.isNull() and self._image is not None

    def set_image(self, image: QImage | None, message: str = "") -> None:
        """Show ``image`` (fit to the view), or ``message`` when there is none."""
        had = self._image
        self._image = image if image is not None and not image.isNull() else None
        self._message = message
        self._pixmap = QPixmap.fromImage(self._image) if self._image is not None else QPixmap()
        self.setToolTip(plain_tooltip(message) if self._image is None else "")
        # A new round of the same size keeps the user's zoom and pan; anything else fits.
        if had is None or self._image is None or had.size() != self._image.size():
            self._fit = True
        self.update()

    def set_overlay(self, overlay: QImage | None) -> None:
        same = overlay is self._overlay
        self._overlay = overlay if overlay is not None and not overlay.isNull() else None
        if not same:
            self._overlay_pixmap = (
                QPixmap.fromImage(self._overlay) if self._overlay is not None else QPixmap()
            )
            self.update()

    def set_overlay_visible(self, on: bool) -> None:
        if on != self._overlay_on:
            self._overlay_on = on
            self.update()

    # ------------------------------------------------------------------ geometry
    def _fit_zoom(self) -> float:
        if self._image is None:
            return 1.0
        w, h = self._image.width(), self._image.height()
        return max(MIN_ZOOM, min(self.width() / w, self.height() / h))

    def current_zoom(self) -> float:
        return self._fit_zoom() if self._fit else self._zoom

    def image_rect(self) -> QRectF:
        """Where the image is painted, in widget coordinates."""
        if self._image is None:
            return QRectF()
        z = self.current_zoom()
        w, h = self._image.width() * z, self._image.height() * z
        if self._fit:
            return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)
        return QRectF(self._offset.x(), self._offset.y(), w, h)

    def fit(self) -> None:
        self._fit = True
        self.update()
        self.zoom_changed.emit(self.current_zoom())

    def actual_size(self) -> None:
        self._zoom_to(1.0, QPointF(self.width() / 2, self.height() / 2))

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        if self._image is None:
            return
        self._zoom_to(self.current_zoom() * factor, anchor or QPointF(self.width() / 2, self.height() / 2))

    def _zoom_to(self, zoom: float, anchor: QPointF) -> None:
        if self._image is None:
            return
        zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        rect = self.image_rect()
        old = self.current_zoom()
        # keep the image point under the anchor where it is
        px = (anchor.x() - rect.x()) / old
        py = (anchor.y() - rect.y()) / old
        self._fit = False
        self._zoom = zoom
        self._offset = QPointF(anchor.x() - px * zoom, anchor.y() - py * zoom)
        self.update()
        self.zoom_changed.emit(zoom)

    # ------------------------------------------------------------------ events
    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt's name
        p = QPainter(self)
        p.fillRect(self.rect(), BACKGROUND)
        if self._image is None:
            if self._message:
                p.setPen(MESSAGE)
                p.drawText(
                    self.rect().adjusted(16, 16, -16, -16),
                    Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                    self._message,
                )
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.current_zoom() < 4)
        target = self.image_rect()
        p.drawPixmap(target, self._pixmap, QRectF(self._pixmap.rect()))
        if self.overlay_shown:
            p.setOpacity(0.65)
            p.drawPixmap(target, self._overlay_pixmap, QRectF(self._overlay_pixmap.rect()))

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(400, 400)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.15**steps, event.position())
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.fit() if not self._fit else self._zoom_to(1.0, event.position())

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.clicked.emit()
        self.setFocus()
        if event.button() == Qt.MouseButton.LeftButton and self._image is not None:
            self._drag_from = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag_from is None:
            return
        if self._fit:  # start panning from where the fitted image is
            self._zoom = self._fit_zoom()
            self._offset = self.image_rect().topLeft()
            self._fit = False
        delta = event.position() - self._drag_from
        self._drag_from = event.position()
        self._offset += delta
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._drag_from = None
        self.setCursor(Qt.CursorShape.OpenHandCursor)

    def focusInEvent(self, event) -> None:  # noqa: N802
        self.clicked.emit()
        super().focusInEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        key = event.key()
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_by(1.25)
        elif key == Qt.Key.Key_Minus:
            self.zoom_by(0.8)
        elif key == Qt.Key.Key_0:
            self.fit() if not self._fit else self.actual_size()
        else:
            super().keyPressEvent(event)
