"""Durable tables: in-memory documents, an append-only journal, and periodic snapshots.

Files in a project folder::

    db.json           snapshot in TinyDB's JSON layout {table: {doc_id: doc}}; plain
                      ``tinydb.TinyDB(path)`` reads it. Table ``_tdri`` holds {"seq", "schema_version"}.
    db.json.bak       the snapshot before the current one
    db.journal        entries committed since db.json was written (see journal.py)
    db.journal.prev   entries committed between db.json.bak and db.json
    db.journal.compacting  while a background compaction runs: the entries it is folding in

Why not TinyDB's own JSONStorage: it rewrites the whole file in place on every write (a crash
mid-write destroys the project, and a save costs O(project size)). Here a save is one fsynced
journal line; compaction rewrites the snapshot atomically (tmp + fsync + replace) now and then.

Invariant: ``db.json.bak`` + ``db.journal.prev`` (+ ``db.journal.compacting``) + ``db.journal``
rebuild everything, so a damaged ``db.json`` costs nothing. Replay applies entries in seq order,
skipping those the snapshot already holds.

Automatic compaction runs in a background thread so that no save pays for it: under the lock
the journal is rotated to ``db.journal.compacting`` exactly at the snapshot's seq and the rows
are copied (a shallow copy; stored documents are never mutated); the thread then writes the
snapshot and finally renames ``compacting`` to ``prev``. A crash at any point leaves a chain
that replays to the full state.
"""

from __future__ import annotations

import gc
import json
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import BadInput, ProjectError
from .fsutil import (
    fsync_dir,
    link_or_copy,
    read_or_why,
    storage_error,
    timestamp,
    unique_path,
    write_file_synced,
)
from .journal import JournalRead, JournalWriter, encode_entry, read_journal

SNAPSHOT = "db.json"
BACKUP = "db.json.bak"
JOURNAL = "db.journal"
PREV_JOURNAL = "db.journal.prev"
MID_JOURNAL = "db.journal.compacting"
JOURNALS = (PREV_JOURNAL, MID_JOURNAL, JOURNAL)  # replay order
META_TABLE = "_tdri"  # our bookkeeping table inside db.json; TinyDB sees it as one more table

# Default compaction policy: when the journal is bigger than the snapshot (and at least this
# big) rewriting the snapshot pays for itself; a save stays O(1) amortised.
MIN_COMPACT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class RecoveryReport:
    """What the store had to repair when the project was opened; the studio shows ``summary()``.

    ``source`` is the file the state was rebuilt from, ``good_copy_time`` when that copy was
    written (ISO, local time), ``journal_entries_replayed`` how many saves were re-applied on
    top of it, ``corrupt_file_kept`` where the first damaged file now lives (all of them in
    ``kept_files``; nothing is ever overwritten), ``possibly_lost`` how many journal entries
    after a damaged spot could not be applied. ``repaired`` is False when the project was
    opened read-only: then the files were left exactly as found.
    """

    what: str
    source: str | None = None
    good_copy_time: str | None = None
    journal_entries_replayed: int = 0
    corrupt_file_kept: str | None = None
    kept_files: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    possibly_lost: int = 0
    repaired: bool = True

    def summary(self) -> str:
        lines = [self.what]
        lines += [f"- {p}" for p in self.problems]
        if self.source:
            when = f" (written {self.good_copy_time})" if self.good_copy_time else ""
            lines.append(
                f"Rebuilt from {self.source}{when}, then re-applied {self.journal_entries_replayed} saves."
            )
        if self.possibly_lost:
            lines.append(
                f"{self.possibly_lost} later journal entries could not be read and are not in the project."
            )
        for kept in self.kept_files:
            lines.append(f"The damaged file was kept as {kept}.")
        if not self.repaired:
            lines.append("Opened read-only: nothing on disk was changed; open it normally to repair it.")
        return "\n".join(lines)


