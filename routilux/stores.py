"""Job stores: where snapshots and checkpoint journals live.

Three stores share one interface (:class:`JobStore`): ``save(state)``, ``load(job_id)``,
``list(status=...)``, ``delete(job_id)`` and ``prune(keep_last=..., older_than=...)``.

* :class:`MemoryStore` keeps encoded bytes in a dict (tests, one process).
* :class:`FileStore` keeps one ``<job>.snap`` file per job (written atomically: temp
  file, fsync, rename) and one append-only ``<job>.journal`` file of checksummed records.
* :class:`SQLiteStore` — the embedded default — keeps both in one SQLite database in
  WAL mode; a snapshot replaces the job's journal in the same transaction.

A damaged file or row raises :class:`~routilux.errors.SnapshotError` naming the job and
the place; other jobs in the same store stay readable. A journal that ends in a partial
record (a process killed while writing it) is read up to its last whole record.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote, unquote

import msgspec

from .checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint, replay
from .errors import SnapshotError
from .job_state import JobState

__all__ = ["FileStore", "JobInfo", "JobStore", "MemoryStore", "SQLiteStore"]

_FINISHED = ("completed", "failed", "cancelled")


class JobInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One job in a store, as :meth:`JobStore.list` reports it.

    Attributes:
        job_id: The job's id.
        flow_id: The flow it runs on.
        status: Its status at the last checkpoint (``"unreadable"`` if the store's copy is damaged).
        created_at: When the job was created (epoch seconds).
        updated_at: When the store last wrote its snapshot (epoch seconds).
    """

    job_id: str
    flow_id: str
    status: str
    created_at: float
    updated_at: float


class _StateHead(msgspec.Struct):
    flow_id: str
    job_id: str
    status: str = "pending"
    created_at: float = 0.0


class _CkptHead(msgspec.Struct):
    state: _StateHead


_HEAD_DEC = msgspec.msgpack.Decoder(_CkptHead)


