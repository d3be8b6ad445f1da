"""PNG files with their provenance inside, and careful loading of images from outside.

Every image the project writes carries where it came from in PNG text chunks (``tdri:prompt``,
``tdri:seed``, ``tdri:round``, ``tdri:model``, ``tdri:adapter`` and the whole record as JSON in
``tdri:provenance``), so a file dragged out of the project still says how it was made.

PIL is imported inside the functions: ``import tdri_engine.store`` stays light for tools and
child processes that never touch pixels.
"""

from __future__ import annotations

import io
import json
import struct
import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import BadInput
from .fsutil import atomic_write, storage_error

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from ..records import ImageRecord

DEFAULT_MAX_PIXELS = 64_000_000

# record field -> the short PNG key other tools can read without parsing JSON
PNG_KEYS = {
    "prompt": "tdri:prompt",
    "seed": "tdri:seed",
    "round": "tdri:round",
    "model": "tdri:model",
    "adapter_version": "tdri:adapter",
}
PROVENANCE_KEY = "tdri:provenance"

# fields of an ImageRecord that describe how the image was made (file/size are the file's own)
PROVENANCE_FIELDS = (
    "id",
    "prompt",
    "negative_prompt",
    "seed",
    "round",
    "model",
    "adapter_version",
    "steps",
    "guidance",
    "origin",
    "source_path",
    "dialogue_id",
    "parent_id",
    "name",
    "created",
)

_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
}


def provenance_of(record: ImageRecord) -> dict[str, Any]:
    """The provenance dict written into an image's PNG chunks and into exports."""
    return {name: getattr(record, name) for name in PROVENANCE_FIELDS}


def _is_local_path(value: str) -> bool:
    """An absolute or home-relative path on any system ("/home/a/x", "~/x", "C:\\Users\\a\\x")."""
    return (
        value.startswith(("/", "~", "\\\\"))
        or (len(value) > 2 and value[0].isalpha() and value[1] == ":" and value[2] in "\\/")
        or "\\" in value
    )


def shareable_provenance(provenance: dict[str, Any]) -> dict[str, Any]:
    """Provenance fit to travel inside a PNG: paths of this machine cut to their last name.

    The model is recorded by name (a Hugging Face id, or a folder's name), and an imported
    image's ``source_path`` by its file name. Why: an absolute path carries the user's home
    folder, and with it their account name, into every image they share. The project's own
    records keep the full source path.
    """
    out = dict(provenance)
    for field in ("model", "source_path"):
        value = out.get(field)
        if isinstance(value, str) and _is_local_path(value):
            out[field] = value.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return out


def save_png(path: Path, image: PILImage.Image, provenance: dict[str, Any]) -> None:
    """Write ``image`` as PNG with ``provenance`` in text chunks, atomically.

    Paths in it are cut to names first (:func:`shareable_provenance`).
    Raises StorageError (disk full, read-only) with the old file, if any, untouched.
    """
    from PIL import PngImagePlugin

    provenance = shareable_provenance(provenance)
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", f"TDRI Studio {__version__}")
    for field, key in PNG_KEYS.items():
        value = provenance.get(field, provenance.get("adapter") if field == "adapter_version" else None)
        if value is not None and value != "":
            info.add_text(key, str(value))  # PIL picks iTXt (UTF-8) when latin-1 will not do
    info.add_text(PROVENANCE_KEY, json.dumps(provenance, ensure_ascii=False, default=str))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    try:
        atomic_write(Path(path), buf.getvalue())
    except OSError as exc:
        raise storage_error(exc, "save the image", path) from exc