def _mtime_iso(path: Path) -> str | None:
    try:
        ts = path.stat().st_mtime
    except OSError:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).astimezone().isoformat(timespec="seconds")


def encode_doc(doc: dict[str, Any], what: str = "record") -> str:
    """JSON text of one document; NaN/inf and non-JSON values are refused up front."""
    try:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadInput(
            f"The {what} cannot be saved: {exc}.",
            "Records may hold only text, numbers (not NaN or infinity), true/false, lists and dicts.",
        ) from exc


class Table:
    """Documents of one table in insertion order, each kept as its JSON text, indexed by key.

    Text, not dicts: a 10,000-task project is a few hundred thousand objects as dicts, which
    the garbage collector scans in pauses of a few hundred milliseconds and which take ten
    times the memory; strings are one object each and the GC ignores them. A snapshot is
    then just the texts joined. Readers decode what they return (a fresh, private copy).
    """

    def __init__(self, name: str, key_field: str = "id"):
        self.name = name
        self.key_field = key_field
        self.rows: dict[int, str] = {}  # doc_id -> JSON text
        self.keys: dict[int, Any] = {}  # doc_id -> record key (to unindex on delete)
        self.index: dict[Any, int] = {}  # record key -> doc_id
        self.next_id = 1

    def set_key_field(self, key_field: str) -> None:
        if key_field != self.key_field:  # only for tables no record class was known for
            self.key_field = key_field
            self.keys, self.index = {}, {}
            for doc_id, text in self.rows.items():
                key = json.loads(text).get(key_field)
                if key is not None:
                    self.keys[doc_id] = key
                    self.index[key] = doc_id

    def load_bulk(self, docs: list[tuple[int, str, dict[str, Any]]]) -> None:
        """Fill an empty table from a snapshot: (doc_id, text, decoded doc) triples."""
        key_field = self.key_field
        self.rows = {doc_id: text for doc_id, text, _ in docs}
        self.keys = {doc_id: doc[key_field] for doc_id, _, doc in docs if key_field in doc}
        self.index = {key: doc_id for doc_id, key in self.keys.items()}
        self.next_id = max(self.rows, default=0) + 1

    def apply_put(self, doc_id: int, key: Any, text: str) -> None:
        old_key = self.keys.get(doc_id)
        if old_key is not None and old_key != key and self.index.get(old_key) == doc_id:
            del self.index[old_key]
        self.rows[doc_id] = text
        if key is not None:
            self.keys[doc_id] = key
            self.index[key] = doc_id
        if doc_id >= self.next_id:
            self.next_id = doc_id + 1

    def apply_del(self, doc_id: int) -> None:
        self.rows.pop(doc_id, None)
        key = self.keys.pop(doc_id, None)
        if key is not None and self.index.get(key) == doc_id:
            del self.index[key]


SnapshotTables = dict[str, list[tuple[int, str, dict[str, Any]]]]

_WS = re.compile(r"[ \t\n\r]*")
_WS_CHARS = frozenset(" \t\n\r")
_DOC_KEY = re.compile(r'[ \t\n\r]*"(\d+)"[ \t\n\r]*:[ \t\n\r]*')
_DECODER = json.JSONDecoder()


