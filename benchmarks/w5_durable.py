"""W5 durable: W1 with ``SQLiteStore`` and ``checkpoint="every_task"``.

Figure: time added per task, ``(durable W1 - plain W1) / handler runs``, both at
``max_workers=1`` and measured here, back to back. Each durable run writes to a
fresh database; the bench checks that the job completed, the sink got every value,
and (if the store can load it) that the stored state says ``completed``.

The durability API is issue 5's; until ``routilux.stores.SQLiteStore`` and
``flow.start(..., store=, checkpoint=)`` exist the row reads
"n/a (no stores yet)".

Floor, same process: one ``INSERT`` + ``COMMIT`` per task into a WAL-mode SQLite
database (``synchronous=NORMAL``: survives a killed process, which is what
``every_task`` promises); for reference the same with ``synchronous=FULL``, and
with one ``COMMIT`` per 64 tasks (group commit).
"""

from __future__ import annotations

import importlib
import inspect
import sqlite3
import tempfile
from pathlib import Path
from time import perf_counter
from typing import Any

from routilux import Flow

from . import w1_stream
from ._common import Config, Report, Row, check, figure

TARGET_US = 100.0


def _api() -> tuple[Any, str]:
    """``routilux.stores.SQLiteStore`` if the durability API exists, else why not."""
    try:
        stores = importlib.import_module("routilux.stores")
    except ImportError:
        return None, "n/a (no stores yet)"
    cls = getattr(stores, "SQLiteStore", None)
    if cls is None:
        return None, "n/a (no SQLiteStore yet)"
    params = inspect.signature(Flow.start).parameters
    if "store" not in params or "checkpoint" not in params:
        return None, "n/a (flow.start has no store=/checkpoint= yet)"
    return cls, ""


def floor_sqlite(tasks: int, path: Path, synchronous: str, per_commit: int = 1) -> float:
    """Seconds for ``tasks`` single-row INSERTs in WAL mode, a COMMIT every ``per_commit``."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={synchronous}")
        con.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, job TEXT, entry BLOB)")
        entry = b"\x93\xa4hop3\x01\x91\x2a" * 4  # a small msgpack-sized journal entry
        t0 = perf_counter()
        for i in range(tasks):
            if i % per_commit == 0:
                con.execute("BEGIN")
            con.execute("INSERT INTO journal VALUES (?, ?, ?)", (i, "job", entry))
            if i % per_commit == per_commit - 1 or i == tasks - 1:
                con.execute("COMMIT")
        return perf_counter() - t0
    finally:
        con.close()


def run(cfg: Config, report: Report) -> None:
    """Measure W5 if the durability API exists; report n/a otherwise."""
    store_cls, why = _api()
    n = 500 if cfg.quick else w1_stream.N
    handlers = 1 + n * (w1_stream.HOPS + 1)
    with tempfile.TemporaryDirectory(prefix="routilux-bench-") as tmp:
        floor = floor_sqlite(handlers, Path(tmp) / "floor.db", "NORMAL") / handlers * 1e6
        report.floor("W5", "SQLite WAL INSERT+COMMIT, synchronous=NORMAL", floor, "µs/task")
        full = floor_sqlite(min(handlers, 2000), Path(tmp) / "full.db", "FULL")
        report.floor(
            "W5",
            "SQLite WAL INSERT+COMMIT, synchronous=FULL",
            full / min(handlers, 2000) * 1e6,
            "µs/task",
        )
        grouped = floor_sqlite(handlers, Path(tmp) / "grouped.db", "NORMAL", 64) / handlers * 1e6
        report.floor("W5", "SQLite WAL INSERT, COMMIT every 64 (group commit)", grouped, "µs/task")
        if store_cls is None:
            report.rows.append(
                Row(
                    "W5",
                    'W1 + SQLiteStore, checkpoint="every_task"',
                    None,
                    "µs/task added",
                    floor=floor,
                    floor_what="SQLite commit",
                    target=TARGET_US,
                    note=why,
                )
            )
            return
        flow, src = w1_stream.build(1, name="w5")
        try:
            w1_stream.run_once(flow, src, 50)
            reps = max(1, min(cfg.repeats, 3))
            plain: list[float] = []
            durable: list[float] = []
            for r in range(reps):
                t0 = perf_counter()
                w1_stream.run_once(flow, src, n)
                plain.append(perf_counter() - t0)
                store = store_cls(Path(tmp) / f"jobs{r}.db")
                w1_stream.received.clear()
                t0 = perf_counter()
                job = flow.start(src.n(n), store=store, checkpoint="every_task")
                state = job.wait(600)
                durable.append(perf_counter() - t0)
                w1_stream.verify(state, n, where="W5")
                if hasattr(store, "load"):
                    saved = store.load(state.job_id)
                    check(
                        saved.status == "completed",
                        f"W5: the store holds job {state.job_id} as {saved.status}, expected completed",
                    )
                if hasattr(store, "close"):
                    store.close()
        finally:
            flow.shutdown()
        added = (figure(durable, cfg) - figure(plain, cfg)) / handlers * 1e6
        report.rows.append(
            Row(
                "W5",
                'W1 + SQLiteStore, checkpoint="every_task"',
                added,
                "µs/task added",
                floor=floor,
                floor_what="SQLite commit",
                target=TARGET_US,
                note=f"{handlers:,} tasks; durable {figure(durable, cfg) / handlers * 1e6:.1f} µs/task "
                f"vs plain {figure(plain, cfg) / handlers * 1e6:.1f}",
            )
        )