def read_provenance(path: Path) -> dict[str, Any]:
    """Provenance written by :func:`save_png` (empty dict for images without any).

    Prefers the full JSON; falls back to the short keys (seed and round as numbers).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            text = dict(getattr(im, "text", {}) or {})
    except FileNotFoundError:
        raise BadInput(f"The image file is missing: {path}", kind="image-missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise BadInput(f"{path.name} is not a readable image ({exc}).") from exc
    if PROVENANCE_KEY in text:
        try:
            data = json.loads(text[PROVENANCE_KEY])
            if isinstance(data, dict):
                return data
        except json.JSONDecodeError:
            pass  # damaged JSON chunk: the short keys may still be fine
    out: dict[str, Any] = {}
    for field, key in PNG_KEYS.items():
        if key in text:
            value: Any = text[key]
            if field in ("seed", "round"):
                try:
                    value = int(value)
                except ValueError:
                    pass
            out[field] = value
    return out


def _missing(path: Path) -> BadInput:
    return BadInput(
        f"The image file is missing: {path}",
        "Put the file back (from a backup or the original folder), or remove the item that uses it.",
        kind="image-missing",
    )


def _too_large(path: Path, size: tuple[int, int] | None, pixels: int | None, max_pixels: int) -> BadInput:
    if size:
        w, h = size
        what = f"{w}×{h} pixels ({w * h / 1e6:.1f} megapixels)"
    else:
        what = f"{pixels / 1e6:.1f} megapixels" if pixels else "too many pixels"
    return BadInput(
        f"{path.name} is too large: {what}; the limit is {max_pixels / 1e6:.1f} megapixels.",
        "Scale the image down (for example to 2048 pixels on the long side) and import it again.",
        kind="image-too-large",
    )


def _header_size(path: Path) -> tuple[int, int] | None:
    """Read just the header to learn an image's size, without PIL's decompression-bomb check.

    Used only to word the "too large" message after PIL refused the file.
    """
    from PIL import Image

    Image.init()
    with open(path, "rb") as fp:
        prefix = fp.read(16)
        for fmt in Image.ID:
            factory, accept = Image.OPEN[fmt]
            if accept is not None and not accept(prefix):
                continue
            fp.seek(0)
            try:
                return factory(fp, str(path)).size
            except (SyntaxError, IndexError, TypeError, ValueError, OSError, struct.error):
                continue
    return None


def _to_rgb(im: PILImage.Image, notes: list[str]) -> PILImage.Image:
    from PIL import Image

    mode = im.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] < 255:
            notes.append("it had transparent areas; they were placed on a white background")
        else:
            notes.append("its alpha channel was fully opaque and was dropped")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        import numpy as np

        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode != "F" else max(float(arr.max()), 1e-12)
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        notes.append(f"it was a high bit-depth grayscale image ({mode}); converted to 8-bit RGB")
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "CMYK":
        notes.append("it was a CMYK image; converted to RGB (print colours may look slightly different)")
    elif mode in ("L", "1"):
        notes.append("it was a grayscale image; converted to RGB")
    else:
        notes.append(f"it was a {mode} image; converted to RGB")
    return im.convert("RGB")


def load_image_checked(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[PILImage.Image, list[str]]:
    """Load an image from outside the project as RGB, or raise BadInput saying what is wrong.

    Refuses: a missing file (kind ``image-missing``), an empty file, a file that is not an
    image, a truncated or damaged one, and one with more than ``max_pixels`` pixels (the size
    is checked from the header, before decoding). Returns the image and notes for the user
    about what was changed (transparency on white, CMYK or other modes to RGB, EXIF rotation,
    extra frames).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise _missing(path)
    if path.is_dir():
        raise BadInput(f"{path} is a folder, not an image file.", "Pick an image file (PNG, JPEG, WebP).")
    if path.stat().st_size == 0:
        raise BadInput(
            f"{path.name} is empty (0 bytes), so it is not an image.",
            "The file was probably not copied completely; copy it again from the original.",
        )
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise _too_large(path, _header_size(path), None, max_pixels) from exc
        except UnidentifiedImageError:
            with open(path, "rb") as fp:
                head = fp.read(8)
            fmt = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)
            if fmt:
                raise BadInput(
                    f"{path.name} starts like a {fmt} file but is damaged or truncated.",
                    "Copy the file again from the original, or re-export it from the program that made it.",
                ) from None
            raise BadInput(
                f"{path.name} is not an image (or not in a format this app reads).",
                "Use PNG, JPEG, WebP, TIFF or BMP files.",
            ) from None
        except OSError as exc:
            raise BadInput(f"{path.name} could not be read: {exc}.", "Check the file and try again.") from exc
        except ValueError as exc:  # e.g. a text chunk that inflates past PIL's limit (a zip bomb)
            raise BadInput(
                f"{path.name} could not be read safely: {exc}.",
                "Re-export the image without its metadata, then import it again.",
            ) from exc
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise _too_large(path, (w, h), None, max_pixels)
            if w == 0 or h == 0:
                raise BadInput(f"{path.name} has no pixels ({w}×{h}).", "Use another image.")
            try:
                im.load()
            except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as exc:
                raise BadInput(
                    f"{path.name} is truncated or damaged and cannot be decoded ({exc}).",
                    "Copy the file again from the original, or re-export it from the program that made it.",
                ) from exc
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                notes.append(f"it has {frames} frames; the first one was used")
            src = im
            if im.getexif().get(0x0112, 1) not in (1, None):  # EXIF orientation tag
                src = ImageOps.exif_transpose(im)
                notes.append("it was rotated or flipped as its EXIF orientation says")
            out = _to_rgb(src, notes)
            if out is im:
                out = im.copy()  # detach from the file before it closes
    return out, notes
