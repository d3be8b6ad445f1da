"""Image decoding for display, off the GUI thread: the studio's one way to read an image file.

Qt's own reader (no PIL round trip): EXIF orientation applied, and files larger than the
panel can show decoded scaled down, so a 12000-pixel photo costs what a 4096-pixel one does.
Safe in any thread (QImage, not QPixmap).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QImageReader

DISPLAY_SIDE = 4096  # the largest side decoded for a panel; beyond it, decoded scaled down
THUMB_SIDE = 112  # the rounds strip's thumbnails


def read_image(path: str | Path | None, max_side: int = DISPLAY_SIDE) -> tuple[QImage | None, str]:
    """Decode ``path`` for display: (image, "") or (None, what went wrong and what to do)."""
    if not path:
        return None, "No image file."
    p = Path(path)
    if not p.is_file():
        return None, f"Image missing: {p}\nRestore the file, or import the image again."
    reader = QImageReader(str(p))
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and max(size.width(), size.height()) > max_side:
        reader.setScaledSize(size.scaled(max_side, max_side, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    if image.isNull():
        return None, f"Cannot show {p.name}: {reader.errorString()}"
    return image, ""


def read_qimage(path: str | Path | None, max_side: int = DISPLAY_SIDE) -> QImage | None:
    """:func:`read_image` for callers that show nothing when a file cannot be read."""
    return read_image(path, max_side)[0]


def thumbnail(image: QImage | None) -> QImage | None:
    """A smooth THUMB_SIDE-pixel version of ``image`` (aspect kept)."""
    if image is None:
        return None
    return image.scaled(
        THUMB_SIDE, THUMB_SIDE, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )
