"""Pause, resume, cancel and timeouts: in one process and across processes."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from _durable import child_json, flows

from routilux import (
    Flow,
    JobState,
    JobStatus,
    JobTimeoutError,
    MemoryStore,
    SQLiteStore,
    StateError,
    routine,
)


def test_pause_keeps_the_rest_and_resume_finishes_exactly(workers: int) -> None:
    flow, s = flows.map_reduce(workers)
    paused = flows.run_paused(flow, s, 20, 7)
    assert paused.status is JobStatus.PAUSED
    assert paused.live is None
    assert paused.finished_at is None
    # Item 7 was running when the pause came: it finished; 8..19 wait as buffered input.
    assert paused.routine_states["work"].activations == 8
    left = [v.key for b in paused.buffers if b.node == "work" for v in b.values]
    left += [a.key for p in paused.pending if p.node == "work" for a in p.args]
    assert sorted(left) == list(range(8, 20))
    assert paused.outputs == {}

    state = flow.resume(paused)
    assert state is paused
    done = flow.wait(state, timeout=30)
    assert done.status is JobStatus.COMPLETED
    assert done.outputs == {"total.result": [flows.expected_total(20)]}
    assert done.routine_states["work"].activations == 20
    assert done.pending == []
    assert done.buffers == []


def test_a_job_can_pause_and_resume_many_times(workers: int) -> None:
    flow, s = flows.map_reduce(workers)
    ready = threading.Event()
    holder: dict[str, JobState] = {}

    def hook(item: Any) -> None:
        ready.wait()
        if item.key in (3, 9, 15):
            flow.pause(holder["state"])

    flows.HOOK = hook
    try:
        job = flow.start(s.n(20))
        state = holder["state"] = job.state
        ready.set()
        flow.wait(state, timeout=30)
        pauses = 0
        while state.status is JobStatus.PAUSED:
            pauses += 1
            assert flow.resume(state) is state
            flow.wait(state, timeout=30)
    finally:
        flows.HOOK = None
    assert pauses == 3
    assert state.status is JobStatus.COMPLETED
    assert state.outputs == {"total.result": [flows.expected_total(20)]}
    assert state.routine_states["work"].activations == 20


def test_pause_returns_only_when_running_tasks_have_finished() -> None:
    gate = threading.Event()
    requested = threading.Event()
    order: list[str] = []
    holder: dict[str, JobState] = {}
    ready = threading.Event()

    @routine
    def slow(x: int) -> int:
        gate.wait()
        order.append("slow finished")
        return x

    @routine
    def pauser(x: int) -> int:
        ready.wait()
        flow.pause(holder["state"])  # from inside a task: requests, does not wait
        requested.set()
        return x

    with Flow("pause-wait", max_workers=3) as flow:
        a, b = slow(), pauser()
    job = flow.start(a.x(1), b.x(2))
    holder["state"] = job.state
    ready.set()
    requested.wait()
    assert not job.done()  # `slow` still runs: the job is not paused yet

    def pause_from_outside() -> None:
        job.pause()
        order.append("pause returned")

    t = threading.Thread(target=pause_from_outside)
    t.start()
    gate.set()
    t.join(10)
    assert order == ["slow finished", "pause returned"]
    assert job.status is JobStatus.PAUSED
    assert job.state.outputs == {"slow.result": [1], "pauser.result": [2]}


def test_pausing_twice_and_pausing_a_paused_state_are_harmless(workers: int) -> None:
    flow, s = flows.map_reduce(workers)
    paused = flows.run_paused(flow, s, 6, 2)
    assert flow.pause(paused) is paused
    assert paused.status is JobStatus.PAUSED


def test_control_errors_say_what_is_wrong(workers: int) -> None:
    flow, s = flows.map_reduce(workers)
    done = flow.run(s.n(3), job_id="c1")
    with pytest.raises(StateError, match=r"^Cannot pause job c1: it is completed, not running$"):
        flow.pause(done)
    with pytest.raises(StateError, match=r"^Cannot resume job c1: it is completed$"):
        flow.resume(done)
    with pytest.raises(StateError, match=r"^Cannot cancel job c1: it is already completed$"):
        flow.cancel(done)
    paused = flows.run_paused(flow, s, 6, 2, job_id="c2")
    gate = threading.Event()
    flows.HOOK = lambda item: gate.wait()
    try:
        flow.resume(paused)
        with pytest.raises(StateError, match=r"^Cannot resume job c2: it is already running$"):
            flow.resume(paused)
    finally:
        gate.set()
        flows.HOOK = None
    assert flow.wait(paused, timeout=30).status is JobStatus.COMPLETED


def test_cancel_drops_pending_work(workers: int) -> None:
    flow, s = flows.map_reduce(workers)
    ready = threading.Event()
    holder: dict[str, JobState] = {}

    def hook(item: Any) -> None:
        ready.wait()
        if item.key == 3:
            flow.cancel(holder["state"])

    flows.HOOK = hook
    try:
        job = flow.start(s.n(10), job_id="cx")
        holder["state"] = job.state
        ready.set()
        state = job.wait(30)
    finally:
        flows.HOOK = None
    assert state.status is JobStatus.CANCELLED
    assert state.pending == []
    assert state.buffers == []
    assert state.outputs == {}  # `total` never fired
    assert state.finished_at is not None
    assert state.routine_states["work"].activations == 4
    with pytest.raises(StateError, match=r"^Cannot resume job cx: it is cancelled$"):
        flow.resume(state)


def test_cancel_a_paused_job_drops_its_pending_work(workers: int) -> None:
    flow, s = flows.map_reduce(workers)
    paused = flows.run_paused(flow, s, 6, 2)
    assert paused.buffers
    state = flow.cancel(paused)
    assert state.status is JobStatus.CANCELLED
    assert state.buffers == []
    assert state.pending == []


@routine
def forever(n: int) -> int:
    return n + 1


def _endless(**flow_kw: Any) -> tuple[Flow, Any]:
    with Flow("endless", **flow_kw) as flow:
        f = forever()
        f.result >> f.n
    return flow, f


def test_a_job_timeout_stops_an_endless_job(workers: int) -> None:
    flow, f = _endless(max_workers=workers)
    state = flow.start(f.n(0), timeout=0.05, job_id="t1").wait(30)
    assert state.status is JobStatus.FAILED
    assert state.error is not None
    assert state.error.type == "JobTimeoutError"
    assert state.error.message == "Job t1 ran past its timeout of 0.05 s"
    assert state.routine_states["forever"].activations > 0


def test_a_flow_execution_timeout_applies_to_each_job(workers: int) -> None:
    flow, f = _endless(max_workers=workers, execution_timeout=0.05)
    state = flow.run(f.n(0), job_id="t2")
    assert state.status is JobStatus.FAILED
    assert state.error is not None
    assert state.error.message == "Job t2 ran past its timeout of 0.05 s"


def test_waiting_past_a_wait_timeout_raises_and_the_job_goes_on() -> None:
    gate = threading.Event()

    @routine
    def blocked(x: int) -> int:
        gate.wait()
        return x

    with Flow("w", max_workers=2) as flow:
        b = blocked()
    job = flow.start(b.x(1), job_id="w1")
    with pytest.raises(JobTimeoutError, match=r"^Job w1 still running after waiting 0.01 s$"):
        flow.wait(job.state, timeout=0.01)
    gate.set()
    assert job.wait(10).status is JobStatus.COMPLETED


# -- across processes --------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 3], ids=["inline", "pool"])
def test_a_job_paused_in_one_process_resumes_in_another(tmp_path: Any, workers: int) -> None:
    where = str(tmp_path / "jobs.db")
    paused = child_json("pause", "sqlite", where, "px", 20, 7, workers)
    assert paused == {"status": "paused", "outputs": {}}

    from_bytes = child_json("resume-bytes", where + ".bin", workers)
    assert from_bytes == {
        "status": "completed",
        "outputs": {"total.result": [flows.expected_total(20)]},
    }
    # The on_pause policy put the paused job in the store too; resume it from there.
    assert SQLiteStore(where).load("px").status is JobStatus.PAUSED
    from_store = child_json("recover", "sqlite", where, "px", workers)
    assert from_store["status"] == "completed"
    assert from_store["outputs"] == {"total.result": [flows.expected_total(20)]}
    assert from_store["ran"] == list(range(8, 20))
    assert SQLiteStore(where).load("px").status is JobStatus.COMPLETED


def test_on_pause_writes_pauses_and_finishes_only(workers: int) -> None:
    store = MemoryStore()
    flow, s = flows.map_reduce(workers)
    paused = flows.run_paused(flow, s, 6, 2, job_id="op", store=store, checkpoint="on_pause")
    assert store.load("op").status is JobStatus.PAUSED
    assert store.load("op").buffers == JobState.from_bytes(paused.to_bytes()).buffers
    flow.wait(flow.resume(store.load("op"), store=store), timeout=30)
    assert store.load("op").status is JobStatus.COMPLETED
    assert store.load("op").outputs == {"total.result": [flows.expected_total(6)]}


def test_manual_writes_only_when_asked(workers: int) -> None:
    store = MemoryStore()
    flow, s = flows.map_reduce(workers)
    paused = flows.run_paused(flow, s, 6, 2, job_id="m", store=store, checkpoint="manual")
    assert "m" not in store
    store.save(paused)
    assert store.load("m").status is JobStatus.PAUSED


def test_checkpoint_arguments_are_checked() -> None:
    flow, s = flows.map_reduce(1)
    with pytest.raises(
        ValueError,
        match=r"^Unknown checkpoint policy 'always' \(valid: manual, on_pause, every_task\)$",
    ):
        flow.start(s.n(1), store=MemoryStore(), checkpoint="always")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError,
        match=r"^checkpoint='every_task' writes checkpoints: pass store= \(e\.g\. SQLiteStore\(\)\)$",
    ):
        flow.run(s.n(1), checkpoint="every_task")
