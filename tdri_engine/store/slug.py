"""Project folder names: :func:`slugify` turns a project's name into its folder's name."""

from __future__ import annotations

import unicodedata

from ..errors import ProjectError
from ..validation import fit_bytes

SLUG_MAX_BYTES = 100
_WINDOWS_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(1, 10)),
    *(f"lpt{i}" for i in range(1, 10)),
}


def slugify(name: str) -> str:
    """Folder name for a project: lower-case letters and digits (any script) joined by dashes.

    ``"Summer Dresses 2025"`` -> ``"summer-dresses-2025"``, ``"../../etc"`` -> ``"etc"``,
    ``"Été à Paris"`` -> ``"été-à-paris"``. Raises ProjectError when nothing is left.

    At most 64 characters and :data:`SLUG_MAX_BYTES` bytes of UTF-8: file systems count a
    name's bytes (255 on most), a letter outside the BMP takes 4, and the staging folder
    ``.creating-<slug>-<8 hex>`` and exports named after the slug add their own.
    """
    text = unicodedata.normalize("NFKC", str(name)).casefold()
    out: list[str] = []
    for ch in text:
        # letters, digits and the combining marks some scripts need (e.g. Devanagari vowels)
        if ch.isalnum() or (out and out[-1] != "-" and unicodedata.category(ch).startswith("M")):
            out.append(ch)
        elif out and out[-1] != "-":
            out.append("-")
    slug = fit_bytes("".join(out)[:64], SLUG_MAX_BYTES).strip("-")
    if not slug:
        raise ProjectError(
            f"The project name {name!r} has no letters or digits to make a folder name from.",
            "Use a name with at least one letter or digit.",
            kind="bad-name",
        )
    if slug in _WINDOWS_RESERVED:
        slug += "-project"
    return slug
