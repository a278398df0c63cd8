"""Crash recovery: a job checkpointed with ``every_task`` survives ``kill -9``.

The real test kills a child process (SIGKILL) while it runs a durable map-reduce job,
at a point it chose deterministically (after N committed records, inside a task it
blocks), then recovers the job in a second fresh process. The in-process tests
simulate a crash after *every* commit: each intermediate store content must resume to
exactly the uninterrupted result.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from _durable import SCRIPT, child_json, flows

from routilux import Append, Flow, JobState, Latest, Reduce, routine
from routilux import checkpoint as checkpoint_mod
from routilux.stores import MemoryStore, SQLiteStore


def _crash_child(kind: str, where: str, job_id: str, n: int, block: int, workers: int) -> int:
    """Run the child until it blocks on item ``block``, SIGKILL it; return its commit count."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            "crash",
            kind,
            where,
            job_id,
            str(n),
            str(block),
            str(workers),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    committed = 0
    try:
        for line in proc.stdout:
            if line.startswith("committed"):
                committed += 1
            elif line.startswith("blocked"):
                break
            elif line.startswith("finished"):
                pytest.fail("the child finished instead of blocking")
        else:
            pytest.fail(f"the child exited early: {proc.stderr.read() if proc.stderr else ''}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return committed


@pytest.mark.parametrize("workers", [1, 3], ids=["inline", "pool"])
@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_sigkill_mid_run_then_a_new_process_finishes_the_job_exactly(
    tmp_path: Any, kind: str, workers: int
) -> None:
    where = str(tmp_path / ("jobs.db" if kind == "sqlite" else "jobs"))
    n, block = 40, 25
    committed = _crash_child(kind, where, "job-1", n, block, workers)
    # split's record, then one per work item before the blocked one.
    assert committed == 1 + block

    out = child_json("recover", kind, where, "job-1", workers)

    assert out["status"] == "completed"
    assert out["outputs"] == {"total.result": [flows.expected_total(n)]}
    # Committed items are not run again; the one running at the kill is (at-least-once).
    assert out["ran"] == list(range(block, n))


class _CrashEverywhere(MemoryStore):
    """Records what ``load`` would return after every single store write."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[bytes] = []

    def _append(self, job_id: str, record: bytes) -> None:
        super()._append(job_id, record)
        self.points.append(self.load(job_id).to_bytes())

    def _write(self, info: Any, blob: bytes) -> None:
        super()._write(info, blob)
        self.points.append(self.load(info.job_id).to_bytes())


@routine
def fan(n: int) -> Iterator[int]:
    yield from range(n)


@routine(concurrency=2)
def scale(x: int, factor: Latest[int] = 3) -> int:
    return x * factor


@routine
def odd(x: int) -> Iterator[int]:
    if x % 2:
        yield x


@routine
def collect(xs: Append[int]) -> list[int]:
    return sorted(xs)


def _add(acc: int, x: int) -> int:
    return acc + x


@routine
def fold(acc: Annotated[int, Reduce(_add)]) -> int:
    return acc


def _rich_flow(workers: int) -> tuple[Flow, Any, Any]:
    with Flow("rich", max_workers=workers) as flow:
        f, s, o, c, r = fan(), scale(), odd(), collect(), fold()
        f.result >> s.x
        s.result >> o.x
        s.result >> r.acc
        o.result >> c.xs
    return flow, f, s


@pytest.mark.parametrize("compact_every", [1000, 3])
def test_a_crash_after_any_commit_resumes_to_the_exact_result(
    workers: int, compact_every: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint_mod, "COMPACT_EVERY", compact_every)
    flow, f, s = _rich_flow(workers)
    store = _CrashEverywhere()
    done = flow.run(f.n(12), s.factor(5), store=store, checkpoint="every_task", job_id="j")
    assert done.status == "completed"
    assert done.outputs == {
        "collect.result": [[5, 15, 25, 35, 45, 55]],
        "fold.result": [330],
    }
    assert len(store.points) >= 12
    for i, blob in enumerate(store.points):
        state = JobState.from_bytes(blob)
        if state.status != "completed":
            again, _, _ = _rich_flow(workers)
            state = again.wait(again.resume(state), timeout=30)
        assert state.outputs == done.outputs, f"crash point {i}"
        assert state.status == "completed"


def test_compaction_bounds_the_journal(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint_mod, "COMPACT_EVERY", 4)
    seen: list[int] = []
    store = SQLiteStore(tmp_path / "jobs.db")
    append = store._append

    def counting(job_id: str, record: bytes) -> None:
        append(job_id, record)
        seen.append(store._db.execute("SELECT COUNT(*) FROM journal").fetchone()[0])

    store._append = counting  # type: ignore[method-assign]
    flow, s = flows.map_reduce(1)
    state = flow.run(s.n(30), store=store, checkpoint="every_task")
    assert state.status == "completed"
    assert len(seen) > 8
    assert max(seen) == 4
    assert store._db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0
    assert store.load(state.job_id).outputs == {"total.result": [flows.expected_total(30)]}


def test_a_failing_durable_task_with_continue_is_not_run_again_on_recovery() -> None:
    from routilux import Continue

    calls: list[int] = []

    @routine(on_error=Continue())
    def picky(x: int) -> int:
        calls.append(x)
        if x == 2:
            msg = "no twos"
            raise ValueError(msg)
        return x

    with Flow("picky") as flow:
        f, p = fan(), picky()
        f.result >> p.x
    store = _CrashEverywhere()
    state = flow.run(f.n(4), store=store, checkpoint="every_task")
    assert state.outputs == {"picky.result": [0, 1, 3]}
    # The snapshot written right after the failure holds no pending `picky(2)`.
    after_failure = [JobState.from_bytes(b) for b in store.points]
    assert any(s.errors and not any(p.args == [2] for p in s.pending) for s in after_failure)


def test_an_unencodable_payload_fails_a_durable_job_naming_where_it_is() -> None:
    class Opaque:
        pass

    @routine
    def make(n: int) -> object:
        return Opaque()

    @routine
    def sink(x: object, y: int = 0) -> None:
        return None

    with Flow("opaque") as flow:
        m, k = make(), sink()
        m.result >> k.x
    state = flow.run(m.n(1), store=MemoryStore(), checkpoint="every_task", job_id="op")
    assert state.status == "failed"
    assert state.error is not None
    assert state.error.type == "SnapshotError"
    assert state.error.message.startswith(
        "Cannot journal job op: node `sink`, pending activation holds a value of type "
        "test_recovery.test_an_unencodable_payload_fails_a_durable_job_naming_where_it_is"
        ".<locals>.Opaque"
    )


def test_source_routines_are_journaled_one_activation_each() -> None:
    @routine
    def left() -> int:
        return 1

    @routine
    def right() -> int:
        return 2

    @routine
    def add(xs: Append[int]) -> int:
        return sum(xs)

    def build() -> Flow:
        with Flow("sources") as flow:
            a, b, s = left(), right(), add()
            a.result >> s.xs
            b.result >> s.xs
        return flow

    store = _CrashEverywhere()
    flow = build()
    done = flow.run(store=store, checkpoint="every_task")
    assert done.outputs == {"add.result": [3]}
    for i, blob in enumerate(store.points):
        state = JobState.from_bytes(blob)
        if state.status != "completed":
            again = build()
            state = again.wait(again.resume(state), timeout=10)
        assert state.outputs == done.outputs, f"crash point {i}"
