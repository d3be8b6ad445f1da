"""An image panel that fits, zooms and pans, with an optional overlay (the pose map).

Fit is the default and survives resizing; the wheel (or +/-) zooms under the cursor, a drag
pans, double-click or 0 toggles fit and 100%. With no image it paints a message instead
(e.g. "Image missing: … re-import it"), so an empty panel always says why it is empty.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPixmap, QWheelEvent
from PySide6.QtWidgets import QFrame, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

MIN_ZOOM, MAX_ZOOM = 0.05, 32.0


class ImageView(QGraphicsView):
    clicked = Signal()
    zoom_changed = Signal(float)

    def __init__(
        self, parent: QWidget | None = None, *, name: str = "imageView", accessible: str = "Image"
    ) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setAccessibleName(accessible)
        self.setScene(QGraphicsScene(self))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform | QPainter.RenderHint.Antialiasing)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setBackgroundBrush(QColor("#1e1f22"))
        self.setMinimumSize(120, 120)
        self._pixmap_item = QGraphicsPixmapItem()
        self._pixmap_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._overlay_item = QGraphicsPixmapItem(self._pixmap_item)
        self._overlay_item.setOpacity(0.65)
        self._overlay_item.setVisible(False)
        self.scene().addItem(self._pixmap_item)
        self._image: QImage | None = None
        self._overlay: QImage | None = None
        self._overlay_on = False
        self._message = ""
        self._fit = True

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

    def set_image(self, image: QImage | None, message: str = "") -> None:
        """Show ``image`` (fit to the view), or ``message`` when there is none."""
        self._image = image if image is not None and not image.isNull() else None
        self._message = message
        if self._image is None:
            self._pixmap_item.setPixmap(QPixmap())
            self.scene().setSceneRect(QRectF())
        else:
            self._pixmap_item.setPixmap(QPixmap.fromImage(self._image))
            self.scene().setSceneRect(QRectF(self._image.rect()))
        self._place_overlay()
        self.setToolTip(message if self._image is None else "")
        self.fit()
        self.viewport().update()

    def set_overlay(self, overlay: QImage | None) -> None:
        self._overlay = overlay if overlay is not None and not overlay.isNull() else None
        self._place_overlay()

    def set_overlay_visible(self, on: bool) -> None:
        self._overlay_on = on
        self._place_overlay()

    def _place_overlay(self) -> None:
        if self._overlay is None or self._image is None:
            self._overlay_item.setVisible(False)
            return
        # The pose map may have another size than the image: scale it onto the image.
        scaled = self._overlay.scaled(
            self._image.size(),
            Qt.AspectRatioMode.IgnoreAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        self._overlay_item.setPixmap(QPixmap.fromImage(scaled))
        self._overlay_item.setVisible(self._overlay_on)

    # ------------------------------------------------------------------ zoom
    def current_zoom(self) -> float:
        return self.transform().m11()

    def fit(self) -> None:
        self._fit = True
        if self._image is not None:
            self.fitInView(self._pixmap_item, Qt.AspectRatioMode.KeepAspectRatio)
        else:
            self.resetTransform()
        self.zoom_changed.emit(self.current_zoom())

    def actual_size(self) -> None:
        self._fit = False
        self.resetTransform()
        self.zoom_changed.emit(1.0)

    def zoom_by(self, factor: float) -> None:
        if self._image is None:
            return
        z = self.current_zoom()
        factor = max(MIN_ZOOM / z, min(MAX_ZOOM / z, factor))
        self._fit = False
        self.scale(factor, factor)
        self.zoom_changed.emit(self.current_zoom())

    # ------------------------------------------------------------------ events
    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        if self._fit:
            self.fit()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.15**steps)
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.fit() if not self._fit else self.actual_size()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.clicked.emit()
        super().mousePressEvent(event)

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

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802
        if self._image is not None or not self._message:
            return
        painter.save()
        painter.resetTransform()
        painter.setPen(QColor("#c9ccd1"))
        area = self.viewport().rect().adjusted(16, 16, -16, -16)
        painter.drawText(area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._message)
        painter.restore()
