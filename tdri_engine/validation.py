"""Checks of what people type and name, made before any model loads or any file is written,
and the one way user text is shown in a terminal or an HTML snippet.

Text (prompts, answers, project names) must be valid Unicode (no lone surrogates: that is how
Python carries bytes that were not UTF-8 in ``argv`` or in file names), within a length, and
free of control characters, which draw nothing but can move the cursor, clear the screen or
retitle a terminal. Tab, line feed and carriage return count as white space where text may
span lines. Format characters (category Cf: ZWJ, ZWNJ, bidi marks) are letters' helpers in
Arabic, Persian, Indic scripts and emoji sequences, so they are kept in stored text; the bidi
embedding, override and isolate controls are escaped when shown, since they reorder what a
reader sees around them (the "Trojan source" trick).

Names on the file system are limited in bytes, not characters: most file systems allow 255
bytes per name (eCryptfs 143), and a letter outside the BMP takes 4 bytes in UTF-8, so 64
letters can already be too long. :func:`fit_bytes` cuts on a character boundary.

:func:`check_output_path` keeps a command's ``--out`` away from the files a project owns:
inside a project folder only ``exports/`` may be written by hand-picked paths, so no command
writes ``project.json``, ``db.json``, the journal, ``images/`` or ``loras/`` except through the
store.
"""

from __future__ import annotations

import html
import os
import re
import unicodedata
from pathlib import Path

from .errors import BadInput

MAX_PROMPT_CHARS = 4000  # a CLIP text encoder reads 77 tokens; this bounds memory, not meaning
MAX_ANSWER_CHARS = 4000
MAX_NAME_CHARS = 200
NAME_MAX_BYTES = 255  # one file or folder name (ext4, APFS, NTFS in UTF-16 units, XFS, btrfs)
PATH_MAX_BYTES = 4096  # a whole path on Linux

_LINE_SPACE = "\t\n\r"
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_ESCAPED_TOO = frozenset("\u2028\u2029") | _BIDI_CONTROLS  # line/paragraph separators, bidi
_SURROGATE = re.compile("[\ud800-\udfff]")


def _code(ch: str) -> str:
    n = ord(ch)
    if 0xDC80 <= n <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape): show the byte
        return f"\\x{n - 0xDC00:02x}"
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}"


def _position(text: str, i: int) -> str:
    return f"{_code(text[i])} at character {i + 1}"


def check_text(
    value: object,
    what: str,
    *,
    max_chars: int,
    multiline: bool = False,
    what_to_do: str = "",
) -> str:
    """``value`` unchanged when it is usable text, else BadInput naming ``what`` and the fault.

    Refused: not a str; a lone surrogate (bytes that were not UTF-8); a control character
    (category Cc; tab, LF and CR are allowed when ``multiline``); more than ``max_chars``
    characters. Emptiness is the caller's to judge (an empty answer is a skip).
    """
    if not isinstance(value, str):
        raise BadInput(f"{what} must be text, not {type(value).__name__}.", what_to_do)
    m = _SURROGATE.search(value)
    if m:
        raise BadInput(
            f"{what} is not valid UTF-8 text ({_position(value, m.start())}).",
            what_to_do or "Type it again, or save the text as UTF-8.",
            kind="bad-text",
        )
    for i, ch in enumerate(value):
        if unicodedata.category(ch) == "Cc" and not (multiline and ch in _LINE_SPACE):
            raise BadInput(
                f"{what} contains a control character ({_position(value, i)}); control characters "
                "draw nothing and can take over a terminal.",
                what_to_do or "Remove it (it often comes from copying text out of a terminal) and try again.",
                kind="bad-text",
            )
    if len(value) > max_chars:
        raise BadInput(
            f"{what} is {len(value):,} characters long; the limit is {max_chars:,}.",
            what_to_do or "Shorten it.",
            kind="bad-text",
        )
    return value


