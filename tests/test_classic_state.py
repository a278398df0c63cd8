"""The classic JobState API (routilux 0.10): routine states, history, shared data, files, waiting."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from routilux import ExecutionRecord, Flow, JobState, Routine, SnapshotError


def make_flow(workers: int) -> Flow:
    if workers == 1:
        return Flow("state")
    return Flow("state", execution_strategy="concurrent", max_workers=workers)


class Counter(Routine):
    """Counts its activations in its routine state and emits ``out``."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger", handler=self.go)
        self.define_event("out", ["n"])

    def go(self, times: int = 1, **kw: Any) -> None:
        ctx = self.get_execution_context()
        assert ctx is not None
        job_state, rid = ctx.job_state, ctx.routine_id
        for i in range(times):
            self.emit("out", n=i)
        prev = job_state.get_routine_state(rid) or {}
        job_state.update_routine_state(rid, {"calls": prev.get("calls", 0) + 1})
        job_state.update_shared_data("last", times)
        job_state.append_to_shared_log({"event": "counted", "times": times})


def run(workers: int, times: int = 2) -> tuple[Flow, JobState]:
    flow = make_flow(workers)
    flow.add_routine(Counter(), "counter")
    idle = Routine()
    idle.define_slot("input")
    flow.add_routine(idle, "sink")
    flow.add_routine(Routine(), "unused")
    flow.connect("counter", "out", "sink", "input")
    state = flow.execute("counter", {"times": times})
    assert JobState.wait_for_completion(flow, state, timeout=10)
    return flow, state


def test_status_compares_equal_to_the_0_10_strings(workers: int) -> None:
    _, state = run(workers)
    assert state.status == "completed"
    assert state.is_complete()
    assert f"{state.status}" == "completed"


def test_routine_states_read_and_written_as_dicts(workers: int) -> None:
    _, state = run(workers)
    assert state.get_routine_state("counter") == {"calls": 1, "status": "completed"}
    assert state.get_routine_state("sink") == {"status": "completed"}
    assert state.get_routine_state("unused") is None
    assert state.get_routine_state("nope") is None
    copy = state.get_routine_state("counter")
    assert copy is not None
    copy["calls"] = 99
    assert state.get_routine_state("counter") == {"calls": 1, "status": "completed"}
    state.update_routine_state("counter", {"status": "failed", "error": "x"})
    assert state.get_routine_state("counter") == {"status": "failed", "error": "x"}
    assert state.routine_states["counter"].status == "failed"


def test_every_emit_is_recorded_in_the_execution_history(workers: int) -> None:
    _, state = run(workers, times=3)
    records = state.get_execution_history("counter")
    assert [(r.routine_id, r.event_name, r.data) for r in records] == [
        ("counter", "start", {"times": 3}),
        ("counter", "out", {"n": 0}),
        ("counter", "out", {"n": 1}),
        ("counter", "out", {"n": 2}),
    ]
    assert all(isinstance(r, ExecutionRecord) for r in state.execution_history)
    assert state.get_execution_history("sink") == []
    stamps = [r.timestamp for r in state.get_execution_history()]
    assert stamps == sorted(stamps)


def test_record_execution_is_bounded_by_the_history_limit() -> None:
    state = JobState(flow_id="f", job_id="j", history_limit=10)
    for i in range(200):
        state.record_execution("r", "tick", {"i": i})
    assert len(state.execution_history) <= 10 + 64
    assert state.execution_history[-1].data == {"i": 199}


def test_shared_data_and_shared_log(workers: int) -> None:
    _, state = run(workers, times=2)
    assert state.get_shared_data("last") == 2
    assert state.get_shared_data("missing", "dflt") == "dflt"
    log = state.get_shared_log()
    assert [(e["event"], e["times"]) for e in log] == [("counted", 2)]
    assert isinstance(log[0]["timestamp"], float)
    assert state.get_shared_log(lambda e: e.get("times") == 3) == []
    with pytest.raises(TypeError, match=r"^append_to_shared_log expects a dict entry, got str$"):
        state.append_to_shared_log("text")


def test_serialize_gives_json_data_and_deserialize_restores_it(workers: int) -> None:
    _, state = run(workers)
    data = state.serialize()
    assert data["_type"] == "JobState"
    text = json.dumps(data)
    other = JobState(flow_id="x", job_id="y")
    other.deserialize(json.loads(text))
    assert (other.flow_id, other.job_id, other.status) == ("state", state.job_id, "completed")
    assert other.get_routine_state("counter") == state.get_routine_state("counter")
    assert [r.event_name for r in other.execution_history] == ["start", "out", "out"]
    assert other.get_shared_data("last") == 2


def test_save_and_load_round_trip(workers: int, tmp_path: Path) -> None:
    _, state = run(workers)
    path = tmp_path / "deep" / "job.json"
    state.save(str(path))
    loaded = JobState.load(str(path))
    assert loaded.job_id == state.job_id
    assert loaded.status == "completed"
    assert loaded.execution_history == state.execution_history
    assert loaded.shared_log == state.shared_log


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "job.json"
    first = JobState(flow_id="f", job_id="first")
    first.save(path)

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match=r"^disk gone$"):
        JobState(flow_id="f", job_id="second").save(path)
    monkeypatch.undo()
    assert JobState.load(path).job_id == "first"  # the old file is intact
    assert os.listdir(tmp_path) == ["job.json"]  # and no temporary file is left behind


def test_load_reports_a_missing_or_invalid_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match=r"^JobState file not found: .*nope\.json$"):
        JobState.load(missing)
    bad = tmp_path / "bad.json"
    bad.write_text('{"flow_id": 3}')
    with pytest.raises(SnapshotError, match=r"^Cannot decode a JobState JSON snapshot: "):
        JobState.load(bad)


def test_wait_for_completion_is_signalled(workers: int) -> None:
    release, entered = threading.Event(), threading.Event()

    class Waits(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)

        def go(self, **kw: Any) -> None:
            entered.set()
            assert release.wait(10)

    flow = make_flow(workers)
    flow.add_routine(Waits(), "w")
    state = flow.execute("w")
    assert entered.wait(10)
    assert JobState.wait_for_completion(flow, state, timeout=0.01) is False
    release.set()
    t0 = time.perf_counter()
    assert JobState.wait_for_completion(flow, state, timeout=10) is True
    # 0.10 polled and needed at least 250 ms of stability checks; this is a signal.
    assert time.perf_counter() - t0 < 0.2
    t0 = time.perf_counter()
    assert JobState.wait_for_completion(flow, state, timeout=10, stability_checks=5) is True
    assert time.perf_counter() - t0 < 0.05
