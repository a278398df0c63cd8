"""Job stores: the same contract for memory, files and SQLite; damage stays local."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _durable import flows

from routilux import FileStore, JobState, JobStatus, MemoryStore, SnapshotError, SQLiteStore
from routilux.stores import JobStore

Factory = Callable[[], JobStore]


@pytest.fixture(params=["memory", "file", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """A factory of stores over one place: a second call reopens the same data."""
    kind = request.param
    memory = MemoryStore()
    opened: list[JobStore] = []

    def make() -> JobStore:
        store: JobStore
        if kind == "memory":
            store = memory
        elif kind == "file":
            store = FileStore(tmp_path / "jobs", fsync=False)
        else:
            store = SQLiteStore(tmp_path / "jobs.db")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def _state(job_id: str, status: JobStatus, **kw: Any) -> JobState:
    return JobState(flow_id="f", job_id=job_id, status=status, **kw)


def test_save_then_load_gives_the_same_state_back(make_store: Factory) -> None:
    flow, s = flows.map_reduce(1)
    paused = flows.run_paused(flow, s, 10, 4, job_id="p1")
    make_store().save(paused)
    loaded = make_store().load("p1")
    assert loaded == JobState.from_bytes(paused.to_bytes())
    done = flow.wait(flow.resume(loaded), timeout=30)
    assert done.outputs == {"total.result": [flows.expected_total(10)]}


def test_save_replaces_and_delete_removes(make_store: Factory) -> None:
    store = make_store()
    store.save(_state("a", JobStatus.PAUSED, shared_data={"v": 1}))
    store.save(_state("a", JobStatus.PAUSED, shared_data={"v": 2}))
    assert store.load("a").shared_data == {"v": 2}
    assert "a" in store
    assert store.delete("a") is True
    assert store.delete("a") is False
    assert "a" not in store
    with pytest.raises(KeyError, match=r"^\"<\w+Store .*> has no job 'a'\"$"):
        store.load("a")


def test_list_filters_by_status_newest_first(make_store: Factory) -> None:
    store = make_store()
    for job_id, status in [
        ("one", JobStatus.COMPLETED),
        ("two", JobStatus.PAUSED),
        ("three", JobStatus.COMPLETED),
        ("four", JobStatus.FAILED),
    ]:
        store.save(_state(job_id, status))
    infos = make_store().list()
    assert [i.job_id for i in infos] == ["four", "three", "two", "one"]
    assert {i.flow_id for i in infos} == {"f"}
    assert [i.job_id for i in store.list(status="completed")] == ["three", "one"]
    assert [i.job_id for i in store.list(status="paused")] == ["two"]
    assert store.list(status="cancelled") == []


def test_prune_keeps_the_newest_finished_jobs_and_never_unfinished_ones(
    make_store: Factory,
) -> None:
    store = make_store()
    for i in range(5):
        store.save(_state(f"done{i}", JobStatus.COMPLETED))
    store.save(_state("paused", JobStatus.PAUSED))
    store.save(_state("running", JobStatus.RUNNING))
    assert store.prune(older_than=3600) == []
    assert sorted(store.prune(keep_last=2)) == ["done0", "done1", "done2"]
    assert sorted(i.job_id for i in store.list()) == ["done3", "done4", "paused", "running"]
    assert sorted(store.prune(older_than=0)) == ["done3", "done4"]
    assert sorted(i.job_id for i in store.list()) == ["paused", "running"]


def test_retention_set_on_the_store_applies_as_jobs_finish(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "jobs.db", keep_last=2)
    flow, s = flows.map_reduce(1)
    ids = [flow.run(s.n(3), store=store).job_id for _ in range(4)]
    assert [i.job_id for i in store.list()] == ids[:1:-1]


def test_a_durable_job_is_listed_while_it_runs_and_after(make_store: Factory) -> None:
    import threading

    store = make_store()
    flow, s = flows.map_reduce(2)
    gate = threading.Event()
    entered = threading.Event()

    def hook(item: Any) -> None:
        entered.set()
        gate.wait()

    flows.HOOK = hook
    try:
        job = flow.start(s.n(4), job_id="live", store=store, checkpoint="every_task")
        entered.wait()
        # The base snapshot is written before any task runs; `work` is blocked meanwhile.
        assert [(i.job_id, i.status) for i in make_store().list()] == [("live", "running")]
        # Saving a live durable job compacts its journal; the store has it all.
        store.save(job.state)
        assert make_store().load("live").status is JobStatus.RUNNING
    finally:
        gate.set()
        flows.HOOK = None
    job.wait(30)
    assert [(i.job_id, i.status) for i in make_store().list()] == [("live", "completed")]
    assert make_store().load("live").outputs == {"total.result": [flows.expected_total(4)]}


# -- damage ------------------------------------------------------------------------------


def _two_jobs(store: JobStore) -> None:
    store.save(_state("good", JobStatus.PAUSED, shared_data={"ok": True}))
    store.save(_state("bad", JobStatus.PAUSED, shared_data={"ok": False}))


def test_a_truncated_snapshot_file_is_an_error_for_that_job_only(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    _two_jobs(store)
    path = tmp_path / "bad.snap"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(
        SnapshotError, match=rf"^Cannot read the snapshot in {tmp_path}/bad\.snap \(20 bytes\): "
    ):
        store.load("bad")
    assert store.load("good").shared_data == {"ok": True}
    statuses = {i.job_id: i.status for i in store.list()}
    assert statuses == {"good": "paused", "bad": "unreadable"}


def _journal_points(tmp_path: Path) -> list[tuple[bytes, bytes, bytes]]:
    """(snapshot file, journal file, loaded state) after each record of a 6-item job."""
    store = FileStore(tmp_path / "run", fsync=False)
    points: list[tuple[bytes, bytes, bytes]] = []
    append = store._append

    def spy(job_id: str, record: bytes) -> None:
        append(job_id, record)
        points.append(
            (
                (tmp_path / "run" / "j.snap").read_bytes(),
                (tmp_path / "run" / "j.journal").read_bytes(),
                store.load(job_id).to_bytes(),
            )
        )

    store._append = spy  # type: ignore[method-assign]
    flow, s = flows.map_reduce(1)
    state = flow.run(s.n(6), job_id="j", store=store, checkpoint="every_task")
    assert state.status is JobStatus.COMPLETED
    store.close()
    assert len(points) == 7  # split, then six work items
    return points


def test_a_journal_cut_short_by_a_crash_is_read_to_its_last_whole_record(tmp_path: Path) -> None:
    points = _journal_points(tmp_path)
    snap, journal, expected = points[2]
    _, longer, _ = points[3]
    assert longer.startswith(journal)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (crashed / "j.snap").write_bytes(snap)
    # A kill -9 in the middle of writing record 4: only part of it reached the file.
    (crashed / "j.journal").write_bytes(longer[: len(journal) + 11])
    store = FileStore(crashed)
    loaded = store.load("j")
    assert loaded.to_bytes() == expected
    flow, _ = flows.map_reduce(1)
    done = flow.wait(flow.resume(loaded, store=store), timeout=30)
    assert done.outputs == {"total.result": [flows.expected_total(6)]}
    assert store.load("j").status is JobStatus.COMPLETED


def test_a_damaged_journal_record_is_an_error_for_that_job_only(tmp_path: Path) -> None:
    points = _journal_points(tmp_path)
    snap, journal, _ = points[2]
    damaged = tmp_path / "damaged"
    store = FileStore(damaged)
    store.save(_state("other", JobStatus.PAUSED, shared_data={"ok": True}))
    (damaged / "j.snap").write_bytes(snap)
    flipped = bytearray(journal)
    flipped[10] ^= 0xFF  # inside the first record, past its 8-byte header
    (damaged / "j.journal").write_bytes(bytes(flipped))
    with pytest.raises(
        SnapshotError,
        match=rf"^Journal {damaged}/j\.journal of job 'j' is corrupt at byte 0 "
        r"\(checksum mismatch in record 0\)$",
    ):
        store.load("j")
    assert store.load("other").shared_data == {"ok": True}


def test_a_corrupt_sqlite_row_is_an_error_for_that_job_only(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    store = SQLiteStore(db)
    _two_jobs(store)
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE jobs SET snapshot = ? WHERE job_id = 'bad'", (b"\xc1garbage",))
    with pytest.raises(
        SnapshotError,
        match=rf"^Cannot read the snapshot in {db} \(job 'bad'\) \(8 bytes\): ",
    ):
        store.load("bad")
    assert store.load("good").shared_data == {"ok": True}
    assert {i.job_id for i in store.list()} == {"good", "bad"}


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    db.write_bytes(b"this is not sqlite at all, just text that fills a page. " * 40)
    with pytest.raises(
        SnapshotError, match=rf"^Cannot open job store {db}: file is not a database$"
    ):
        SQLiteStore(db)


def test_sqlite_store_uses_wal_and_creates_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore.default()
    assert store.path == ".routilux/jobs.db"
    assert (tmp_path / ".routilux" / "jobs.db").exists()
    assert store._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store.close()


def test_file_store_ids_are_any_string_and_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.save(_state("a/b c%d", JobStatus.PAUSED))
    assert [i.job_id for i in store.list()] == ["a/b c%d"]
    assert store.load("a/b c%d").job_id == "a/b c%d"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a%2Fb%20c%25d.snap"]
    with pytest.raises(ValueError, match=r"^Job id '\.\.' cannot name a file"):
        store.save(_state("..", JobStatus.PAUSED))