def decode_utf8(data: bytes, what: str) -> str:
    """``data`` as text, or BadInput saying where it is not UTF-8 (a line read from stdin ...)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        raise BadInput(
            f"{what} is not valid UTF-8 text (byte 0x{bad} at byte {exc.start + 1}).",
            "Send UTF-8 text (set the terminal's or the file's encoding to UTF-8).",
            kind="bad-text",
        ) from None


def as_unicode(text: str) -> str:
    """``text`` with bytes that were not UTF-8 (lone surrogates, as the OS hands over such file
    names) replaced by U+FFFD: what a record may store and a PNG text chunk may hold."""
    return _SURROGATE.sub("\ufffd", text)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def fit_bytes(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 form has at most ``max_bytes`` bytes."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")  # "ignore" drops a cut, partial letter


def check_path(path: Path | str, what: str) -> Path:
    """``path`` as a Path when the OS can take it: no NUL, each name at most 255 bytes, the
    whole at most 4096. Bytes that are not UTF-8 are allowed (real file names can hold them)."""
    text = os.fspath(path)
    if "\x00" in text:
        raise BadInput(f"{what} contains a NUL character, which no file name can hold.", kind="bad-path")
    raw = os.fsencode(text)
    if len(raw) > PATH_MAX_BYTES:
        raise BadInput(
            f"{what} is {len(raw):,} bytes long; paths are limited to {PATH_MAX_BYTES:,} bytes.",
            "Choose a shorter path.",
            kind="bad-path",
        )
    for part in Path(text).parts:
        n = len(os.fsencode(part))
        if n > NAME_MAX_BYTES:
            raise BadInput(
                f"{what} has a name of {n} bytes ({terminal_safe(part[:24])}…); file systems "
                f"allow {NAME_MAX_BYTES} bytes per name (letters outside Latin take 2 to 4 bytes each).",
                "Choose a shorter name.",
                kind="bad-path",
            )
    return Path(text)


# ---------------------------------------------------------------------------- project files


def project_root_of(path: Path) -> Path | None:
    """The project folder ``path`` lies in (itself included): the nearest folder up the tree
    holding a ``project.json`` (or its backup). None when it is in no project."""
    for folder in (path, *path.parents):
        if (folder / "project.json").is_file() or (folder / "project.json.bak").is_file():
            return folder
    return None


def check_output_path(out: Path | str, what: str = "--out", *, also: tuple[Path, ...] = ()) -> Path:
    """Refuse an output path that would overwrite a project's own files; returns ``out``.

    ``out`` (symbolic links resolved) must not be a folder, and when it lies inside a project
    folder it must lie inside that project's ``exports/``: ``project.json``, ``db.json``, the
    journal, ``images/``, ``loras/`` and the lock belong to the store. ``also`` lists further
    paths the same command writes beside ``out`` (the JSONL export's image folder): each is
    held to the same rule.
    """
    out = check_path(out, what)
    for target in (out, *also):
        resolved = Path(os.path.abspath(target))
        try:
            resolved = resolved.resolve()
        except (OSError, RuntimeError):  # a symlink loop: the write would fail anyway
            pass
        if target == out and resolved.is_dir():
            raise BadInput(
                f"{what} {terminal_safe(str(out))} is a folder; it must name a file.",
                "Give a file name inside that folder.",
                kind="bad-path",
            )
        existing = next((p for p in resolved.parents if p.exists()), None)
        if existing is not None and not existing.is_dir():  # the write would fail after the work
            raise BadInput(
                f"{what} {terminal_safe(str(target))} lies under {terminal_safe(str(existing))}, "
                "which is a file, not a folder.",
                "Choose an output path in a folder.",
                kind="bad-path",
            )
        project = project_root_of(resolved.parent if not resolved.is_dir() else resolved)
        if project is None:
            continue
        exports = project / "exports"
        if resolved != exports and exports in resolved.parents:
            continue
        raise BadInput(
            f"{what} {terminal_safe(str(target))} is inside the project {terminal_safe(str(project))}, "
            "where only the project's own store may write (project.json, db.json, images/ ...).",
            f"Write exports to {terminal_safe(str(exports))}/ or to a folder outside the project. "
            "Nothing was written.",
            kind="protected-path",
        )
    return out


# ---------------------------------------------------------------------------- showing text


def terminal_safe(text: object) -> str:
    """``text`` with every control character, lone surrogate, line/paragraph separator and bidi
    control written as a visible escape (``\\x1b``, ``\\u202e``), so that printing it cannot
    move the cursor, clear the screen, start a new line or reorder the line. Letters of every
    script, emoji and their joiners pass unchanged."""
    s = str(text)
    out = []
    for ch in s:
        if ch in _ESCAPED_TOO or unicodedata.category(ch) in ("Cc", "Cs"):
            out.append(_code(ch))
        else:
            out.append(ch)
    return "".join(out)


def terminal_lines(text: object) -> str:
    """Like :func:`terminal_safe` for text made of several lines: line feeds are kept."""
    return "\n".join(terminal_safe(line) for line in str(text).split("\n"))


def html_text(text: object) -> str:
    """HTML-escaped ``text`` with control characters written as visible escapes: HTML forbids
    them (a parse error in every browser) and some renderers would act on them."""
    return html.escape(terminal_safe(text))