def _split_snapshot(text: str) -> SnapshotTables:
    """Parse ``{table: {doc_id: doc}}`` keeping each document's own JSON text.

    The JSON scanner returns where each document ends, so its text is a slice: no document
    is encoded again. Raises ValueError on anything that is not that shape. (Whitespace is
    allowed anywhere, as in files TinyDB or a person wrote.)
    """
    scan = _DECODER.scan_once  # type: ignore[attr-defined]  # the C scanner: (value, end) or StopIteration
    ws = _WS.match

    def value(pos: int) -> tuple[Any, int]:
        try:
            return scan(text, pos)
        except StopIteration:
            raise ValueError(f"no JSON value at {pos}") from None

    def skip(pos: int) -> int:
        return ws(text, pos).end() if text[pos : pos + 1] in _WS_CHARS else pos  # type: ignore[union-attr]  # '*' always matches

    def expect(pos: int, char: str) -> int:
        pos = skip(pos)
        if text[pos : pos + 1] != char:
            raise ValueError(f"expected {char!r} at {pos}")
        return pos + 1

    def next_member(pos: int) -> tuple[bool, int]:
        """After an object's member: (True, past the ',') when another follows, else (False,
        past the closing '}')."""
        pos = skip(pos)
        if text[pos : pos + 1] == ",":
            return True, pos + 1
        return False, expect(pos, "}")

    tables: SnapshotTables = {}
    pos = skip(expect(0, "{"))
    if text[pos : pos + 1] == "}":
        pos += 1
    else:
        while True:
            name, pos = value(skip(pos))
            if not isinstance(name, str) or name in tables:
                raise ValueError(f"bad or repeated table name {name!r}")
            pos = skip(expect(expect(pos, ":"), "{"))
            docs: list[tuple[int, str, dict[str, Any]]] = []
            if text[pos : pos + 1] == "}":
                pos += 1
            else:
                while True:
                    m = _DOC_KEY.match(text, pos)
                    if m is None:
                        raise ValueError(f"malformed document id in table {name!r} at {pos}")
                    start = m.end()
                    doc, pos = value(start)
                    if not isinstance(doc, dict):
                        raise ValueError(f"document {m.group(1)} in table {name!r} is not an object")
                    docs.append((int(m.group(1)), text[start:pos], doc))
                    more, pos = next_member(pos)
                    if not more:
                        break
            tables[name] = docs
            more, pos = next_member(pos)
            if not more:
                break
    if skip(pos) != len(text):
        raise ValueError("data after the end")
    return tables


def _diagnose(raw: bytes) -> str:
    """Say in plain words why a snapshot cannot be read."""
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        return "is not text (binary garbage)"
    except json.JSONDecodeError as exc:
        body = raw.rstrip()
        cut_short = (
            body.startswith(b"{")
            and not body.endswith(b"}")
            and exc.msg != "Extra data"
            and (exc.msg.startswith("Unterminated string") or exc.pos >= len(body) - 6)  # in a literal
        )
        if cut_short:
            return f"is truncated: it ends after {len(raw)} bytes, in the middle of the data"
        return f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    if not isinstance(data, dict):
        return "does not hold a table of tables"
    for name, table in data.items():
        if not isinstance(table, dict):
            return f"has a table '{name}' that is not a JSON object"
        for doc_id, doc in table.items():
            if not doc_id.isdigit() or not isinstance(doc, dict):
                return f"has a malformed document '{doc_id}' in table '{name}'"
    return "has an unexpected layout"