def _head(blob: bytes) -> _StateHead | None:
    try:
        return _HEAD_DEC.decode(blob).state
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class JobStore:
    """The interface every store implements; see the module docstring.

    Args:
        keep_last: After a finished job is written, keep only this many finished jobs.
        older_than: After a finished job is written, delete finished jobs whose last
            write is older than this many seconds.
    """

    def __init__(self, *, keep_last: int | None = None, older_than: float | None = None) -> None:
        self.keep_last = keep_last
        self.older_than = older_than
        self._gen = time.time_ns()
        self._gen_lock = threading.Lock()

    # -- public API ------------------------------------------------------------------

    def save(self, state: JobState) -> None:
        """Write a full snapshot of ``state`` (live or not), replacing the job's journal.

        Raises:
            SnapshotError: a payload cannot be encoded (naming job, node, slot and type).
        """
        run = state.live
        journal = run.journal if run is not None else None
        if run is not None and journal is not None and journal.store is self:
            run.dispatcher.call(journal.compact)
            if journal.broken:
                err = state.errors[-1] if state.errors else None
                msg = f"Cannot save job {state.job_id}: {err.message if err else 'store failed'}"
                raise SnapshotError(msg)
            return
        snap = state.snapshot()
        policy = getattr(state, "_checkpoint", None) or "manual"
        self._put(Checkpoint(gen=self.next_gen(), policy=policy, seqs=[], state=snap))

    def load(self, job_id: str) -> JobState:
        """The job's state: its last snapshot with the journal written after it applied.

        Raises:
            KeyError: the store has no such job (the message names the store).
            SnapshotError: the job's snapshot or journal is damaged.
        """
        blob, records, where = self._read(job_id)
        ckpt = decode_checkpoint(blob, where)
        return replay(ckpt, records, where)

    def list(self, status: str | None = None) -> builtins.list[JobInfo]:
        """The jobs in the store, most recently written first (only ``status`` ones if given)."""
        infos = sorted(self._infos(), key=lambda i: i.updated_at, reverse=True)
        if status is None:
            return infos
        return [i for i in infos if i.status == status]

    def delete(self, job_id: str) -> bool:
        """Remove a job (snapshot and journal); ``False`` if the store did not have it."""
        raise NotImplementedError

    def prune(
        self, keep_last: int | None = None, older_than: float | None = None
    ) -> builtins.list[str]:
        """Delete finished jobs (completed, failed, cancelled) past a retention bound.

        Args:
            keep_last: Keep only the ``keep_last`` most recently written finished jobs.
            older_than: Delete finished jobs last written more than this many seconds ago.

        Returns:
            The ids of the deleted jobs. Running and paused jobs are never pruned.
        """
        finished = [i for i in self.list() if i.status in _FINISHED]
        doomed: dict[str, None] = {}
        if keep_last is not None:
            for info in finished[max(keep_last, 0) :]:
                doomed[info.job_id] = None
        if older_than is not None:
            cutoff = time.time() - older_than
            for info in finished:
                if info.updated_at < cutoff:
                    doomed[info.job_id] = None
        for job_id in doomed:
            self.delete(job_id)
        return builtins.list(doomed)

    def __contains__(self, job_id: str) -> bool:
        try:
            self._read(job_id)
        except KeyError:
            return False
        return True

    def close(self) -> None:
        """Release files and connections (the store can be reopened by making a new one)."""

    # -- for the journal (routilux.checkpoint) -----------------------------------------

    def next_gen(self) -> int:
        """A generation number no earlier checkpoint of this store used."""
        with self._gen_lock:
            self._gen = max(self._gen + 1, time.time_ns())
            return self._gen

    def _put(self, ckpt: Checkpoint) -> None:
        blob = encode_checkpoint(ckpt)
        st = ckpt.state
        info = JobInfo(
            job_id=st.job_id,
            flow_id=st.flow_id,
            status=str(st.status),
            created_at=st.created_at,
            updated_at=time.time(),
        )
        self._write(info, blob)
        if info.status in _FINISHED and (self.keep_last is not None or self.older_than is not None):
            self.prune(self.keep_last, self.older_than)

    def _write(self, info: JobInfo, blob: bytes) -> None:
        raise NotImplementedError

    def _append(self, job_id: str, record: bytes) -> None:
        raise NotImplementedError

    def _read(self, job_id: str) -> tuple[bytes, builtins.list[bytes], str]:
        raise NotImplementedError

    def _infos(self) -> Iterator[JobInfo]:
        raise NotImplementedError

    def _missing(self, job_id: str) -> KeyError:
        return KeyError(f"{self!r} has no job {job_id!r}")


class MemoryStore(JobStore):
    """A store in this process's memory (encoded bytes, so a save is a true snapshot)."""

    def __init__(self, *, keep_last: int | None = None, older_than: float | None = None) -> None:
        super().__init__(keep_last=keep_last, older_than=older_than)
        self._lock = threading.Lock()
        self._jobs: dict[str, tuple[JobInfo, bytes, builtins.list[bytes]]] = {}

    def _write(self, info: JobInfo, blob: bytes) -> None:
        with self._lock:
            self._jobs[info.job_id] = (info, blob, [])

    def _append(self, job_id: str, record: bytes) -> None:
        with self._lock:
            self._jobs[job_id][2].append(record)

    def _read(self, job_id: str) -> tuple[bytes, builtins.list[bytes], str]:
        with self._lock:
            entry = self._jobs.get(job_id)
            if entry is None:
                raise self._missing(job_id)
            return entry[1], builtins.list(entry[2]), f"{self!r} job {job_id!r}"

    def _infos(self) -> Iterator[JobInfo]:
        with self._lock:
            infos = [e[0] for e in self._jobs.values()]
        return iter(infos)

    def delete(self, job_id: str) -> bool:
        with self._lock:
            return self._jobs.pop(job_id, None) is not None

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self._jobs)} jobs>"


