"""The append-only journal that makes one save cost the same at 10 or 10,000 tasks.

One line per committed transaction::

    <crc32 hex, 8 chars> <json payload>\\n
    payload = {"seq": 17, "ops": [["put", "annotations", 3, {...doc...}], ["del", "tasks", 9]]}

A line counts only when it ends with a newline and its checksum matches. A last line without
its newline is a save that was cut off by a crash before it returned: it is ignored (and
trimmed when the project is next opened for writing). A complete line that fails its checksum
is damage: reading stops there and says so.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fsutil import fsync_fd, storage_error, write_all


def encode_entry(seq: int, ops_json: list[str]) -> bytes:
    """One journal line from already-encoded ops (docs are encoded once, by the caller)."""
    payload = ('{"seq":' + str(seq) + ',"ops":[' + ",".join(ops_json) + "]}").encode("utf-8")
    return b"%08x " % zlib.crc32(payload) + payload + b"\n"


@dataclass
class JournalEntry:
    seq: int
    ops: list[list[Any]]


@dataclass
class JournalRead:
    """What reading one journal file found."""

    entries: list[JournalEntry] = field(default_factory=list)
    good_size: int = 0  # bytes up to the end of the last good line
    good_lines: int = 0  # good lines, including those skipped
    torn_tail: bool = False  # an unfinished last line (a save cut off by a crash)
    damaged_line: int | None = None  # 1-based line number where reading stopped
    damage: str = ""  # why that line was rejected
    lines_after_damage: int = 0  # complete lines after the damaged one (not applied)


_SEQ_PREFIX = re.compile(rb'\{"seq":(\d+),')


def _parse_line(line: bytes, skip_through: int = 0) -> JournalEntry | None:
    """Check one line; decode it unless its seq is <= ``skip_through`` (then return None)."""
    if len(line) < 10 or line[8:9] != b" ":
        raise ValueError("no checksum")
    try:
        crc = int(line[:8], 16)
    except ValueError:
        raise ValueError("no checksum") from None
    payload = line[9:]
    if zlib.crc32(payload) != crc:
        raise ValueError("checksum mismatch")
    # Entries the snapshot already holds are checked but not decoded: opening stays fast.
    head = _SEQ_PREFIX.match(payload)
    if head is not None and int(head.group(1)) <= skip_through:
        return None
    data = json.loads(payload)
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("seq"), int)
        or not isinstance(data.get("ops"), list)
    ):
        raise ValueError("not a journal entry")
    for op in data["ops"]:
        if not (isinstance(op, list) and len(op) >= 3 and op[0] in ("put", "del") and isinstance(op[2], int)):
            raise ValueError("malformed operation")
        if op[0] == "put" and (len(op) != 4 or not isinstance(op[3], dict)):
            raise ValueError("malformed operation")
    return JournalEntry(data["seq"], data["ops"])


def read_journal(path: Path, skip_through: int = 0) -> JournalRead:
    """Read every good entry of a journal file; a missing file reads as empty.

    Entries with seq <= ``skip_through`` are verified but left out of ``entries``.
    """
    out = JournalRead()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return out
    pos = 0
    lineno = 0
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        if nl < 0:  # unfinished last line: that save never returned
            out.torn_tail = True
            break
        lineno += 1
        line = raw[pos:nl]
        try:
            entry = _parse_line(line, skip_through)
            if entry is not None:
                out.entries.append(entry)
            out.good_lines += 1
        except (ValueError, UnicodeDecodeError) as exc:
            out.damaged_line = lineno
            out.damage = str(exc) if not isinstance(exc, json.JSONDecodeError) else "invalid JSON"
            out.lines_after_damage = raw.count(b"\n", nl + 1)
            break
        pos = nl + 1
        out.good_size = pos
    return out


class JournalWriter:
    """Appends entries durably; a failed append leaves the file exactly as it was."""

    def __init__(self, path: Path, good_size: int):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = good_size
        self.entries = 0
        self._dirty = False
        if os.fstat(self.fd).st_size != good_size:
            # trim an unfinished line left by a crash so the next entry starts on a clean line
            os.ftruncate(self.fd, good_size)
            fsync_fd(self.fd)

    def append(self, line: bytes, action: str) -> None:
        """Write one line and fsync it; raise StorageError (file unchanged) on any OS failure."""
        try:
            if self._dirty:  # an earlier failed append may have left bytes behind
                os.ftruncate(self.fd, self.size)
                self._dirty = False
            write_all(self.fd, line)
            fsync_fd(self.fd)
        except OSError as exc:
            self._dirty = True
            try:
                os.ftruncate(self.fd, self.size)
                self._dirty = False
            except OSError:
                pass  # retried before the next append
            raise storage_error(exc, action, self.path.parent) from exc
        self.size += len(line)
        self.entries += 1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