def _read_snapshot(path: Path) -> tuple[SnapshotTables | None, str]:
    """Parse a snapshot; return (tables, "") or (None, what is wrong with it)."""
    raw, why = read_or_why(path)
    if raw is None:
        return None, why
    if not raw.strip():
        return None, "is empty (0 bytes of data)" if not raw else "is empty"
    try:
        tables = _split_snapshot(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, _diagnose(raw)
    meta = _snapshot_meta(tables)
    if not isinstance(meta.get("seq", 0), int) or not isinstance(meta.get("schema_version", 0), int):
        return None, "has a malformed bookkeeping table"
    return tables, ""


def _snapshot_meta(tables: SnapshotTables) -> dict[str, Any]:
    for doc_id, _, doc in tables.get(META_TABLE, []):
        if doc_id == 1:
            return doc
    return {}


def _snapshot_payload(rows: list[tuple[str, list[tuple[int, str]]]], seq: int, version: int) -> bytes:
    """db.json bytes: the bookkeeping table, then every table's documents as stored."""
    meta = json.dumps({"seq": seq, "schema_version": version}, separators=(",", ":"))
    parts = ['{"' + META_TABLE + '":{"1":' + meta + "}"]
    for name, items in rows:
        body = ",".join(f'"{doc_id}":{text}' for doc_id, text in items)
        parts.append("," + json.dumps(name, ensure_ascii=False) + ":{" + body + "}")
    parts.append("}")
    return "".join(parts).encode("utf-8")


class Database:
    """The tables of one project. Thread-safe: the studio saves from the GUI and the worker."""

    def __init__(
        self,
        folder: Path,
        *,
        read_only: bool = False,
        compact_every: int | None = None,
        schema_version: int,
        on_compacted: Any = None,
        key_fields: dict[str, str] | None = None,
    ):
        self.folder = folder
        self.read_only = read_only
        self.compact_every = compact_every
        self.schema_version = schema_version  # stamped into every snapshot we write
        self.loaded_schema_version: int | None = None  # stamp found on disk (None: plain TinyDB file)
        self.on_compacted = on_compacted
        self.key_fields = dict(key_fields or {})  # table -> field holding the record id
        self.tables: dict[str, Table] = {}
        self.seq = 0
        self.snapshot_size = 0
        self.recovery: RecoveryReport | None = None
        self.compaction_error: Exception | None = None
        self.journal: JournalWriter | None = None
        self.lock = threading.RLock()
        self._bg: threading.Thread | None = None  # the background compaction, if one runs
        self.closed = False  # set by close(): every later write is refused

    # ---- paths
    def _p(self, name: str) -> Path:
        return self.folder / name

    # ---- loading
    def load(self, *, max_schema_version: int | None = None, too_new: Any = None) -> None:
        """Read snapshot + journals, repairing (or, read-only, just reporting) any damage.

        A snapshot stamped with a schema newer than ``max_schema_version`` raises
        ``too_new(version)`` before anything is written.
        """
        # Decoding a big snapshot makes millions of objects that all live on: the cyclic
        # garbage collector would scan them again and again (it doubled the open time).
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._load(max_schema_version, too_new)
        finally:
            if enabled:
                gc.enable()

    def _load(self, max_schema_version: int | None, too_new: Any) -> None:
        if self.read_only:
            # A writer may compact while we read: retry until the files stay put.
            for _ in range(5):
                before = self._signature()
                state = self._read_state()
                if self._signature() == before:
                    break
        else:
            # leftovers of a compaction cut off by a crash (the real files are intact)
            for leftover in [
                SNAPSHOT + ".tmp",
                BACKUP + ".tmp",
                *(p.name for p in self.folder.glob(".db.json*.tmp")),
            ]:
                try:
                    os.unlink(self._p(leftover))
                except FileNotFoundError:
                    pass
            state = self._read_state()
        stamp = _snapshot_meta(state.data).get("schema_version")
        if isinstance(stamp, int) and max_schema_version is not None and stamp > max_schema_version:
            raise too_new(stamp) if too_new else ProjectError(f"Database schema {stamp} is too new.")
        self._install(state)
        if self.read_only:
            return
        if state.damaged:
            self._repair(state)
        else:
            cur = state.journal_read
            if self._p(JOURNAL).exists():  # else created by the first save
                self.journal = JournalWriter(self._p(JOURNAL), cur.good_size)
                self.journal.entries = cur.good_lines
            if self.snapshot_size == 0 and not self._p(SNAPSHOT).exists():
                self.compact(fresh=True)  # a brand-new database: write db.json and its backup
            elif self._p(MID_JOURNAL).exists():
                self.compact(fresh=True)  # a background compaction was cut off: start clean
            elif self._should_compact():
                self.compact()  # a long journal: fold it in now rather than replay it next time

    def _signature(self) -> tuple[Any, ...]:
        sig: list[tuple[int, int] | None] = []
        for name in (SNAPSHOT, *JOURNALS):
            try:
                st = self._p(name).stat()
                sig.append((st.st_ino, st.st_mtime_ns if name == SNAPSHOT else 0))
            except OSError:
                sig.append(None)
        return tuple(sig)

    @dataclass
    class _State:
        data: SnapshotTables
        seq: int
        snapshot_size: int
        source: str
        replayed: int = 0
        problems: list[str] = field(default_factory=list)
        bad_files: list[str] = field(default_factory=list)  # names to move aside on repair
        possibly_lost: int = 0
        entries: list[Any] = field(default_factory=list)
        journal_read: JournalRead = field(default_factory=JournalRead)

        @property
        def damaged(self) -> bool:
            return bool(self.problems)

    def _read_state(self) -> Database._State:
        data, why = _read_snapshot(self._p(SNAPSHOT))
        source = SNAPSHOT
        problems: list[str] = []
        bad: list[str] = []
        if data is None:
            if why == "is missing" and not any(self._p(f).exists() for f in (BACKUP, *JOURNALS)):
                # a project whose database was never written (or a plain new folder): empty
                return Database._State({}, 0, 0, SNAPSHOT)
            problems.append(f"{SNAPSHOT} {why}.")
            if why != "is missing":
                bad.append(SNAPSHOT)
            data, why_bak = _read_snapshot(self._p(BACKUP))
            source = BACKUP
            if data is None:
                problems.append(f"{BACKUP} {why_bak}.")
                if why_bak != "is missing":
                    bad.append(BACKUP)
                data, source = {}, "the journal alone"
        seq = _snapshot_meta(data).get("seq", 0)
        size = self._p(source).stat().st_size if source in (SNAPSHOT, BACKUP) else 0
        state = Database._State(data, seq, size, source, problems=problems, bad_files=bad)

        # replay: entries after the snapshot, in seq order, without gaps
        reads = [(name, read_journal(self._p(name), skip_through=seq)) for name in JOURNALS]
        state.journal_read = reads[-1][1]
        applied = seq
        stopped = False
        for name, jr in reads:
            for entry in jr.entries:
                if entry.seq <= applied:
                    continue
                if entry.seq != applied + 1:
                    stopped = True
                    missing = (
                        f"{applied + 1}" if entry.seq == applied + 2 else f"{applied + 1} to {entry.seq - 1}"
                    )
                    problems.append(
                        f"{name}: saves number {missing} are missing; later saves could not be applied."
                    )
                    if name not in bad:
                        bad.append(name)
                    state.possibly_lost += sum(1 for e in jr.entries if e.seq > applied)
                    break
                state.entries.append(entry)
                applied = entry.seq
            if stopped:
                break
            if jr.damaged_line is not None:
                problems.append(
                    f"{name}: line {jr.damaged_line} is damaged ({jr.damage}); reading stopped there."
                )
                bad.append(name)
                if name != JOURNAL:
                    # the next journal may carry on from what the snapshot holds; if it does
                    # not, the gap check above reports what is missing.
                    continue
                state.possibly_lost += 1 + jr.lines_after_damage
                break
        if source == "the journal alone" and (applied == 0 or (state.entries and state.entries[0].seq != 1)):
            names = ", ".join(f for f in (SNAPSHOT, BACKUP, *JOURNALS) if self._p(f).exists())
            raise ProjectError(
                f"The project database in {self.folder} is damaged and its backup copy too "
                f"({'; '.join(problems)}). Nothing was changed.",
                f"Restore the project folder from a backup. The files involved are: {names}.",
                kind="project-damaged",
            )
        # A damaged older journal whose entries the snapshot already holds costs nothing,
        # but the backup chain is broken: still repair (a fresh snapshot and backup).
        state.seq = applied
        state.replayed = len(state.entries)
        return state

    def _install(self, state: Database._State) -> None:
        self.tables = {}
        self.loaded_schema_version = _snapshot_meta(state.data).get("schema_version")
        if isinstance(self.loaded_schema_version, int):
            self.schema_version = self.loaded_schema_version  # the data's own version wins
        for name, docs in state.data.items():
            if name == META_TABLE:
                continue
            self._table(name).load_bulk(docs)
        for entry in state.entries:
            self._apply_ops(entry.ops)
        self.seq = state.seq
        self.snapshot_size = state.snapshot_size
        if state.damaged:
            self.recovery = RecoveryReport(
                what=f"The project database was damaged; TDRI Studio rebuilt it from {state.source}.",
                source=state.source,
                good_copy_time=_mtime_iso(self._p(state.source))
                if state.source != "the journal alone"
                else None,
                journal_entries_replayed=state.replayed,
                problems=tuple(state.problems),
                possibly_lost=state.possibly_lost,
                repaired=False,
            )

    def _apply_ops(self, ops: list[list[Any]]) -> None:
        for op in ops:
            tbl = self._table(op[1])
            if op[0] == "put":
                tbl.apply_put(op[2], op[3].get(tbl.key_field), encode_doc(op[3]))
            else:
                tbl.apply_del(op[2])

    def _repair(self, state: Database._State) -> None:
        """Move damaged files aside (never overwrite them) and write a fresh snapshot."""
        kept = []
        for name in state.bad_files:
            src = self._p(name)
            if src.exists():
                dst = unique_path(self._p(f"{name}.corrupt-{timestamp()}"))
                try:
                    os.replace(src, dst)
                except OSError as exc:
                    raise storage_error(exc, "set the damaged database file aside", self.folder) from exc
                kept.append(dst.name)
        self.compact(fresh=True)
        assert self.recovery is not None
        self.recovery = RecoveryReport(
            what=self.recovery.what,
            source=self.recovery.source,
            good_copy_time=self.recovery.good_copy_time,
            journal_entries_replayed=self.recovery.journal_entries_replayed,
            corrupt_file_kept=str(self.folder / kept[0]) if kept else None,
            kept_files=tuple(str(self.folder / k) for k in kept),
            problems=self.recovery.problems,
            possibly_lost=self.recovery.possibly_lost,
            repaired=True,
        )

    # ---- reading
    def _table(self, name: str) -> Table:
        tbl = self.tables.get(name)
        if tbl is None:
            tbl = self.tables[name] = Table(name, self.key_fields.get(name, "id"))
        return tbl

    def table(self, name: str, key_field: str) -> Table:
        if name == META_TABLE:
            raise ValueError(f"table name {META_TABLE!r} is reserved")
        tbl = self._table(name)
        tbl.set_key_field(key_field)
        return tbl

    # ---- writing
    def write(self, changes: list[tuple[str, str, str, Any]], action: str) -> None:
        """Commit ``changes`` as one journal entry: all of them or none.

        Each change is ``("put", table, key_field, doc)`` or ``("del", table, key_field, key)``.
        Memory changes only after the entry is durably on disk.
        """
        if self.read_only:
            raise ProjectError(
                f"Could not {action}: the project is open read-only.",
                "Close the other window that has it open, then reopen the project normally.",
                kind="project-read-only",
            )
        with self.lock:
            self._refuse_if_closed(action)
            plan: list[tuple[str, Table, int, Any, str]] = []  # (kind, table, doc_id, key, text)
            ops_json: list[str] = []
            allocated: dict[tuple[str, Any], int] = {}
            next_ids: dict[str, int] = {}
            for kind, name, key_field, payload in changes:
                tbl = self.table(name, key_field)
                if kind == "put":
                    key = payload.get(key_field)
                    if not isinstance(key, str) or not key:
                        raise BadInput(f"A {name} record needs a non-empty '{key_field}' to be saved.")
                    doc_id = allocated.get((name, key)) or tbl.index.get(key)
                    if doc_id is None:
                        doc_id = next_ids.get(name, tbl.next_id)
                        next_ids[name] = doc_id + 1
                    allocated[(name, key)] = doc_id
                    enc = encode_doc(payload, f"{name} record")
                    ops_json.append(f'["put",{json.dumps(name)},{doc_id},{enc}]')
                    plan.append(("put", tbl, doc_id, key, enc))
                else:
                    doc_id = allocated.get((name, payload)) or tbl.index.get(payload)
                    if doc_id is None:
                        continue
                    ops_json.append(f'["del",{json.dumps(name)},{doc_id}]')
                    plan.append(("del", tbl, doc_id, None, ""))
            if not plan:
                return
            journal = self._writer(action)
            journal.append(encode_entry(self.seq + 1, ops_json), action)  # raises: nothing changed
            self.seq += 1
            for kind, tbl, doc_id, key, enc in plan:
                if kind == "put":
                    tbl.apply_put(doc_id, key, enc)
                else:
                    tbl.apply_del(doc_id)
            if self._should_compact():
                self._auto_compact()

    def _refuse_if_closed(self, action: str) -> None:
        """A closed database never reopens its journal: a late write after close() is a bug in
        the caller's sequencing (a job still running on a project being switched away from),
        and appending then would write behind the back of whoever opens the project next."""
        if self.closed:
            raise ProjectError(
                f"Could not {action}: the project {self.folder} was closed.",
                "Open the project again; this change was not saved.",
                kind="project-closed",
            )

    def _writer(self, action: str) -> JournalWriter:
        if self.journal is None:  # an earlier compaction failed between files: reopen
            try:
                jr = read_journal(self._p(JOURNAL))
                self.journal = JournalWriter(self._p(JOURNAL), jr.good_size)
                self.journal.entries = jr.good_lines
            except OSError as exc:
                raise storage_error(exc, action, self.folder) from exc
        return self.journal

    def _should_compact(self) -> bool:
        j = self.journal
        if j is None or j.entries == 0 or self._compacting():
            return False
        if self.compact_every is not None:
            return j.entries >= self.compact_every
        return j.size >= max(MIN_COMPACT_BYTES, self.snapshot_size)

    def _compacting(self) -> bool:
        return self._bg is not None and self._bg.is_alive()

    def _auto_compact(self) -> None:
        """Start a background compaction (called under the lock, after a durable save).

        The save that triggered it is already on disk: a failure here never fails it; the
        error is kept in ``compaction_error`` and the next trigger tries again.
        """
        try:
            if self._p(MID_JOURNAL).exists():  # an earlier background run failed midway
                self.compact(fresh=True)
                return
            rows = self._copy_rows()
            seq, version = self.seq, self.schema_version
            # rotate exactly at ``seq``: the snapshot will hold everything before the new journal
            if self.journal is not None:
                self.journal.close()
                self.journal = None
            try:
                os.replace(self._p(JOURNAL), self._p(MID_JOURNAL))
                self.journal = JournalWriter(self._p(JOURNAL), 0)
                fsync_dir(self.folder)
            except OSError as exc:
                raise storage_error(exc, "start a new journal", self.folder) from exc
            self._bg = threading.Thread(
                target=self._background_compact,
                args=(rows, seq, version),
                name="tdri-compaction",
                daemon=True,
            )
            self._bg.start()
        except Exception as exc:  # noqa: BLE001 - kept and retried at the next trigger
            self.compaction_error = exc

    def _copy_rows(self) -> list[tuple[str, list[tuple[int, str]]]]:
        """The state as it is now (a shallow copy: one list per table, texts shared)."""
        return [(name, list(tbl.rows.items())) for name, tbl in self.tables.items()]

    def _background_compact(
        self, rows: list[tuple[str, list[tuple[int, str]]]], seq: int, version: int
    ) -> None:
        try:
            payload = _snapshot_payload(rows, seq, version)
            self._write_snapshot(payload, fresh=False)
            with self.lock:
                os.replace(self._p(MID_JOURNAL), self._p(PREV_JOURNAL))
                fsync_dir(self.folder)
                self.snapshot_size = len(payload)
                self.compaction_error = None
            if self.on_compacted is not None:
                self.on_compacted()
        except Exception as exc:  # noqa: BLE001 - the journals still hold everything
            self.compaction_error = exc

    def wait_for_compaction(self) -> None:
        """Block until a background compaction (if any) has finished."""
        bg = self._bg
        if bg is not None and bg is not threading.current_thread():
            bg.join()

    def snapshot_bytes(self) -> bytes:
        with self.lock:
            return _snapshot_payload(self._copy_rows(), self.seq, self.schema_version)

    def _write_snapshot(self, payload: bytes, *, fresh: bool) -> None:
        """db.json := payload atomically; db.json.bak := the old db.json (or payload when fresh)."""
        snap, bak, tmp, bak_tmp = (
            self._p(SNAPSHOT),
            self._p(BACKUP),
            self._p(SNAPSHOT + ".tmp"),
            self._p(BACKUP + ".tmp"),
        )
        try:
            write_file_synced(tmp, payload)
            if fresh or not snap.exists():
                write_file_synced(bak_tmp, payload)
                os.replace(bak_tmp, bak)
            else:
                link_or_copy(snap, bak)
            os.replace(tmp, snap)
            fsync_dir(self.folder)
        except OSError as exc:
            for leftover in (tmp, bak_tmp):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
            raise storage_error(exc, "write the database snapshot", self.folder) from exc

    def compact(self, *, fresh: bool = False) -> None:
        """Write the whole state as a new snapshot now and start an empty journal.

        ``fresh`` (new, repaired or migrated databases) also makes the backup a copy of the
        new snapshot and drops the old journals, whose entries it then holds.
        """
        if self.read_only:
            return
        self.wait_for_compaction()
        with self.lock:
            self._refuse_if_closed("compact the project")
            if self._p(MID_JOURNAL).exists():
                fresh = True  # a background run failed midway: rebuild the chain from scratch
            payload = self.snapshot_bytes()
            self._write_snapshot(payload, fresh=fresh)
            self.snapshot_size = len(payload)
            # The snapshot is durable and holds every journal entry: rotate the journal.
            if self.journal is not None:
                self.journal.close()
                self.journal = None
            try:
                if fresh:
                    for name in JOURNALS:
                        if self._p(name).exists():
                            os.unlink(self._p(name))
                elif self._p(JOURNAL).exists():
                    os.replace(self._p(JOURNAL), self._p(PREV_JOURNAL))
                self.journal = JournalWriter(self._p(JOURNAL), 0)
                fsync_dir(self.folder)
            except OSError as exc:
                raise storage_error(exc, "start a new journal", self.folder) from exc
            self.compaction_error = None
        if self.on_compacted is not None:
            self.on_compacted()

    def replace_all(self, tables: dict[str, dict[int, dict[str, Any]]]) -> None:
        """Swap in reshaped tables (migrations); the caller then compacts with ``fresh``."""
        self.wait_for_compaction()
        with self.lock:
            old = self.tables
            self.tables = {}
            for name, docs in tables.items():
                tbl = self._table(name)
                if name in old:
                    tbl.key_field = old[name].key_field
                for doc_id, doc in docs.items():
                    tbl.apply_put(int(doc_id), doc.get(tbl.key_field), encode_doc(doc, f"{name} record"))

    def raw_tables(self) -> dict[str, dict[int, dict[str, Any]]]:
        """Independent copies of every document (for migrations and exports)."""
        with self.lock:
            return {
                name: {doc_id: json.loads(text) for doc_id, text in tbl.rows.items()}
                for name, tbl in self.tables.items()
            }

    def close(self) -> None:
        self.wait_for_compaction()
        with self.lock:
            self.closed = True
            if self.journal is not None:
                self.journal.close()
                self.journal = None