_REC = struct.Struct(">II")  # record length, crc32 of the record


class FileStore(JobStore):
    """A directory of files: ``<job>.snap`` (atomic rewrite) and ``<job>.journal`` (append-only).

    Args:
        directory: Where the files go (created if missing).
        fsync: Flush snapshots and journal records to the disk before returning. Without
            it a write survives the process being killed but not the machine losing power.
        keep_last: See :class:`JobStore`.
        older_than: See :class:`JobStore`.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = True,
        keep_last: int | None = None,
        older_than: float | None = None,
    ) -> None:
        super().__init__(keep_last=keep_last, older_than=older_than)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._open: dict[str, IO[bytes]] = {}

    def _path(self, job_id: str, suffix: str) -> Path:
        if not job_id or job_id in (".", ".."):
            msg = (
                f"Job id {job_id!r} cannot name a file; use a non-empty id other than '.' and '..'"
            )
            raise ValueError(msg)
        return self.directory / (quote(job_id, safe="") + suffix)

    def _write(self, info: JobInfo, blob: bytes) -> None:
        path = self._path(info.job_id, ".snap")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if self.fsync:
            self._sync_dir()
        # The new snapshot's generation makes the old journal's records stale; drop them.
        with self._lock:
            fh = self._open.pop(info.job_id, None)
            if fh is not None:
                fh.close()
        journal = self._path(info.job_id, ".journal")
        journal.unlink(missing_ok=True)

    def _sync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _append(self, job_id: str, record: bytes) -> None:
        with self._lock:
            fh = self._open.get(job_id)
            if fh is None:
                fh = self._open[job_id] = open(self._path(job_id, ".journal"), "ab")  # noqa: SIM115
            fh.write(_REC.pack(len(record), zlib.crc32(record)) + record)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())

    def _read(self, job_id: str) -> tuple[bytes, builtins.list[bytes], str]:
        path = self._path(job_id, ".snap")
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise self._missing(job_id) from None
        records: builtins.list[bytes] = []
        jpath = self._path(job_id, ".journal")
        try:
            data = jpath.read_bytes()
        except FileNotFoundError:
            data = b""
        pos = 0
        while pos + _REC.size <= len(data):
            size, crc = _REC.unpack_from(data, pos)
            start = pos + _REC.size
            if start + size > len(data):
                break  # a record cut short by a crash: it was never committed
            rec = data[start : start + size]
            if zlib.crc32(rec) != crc:
                msg = f"Journal {jpath} of job {job_id!r} is corrupt at byte {pos} (checksum mismatch in record {len(records)})"
                raise SnapshotError(msg)
            records.append(rec)
            pos = start + size
        return blob, records, str(path)

    def _infos(self) -> Iterator[JobInfo]:
        for path in self.directory.glob("*.snap"):
            try:
                blob = path.read_bytes()
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue  # deleted meanwhile
            head = _head(blob)
            job_id = unquote(path.name[: -len(".snap")])
            if head is None:
                yield JobInfo(
                    job_id=job_id, flow_id="", status="unreadable", created_at=0.0, updated_at=mtime
                )
                continue
            yield JobInfo(
                job_id=head.job_id,
                flow_id=head.flow_id,
                status=head.status,
                created_at=head.created_at,
                updated_at=mtime,
            )

    def delete(self, job_id: str) -> bool:
        with self._lock:
            fh = self._open.pop(job_id, None)
            if fh is not None:
                fh.close()
        self._path(job_id, ".journal").unlink(missing_ok=True)
        path = self._path(job_id, ".snap")
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            for fh in self._open.values():
                fh.close()
            self._open.clear()

    def __repr__(self) -> str:
        return f"<FileStore {str(self.directory)!r}>"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    flow_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    snapshot BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, updated_at);
"""


