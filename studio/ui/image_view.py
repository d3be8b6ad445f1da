"""An image panel that fits, zooms and pans, with an optional overlay (the pose map).

Fit is the default and survives resizing; the wheel (or +/-) zooms under the cursor, a drag
(or the arrow keys) pans, double-click or 0 toggles fit and 100%. L shows a loupe: a square
that magnifies three times the part of the image under it, moved by the arrow keys. With no
image it paints a message instead (e.g. "Image missing: … re-import it"), so an empty panel
always says why it is empty.

Two panels stay in step through :meth:`viewport` / :meth:`set_viewport`: the state is given
relative to each image (zoom as a multiple of the fit zoom, the centre and the loupe as
fractions of the image), so two images of different sizes show the same part at the same
relative scale. ``viewport_changed`` fires only on the user's own zoom, pan or loupe move.

A plain widget that paints one pixmap, rather than a QGraphicsView: a new image (a live
preview several times a second) then costs one small repaint, not a scene update.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPixmap, QWheelEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from studio.ui.plain_label import plain_tooltip

MIN_ZOOM, MAX_ZOOM = 0.05, 32.0
LOUPE_SIZE = 220  # pixels on screen
LOUPE_FACTOR = 3.0  # times the current zoom
PAN_STEP = 0.1  # of the view per arrow key when zoomed in
LOUPE_STEP = 0.03  # of the image per arrow key when the loupe is shown
BACKGROUND = QColor("#1e1f22")
ARROWS: dict[int, tuple[int, int]] = {
    Qt.Key.Key_Left: (-1, 0),
    Qt.Key.Key_Right: (1, 0),
    Qt.Key.Key_Up: (0, -1),
    Qt.Key.Key_Down: (0, 1),
}
MESSAGE = QColor("#c9ccd1")


@dataclass(frozen=True)
class Viewport:
    """A panel's view relative to its image: fit, or a zoom (times the fit zoom) and the image
    point at the panel's centre (fractions); the loupe's point (fractions) when shown."""

    fit: bool = True
    zoom: float = 1.0
    centre: tuple[float, float] = (0.5, 0.5)
    loupe: tuple[float, float] | None = None


class ImageView(QWidget):
    clicked = Signal()
    zoom_changed = Signal(float)
    viewport_changed = Signal()  # the user zoomed, panned, fitted or moved the loupe

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
        self._loupe: QPointF | None = None  # image fractions, when the loupe is shown

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
        self.viewport_changed.emit()

    # ------------------------------------------------------------------ in step with another
    def viewport(self) -> Viewport:
        """What this panel shows, relative to its image (see the module's docstring)."""
        loupe = (self._loupe.x(), self._loupe.y()) if self._loupe is not None else None
        if self._image is None or self._fit:
            return Viewport(fit=True, loupe=loupe)
        rect = self.image_rect()
        z = self.current_zoom()
        centre = (
            (self.width() / 2 - rect.x()) / (self._image.width() * z),
            (self.height() / 2 - rect.y()) / (self._image.height() * z),
        )
        return Viewport(fit=False, zoom=z / self._fit_zoom(), centre=centre, loupe=loupe)

    def set_viewport(self, state: Viewport) -> None:
        """Show what another panel's :meth:`viewport` says (no ``viewport_changed``)."""
        self._loupe = QPointF(*state.loupe) if state.loupe is not None else None
        if self._image is None or state.fit:
            self._fit = True
        else:
            cx, cy = state.centre
            zoom = max(MIN_ZOOM, min(MAX_ZOOM, state.zoom * self._fit_zoom()))
            self._fit = False
            self._zoom = zoom
            self._offset = QPointF(
                self.width() / 2 - cx * self._image.width() * zoom,
                self.height() / 2 - cy * self._image.height() * zoom,
            )
        self.update()

    @property
    def loupe_shown(self) -> bool:
        return self._loupe is not None and self._image is not None

    def toggle_loupe(self) -> None:
        """Show the loupe at the image's centre, or hide it."""
        self._loupe = None if self._loupe is not None else QPointF(0.5, 0.5)
        self.update()
        self.viewport_changed.emit()

    def pan_by(self, dx: float, dy: float) -> None:
        """Arrow keys: move the loupe when shown, else pan by a share of the view when zoomed."""
        if self._image is None:
            return
        if self._loupe is not None:
            self._loupe = QPointF(
                min(1.0, max(0.0, self._loupe.x() + dx * LOUPE_STEP / PAN_STEP)),
                min(1.0, max(0.0, self._loupe.y() + dy * LOUPE_STEP / PAN_STEP)),
            )
        elif not self._fit:
            self._offset -= QPointF(dx * self.width(), dy * self.height())
        else:
            return
        self.update()
        self.viewport_changed.emit()

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
        self.viewport_changed.emit()

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
            p.setOpacity(1.0)
        if self._loupe is not None:
            self._paint_loupe(p, target)

    def _paint_loupe(self, p: QPainter, target: QRectF) -> None:
        """A square of LOUPE_SIZE pixels at the loupe's point, the image under it magnified."""
        assert self._image is not None
        centre = QPointF(
            target.x() + self._loupe.x() * target.width(),  # type: ignore[union-attr]
            target.y() + self._loupe.y() * target.height(),  # type: ignore[union-attr]
        )
        size = float(LOUPE_SIZE)
        box = QRectF(centre.x() - size / 2, centre.y() - size / 2, size, size)
        scale = self.current_zoom() * LOUPE_FACTOR  # screen pixels per image pixel
        src_side = size / scale
        src = QRectF(
            self._loupe.x() * self._image.width() - src_side / 2,  # type: ignore[union-attr]
            self._loupe.y() * self._image.height() - src_side / 2,  # type: ignore[union-attr]
            src_side,
            src_side,
        )
        p.fillRect(box, BACKGROUND)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scale < 4)
        p.drawPixmap(box, self._pixmap, src)
        p.setPen(QColor("#f2f2f2"))
        p.drawRect(box)

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
        self.viewport_changed.emit()

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
        elif key == Qt.Key.Key_L and not event.modifiers():
            self.toggle_loupe()
        elif int(key) in ARROWS and (self._loupe is not None or not self._fit):
            dx, dy = ARROWS[int(key)]
            self.pan_by(dx * PAN_STEP, dy * PAN_STEP)
        else:
            super().keyPressEvent(event)