class SQLiteStore(JobStore):
    """An SQLite database in WAL mode: the embedded default store.

    ``SQLiteStore(".routilux/jobs.db")`` creates the parent directory if needed;
    :meth:`default` is exactly that. One connection serves all threads (under a lock).

    Args:
        path: The database file (``":memory:"`` for a private in-memory database).
        synchronous: SQLite's ``synchronous`` setting. ``"NORMAL"`` (the default) keeps
            every committed write across a killed process; ``"FULL"`` also across power loss.
        keep_last: See :class:`JobStore`.
        older_than: See :class:`JobStore`.

    Raises:
        SnapshotError: the file exists but is not an SQLite database.
    """

    DEFAULT_PATH = ".routilux/jobs.db"

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        synchronous: str = "NORMAL",
        keep_last: int | None = None,
        older_than: float | None = None,
    ) -> None:
        super().__init__(keep_last=keep_last, older_than=older_than)
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            msg = f"Unknown synchronous setting {synchronous!r} (valid: OFF, NORMAL, FULL, EXTRA)"
            raise ValueError(msg)
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}  # the next journal seq of each job we write
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            msg = f"Cannot open job store {self.path}: {exc}"
            raise SnapshotError(msg) from exc

    @classmethod
    def default(cls) -> SQLiteStore:
        """The store at ``.routilux/jobs.db`` under the current directory."""
        return cls(cls.DEFAULT_PATH)

    def _write(self, info: JobInfo, blob: bytes) -> None:
        db = self._db
        with self._lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        info.job_id,
                        info.flow_id,
                        info.status,
                        info.created_at,
                        info.updated_at,
                        blob,
                    ),
                )
                db.execute("DELETE FROM journal WHERE job_id = ?", (info.job_id,))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            self._next[info.job_id] = 0

    def _append(self, job_id: str, record: bytes) -> None:
        db = self._db
        with self._lock:
            seq = self._next.get(job_id)
            if seq is None:
                (seq,) = db.execute(
                    "SELECT COALESCE(MAX(seq), -1) + 1 FROM journal WHERE job_id = ?", (job_id,)
                ).fetchall()[0]
            # Autocommit: one INSERT is one transaction.
            db.execute("INSERT INTO journal VALUES (?, ?, ?)", (job_id, seq, record))
            self._next[job_id] = seq + 1

    def _read(self, job_id: str) -> tuple[bytes, builtins.list[bytes], str]:
        where = f"{self.path} (job {job_id!r})"
        with self._lock:
            try:
                # fetchall: a cursor left half-read keeps its read transaction open.
                rows = self._db.execute(
                    "SELECT snapshot FROM jobs WHERE job_id = ?", (job_id,)
                ).fetchall()
                if not rows:
                    raise self._missing(job_id)
                row = rows[0]
                recs = self._db.execute(
                    "SELECT record FROM journal WHERE job_id = ? ORDER BY seq", (job_id,)
                ).fetchall()
            except sqlite3.DatabaseError as exc:
                msg = f"Cannot read job {job_id!r} from {self.path}: {exc}"
                raise SnapshotError(msg) from exc
        blob = row[0]
        if not isinstance(blob, bytes):
            msg = f"Cannot read the snapshot in {where}: expected a BLOB, got {type(blob).__name__}"
            raise SnapshotError(msg)
        return blob, [r[0] for r in recs], where

    def _infos(self) -> Iterator[JobInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, flow_id, status, created_at, updated_at FROM jobs"
            ).fetchall()
        for job_id, flow_id, status, created, updated in rows:
            yield JobInfo(
                job_id=job_id,
                flow_id=flow_id,
                status=status,
                created_at=created,
                updated_at=updated,
            )

    def delete(self, job_id: str) -> bool:
        db = self._db
        with self._lock:
            db.execute("BEGIN IMMEDIATE")
            cur = db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM journal WHERE job_id = ?", (job_id,))
            db.execute("COMMIT")
            self._next.pop(job_id, None)
        return cur.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"
