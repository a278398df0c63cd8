"""Snapshots: encoding, restoring payload types, fingerprints, old schemas.

The fixture ``fixtures/snapshot_v1.msgpack`` is a paused map-reduce job written by
schema version 1 (``fixtures/durable_flows.py``, 12 items, paused on item 5). It stays
as it is when the schema changes: decoding and resuming it guards old snapshots.
"""

from __future__ import annotations

import dataclasses
import enum
import gc
import json
import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from _durable import FIXTURES, flows

from routilux import Append, Flow, JobState, JobStatus, SnapshotError, State, routine
from routilux.job_state import SCHEMA_VERSION


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Doc(msgspec.Struct):
    title: str
    colour: Colour


def test_a_paused_snapshot_round_trips_and_restores_slot_types(workers: int) -> None:
    flow, s = flows.map_reduce(workers)
    paused = flows.run_paused(flow, s, 12, 5)
    assert paused.status is JobStatus.PAUSED
    # Pause lets the running item finish and keeps the rest: as Items, not dicts.
    assert paused.pending or paused.buffers
    waiting = [v for b in paused.buffers if b.node == "work" for v in b.values]
    waiting += [a for p in paused.pending if p.node == "work" for a in p.args]
    assert waiting
    assert all(isinstance(v, flows.Item) for v in waiting)

    for blob, decode in (
        (paused.to_bytes(), JobState.from_bytes),
        (paused.to_json(), JobState.from_json),
    ):
        decoded = decode(blob)
        # The same data; payloads stay plain (dicts) until a flow converts them back.
        assert msgspec.to_builtins(decoded) == msgspec.to_builtins(paused)
        assert all(
            isinstance(v, dict) for b in decoded.buffers if b.node == "work" for v in b.values
        )
        # After decoding, payloads are plain data until a flow converts them back.
        again, _ = flows.map_reduce(workers)
        seen: list[Any] = []
        flows.HOOK = seen.append
        try:
            state = again.wait(again.resume(decoded), timeout=30)
        finally:
            flows.HOOK = None
        assert state.status is JobStatus.COMPLETED
        assert state.outputs == {"total.result": [flows.expected_total(12)]}
        assert seen
        assert all(isinstance(v, flows.Item) for v in seen)


def test_snapshot_of_a_running_job_is_consistent_and_detached() -> None:
    import threading

    gate = threading.Event()
    entered = threading.Event()

    @routine
    def slow(x: int) -> int:
        entered.set()
        gate.wait()
        return x

    @routine
    def tally(xs: Append[int]) -> int:
        return sum(xs)

    with Flow("snap", max_workers=2) as flow:
        a, b = slow(), tally()
        a.result >> b.xs
    job = flow.start(a.x(1), a.x(2), a.x(3))
    entered.wait()
    snap = job.state.snapshot()
    # The running activation is pending in the snapshot (it would run again), the
    # queued values are buffered, and the live job goes on untouched.
    assert [p.args for p in snap.pending] == [[1]]
    assert [(b.node, b.slot, b.values) for b in snap.buffers] == [("slow", "x", [2, 3])]
    assert snap.live is None
    gate.set()
    done = job.wait(10)
    assert done.outputs == {"tally.result": [6]}
    assert snap.status is JobStatus.RUNNING
    assert snap.outputs == {}
    assert JobState.from_bytes(snap.to_bytes()) == snap


def _run_probe(state: JobState) -> list[tuple[Doc, Point, frozenset[str]]]:
    got: list[tuple[Doc, Point, frozenset[str]]] = []

    @routine
    def probe(doc: Doc, point: Point, tags: frozenset[str]) -> None:
        got.append((doc, point, tags))

    with Flow("kinds") as flow:
        probe(name="keep")
    done = flow.wait(flow.resume(state), timeout=10)
    assert done.status is JobStatus.COMPLETED
    return got


def test_payloads_of_many_kinds_come_back_as_the_slot_types() -> None:
    from routilux.job_state import PendingTask

    state = JobState(flow_id="kinds", job_id="k1", status=JobStatus.PAUSED)
    state.pending = [
        PendingTask(node="keep", args=[Doc("t", Colour.RED), Point(1, 2), frozenset({"a", "b"})])
    ]
    want = [(Doc("t", Colour.RED), Point(1, 2), frozenset({"a", "b"}))]
    assert _run_probe(JobState.from_bytes(state.to_bytes())) == want
    assert _run_probe(JobState.from_json(state.to_json())) == want


def test_an_unencodable_payload_names_job_node_slot_and_type() -> None:
    class Opaque:
        pass

    state = JobState(flow_id="f", job_id="job-7", status=JobStatus.PAUSED)
    from routilux.job_state import SlotBuffer

    state.buffers = [SlotBuffer(node="parse", slot="raw", values=[b"ok", Opaque()])]
    with pytest.raises(
        SnapshotError,
        match=r"^Cannot snapshot job job-7: node `parse`, slot `raw` holds a value of type "
        r"test_snapshots\.test_an_unencodable_payload_names_job_node_slot_and_type\.<locals>\.Opaque, "
        r"which msgspec cannot encode \(use builtins",
    ):
        state.to_bytes()
    with pytest.raises(
        SnapshotError, match=r"^Cannot snapshot job job-7: node `parse`, slot `raw`"
    ):
        state.to_json()


def test_garbage_is_a_snapshot_error() -> None:
    with pytest.raises(SnapshotError, match=r"^Cannot decode a JobState snapshot \(3 bytes\): "):
        JobState.from_bytes(b"\x01\x02\x03")
    with pytest.raises(SnapshotError, match=r"^Cannot decode a JobState JSON snapshot: "):
        JobState.from_json(b'{"flow_id": 3}')


# -- fingerprints ------------------------------------------------------------------------


def test_a_job_records_its_flows_fingerprint_at_start(workers: int) -> None:
    flow, s = flows.map_reduce(workers)
    state = flow.run(s.n(3))
    assert state.fingerprint == {
        "version": 1,
        "nodes": {
            "split": {"slots": {"n": "int (queue)"}, "events": {"result": "Item"}},
            "work": {"slots": {"item": "Item (queue)"}, "events": {"result": "int"}},
            "total": {"slots": {"values": "int (append)"}, "events": {"result": "int"}},
        },
    }


@routine
def work_str(item: str) -> int:
    return len(item)


@routine
def summed(values: Append[int]) -> int:
    return sum(values)


@routine
def itemise(n: int) -> Iterator[flows.Item]:
    yield from (flows.Item(key=i, weight=1) for i in range(n))


@routine
def work2(item: flows.Item) -> int:
    return item.key


def _paused_blob() -> bytes:
    flow, s = flows.map_reduce(1)
    return flows.run_paused(flow, s, 8, 2).to_bytes()


def test_resuming_on_a_changed_flow_lists_every_difference() -> None:
    blob = _paused_blob()
    with Flow("map-reduce") as changed:
        s, w = itemise(name="split"), work_str(name="work")
        s.result.map(lambda i: str(i.key)) >> w.item
    with pytest.raises(
        SnapshotError,
        match=r"^Cannot resume job \S+ on flow 'map-reduce': the flow differs from the one the job "
        r"was started on:\n"
        r"- slot `work.item` was Item \(queue\), is now str \(queue\)\n"
        r"- node `total` is gone\n"
        r"Pass mapping=\{old: new\} to resume anyway",
    ):
        changed.resume(JobState.from_bytes(blob))


def test_a_mapping_renames_nodes_and_accepts_what_it_names() -> None:
    blob = _paused_blob()
    with Flow("map-reduce") as renamed:
        s, w, t = itemise(name="split"), work2(name="worker"), summed(name="total")
        s.result >> w.item
        w.result >> t.values
    with pytest.raises(SnapshotError, match=r"^Cannot resume job .*\n- node `work` is gone\nPass"):
        renamed.resume(JobState.from_bytes(blob))
    state = renamed.resume(JobState.from_bytes(blob), mapping={"work": "worker"})
    done = renamed.wait(state, timeout=10)
    assert done.status is JobStatus.COMPLETED
    # Items 0-2 were done by the old `work` (paused on item 2); the rest ran on `worker`.
    assert done.outputs == {"total.result": [flows.expected_total(3) + sum(range(3, 8))]}
    assert "worker" in done.routine_states


def test_a_mapping_target_must_exist() -> None:
    blob = _paused_blob()
    flow, _ = flows.map_reduce(1)
    with pytest.raises(
        SnapshotError,
        match=r"^Cannot map 'work' to 'wrok': the flow has no such node \(known: split, total, work\)$",
    ):
        flow.resume(JobState.from_bytes(blob), mapping={"work": "wrok"})


def test_added_nodes_do_not_stop_a_resume() -> None:
    blob = _paused_blob()
    flow, _ = flows.map_reduce(1)
    with flow:
        summed(name="extra")
    done = flow.wait(flow.resume(JobState.from_bytes(blob)), timeout=10)
    assert done.status is JobStatus.COMPLETED
    assert done.outputs == {"total.result": [flows.expected_total(8)]}


# -- old schemas -------------------------------------------------------------------------


def test_the_v1_fixture_snapshot_decodes_and_resumes(workers: int) -> None:
    blob = (FIXTURES / "snapshot_v1.msgpack").read_bytes()
    state = JobState.from_bytes(blob)
    assert msgspec.to_builtins(state) == json.loads((FIXTURES / "snapshot_v1.json").read_text())
    assert state.schema_version == 1
    assert state.status is JobStatus.PAUSED
    assert state.job_id == "fixture-v1"
    flow, _ = flows.map_reduce(workers)
    done = flow.wait(flow.resume(state), timeout=30)
    assert done.status is JobStatus.COMPLETED
    assert done.outputs == {"total.result": [flows.expected_total(12)]}


def test_a_minimal_old_snapshot_gets_defaults_for_every_later_field() -> None:
    # The fields a snapshot must have; everything else was (or will be) added with a default.
    state = JobState.from_json(json.dumps({"flow_id": "f", "job_id": "j"}))
    assert state.schema_version == SCHEMA_VERSION
    assert state.status is JobStatus.PENDING
    assert state.pending == []
    assert state.buffers == []
    assert state.fingerprint == {}
    assert state.history_limit == 1000


def test_a_snapshot_keeps_a_task_waiting_out_its_retry_delay() -> None:
    import threading

    from routilux import Retry

    failed = threading.Event()

    @routine(on_error=Retry(max_attempts=3, delay=60))
    def flaky(x: int) -> int:
        failed.set()
        msg = "not yet"
        raise ValueError(msg)

    with Flow("retry-snap") as flow:  # inline: the failure is handled before our call
        f = flaky()
    job = flow.start(f.x(7))
    failed.wait()
    snap = job.state.snapshot()
    assert [(p.node, p.args, p.attempt) for p in snap.pending] == [("flaky", [7], 2)]
    assert job.cancel(timeout=10).status is JobStatus.CANCELLED


class Total(msgspec.Struct):
    count: int
    values: list[int]


def test_outputs_come_back_as_their_event_types(workers: int) -> None:
    @routine
    def gather(values: Append[int]) -> Total:
        return Total(len(values), sorted(values))

    @routine
    def fan(n: int) -> Iterator[int]:
        yield from range(n)

    with Flow("typed-outputs", max_workers=workers) as flow:
        f, g = fan(), gather()
        f.result >> g.values
    done = flow.run(f.n(3), timeout=10)
    decoded = JobState.from_bytes(done.to_bytes())
    assert decoded.outputs["gather.result"] == [{"count": 3, "values": [0, 1, 2]}]
    assert flow.typed(decoded) is decoded
    assert decoded.outputs["gather.result"] == [Total(3, [0, 1, 2])]


def test_an_output_that_does_not_fit_its_event_type_is_a_snapshot_error() -> None:
    @routine
    def make() -> Total:
        return Total(1, [1])

    with Flow("typed-bad", max_workers=1) as flow:
        make()
    decoded = JobState.from_bytes(flow.run(timeout=10).to_bytes())
    decoded.outputs["make.result"] = [{"count": "many"}]
    with pytest.raises(SnapshotError, match=r"^Cannot resume job \w+: a value for `make\.result`"):
        flow.typed(decoded)


def test_resume_converts_outputs_collected_before_the_pause() -> None:
    started: list[Flow] = []
    holder: dict[str, JobState] = {}
    ready = threading.Event()

    @routine
    def numbers(n: int) -> Iterator[int]:
        yield from range(n)

    @routine
    def wrap(x: int) -> Total:
        if x == 1:
            ready.wait(10)
            started[0].pause(holder["state"])  # from inside: takes effect after this task
        return Total(x, [x])

    with Flow("typed-resume", max_workers=1) as flow:
        nums, w = numbers(), wrap()
        nums.result >> w.x
    started.append(flow)
    job = flow.start(nums.n(3))
    holder["state"] = job.state
    ready.set()
    paused = JobState.from_bytes(job.wait(10).to_bytes())
    assert paused.status is JobStatus.PAUSED
    assert paused.outputs["wrap.result"] == [
        {"count": 0, "values": [0]},
        {"count": 1, "values": [1]},
    ]
    final = flow.wait(flow.resume(paused), timeout=10)
    assert final.status is JobStatus.COMPLETED
    assert final.outputs["wrap.result"] == [Total(0, [0]), Total(1, [1]), Total(2, [2])]


def test_flow_wide_stats_count_a_paused_and_resumed_job_once(workers: int) -> None:
    flow, s = flows.map_reduce(workers)
    paused = flows.run_paused(flow, s, 12, 5)
    assert paused.status is JobStatus.PAUSED
    work = flow.node("work")
    # A paused job is not finished: nothing is folded into the flow's totals yet.
    assert work.stats().jobs == 0
    state = flow.wait(flow.resume(paused), timeout=30)
    assert state.status is JobStatus.COMPLETED
    # Every item ran exactly once across the pause, and the job counts once.
    assert state.routine_states["work"].activations == 12
    assert (work.stats().activations, work.stats().jobs) == (12, 1)
    assert (flow.node("total").stats().activations, flow.node("total").stats().jobs) == (1, 1)


def test_flow_wide_stats_of_a_job_resumed_from_bytes_in_a_fresh_flow(workers: int) -> None:
    flow, s = flows.map_reduce(workers)
    paused = flows.run_paused(flow, s, 12, 5)
    ran_before = paused.routine_states["work"].activations
    again, _ = flows.map_reduce(workers)
    state = again.wait(again.resume(JobState.from_bytes(paused.to_bytes())), timeout=30)
    assert state.outputs == {"total.result": [flows.expected_total(12)]}
    # The fresh flow's totals take the job's whole counters, including those of `split`,
    # which ran before the pause and never in this flow.
    assert again.node("work").stats().activations == 12
    split_stats = again.node("split").stats()
    assert (split_stats.activations, split_stats.emits, split_stats.jobs) == (1, 12, 1)
    assert ran_before < 12


class _Seen(State):
    count: int = 0
    last: list[int] = msgspec.field(default_factory=list)


@routine
def _count_to(n: int) -> Iterator[int]:
    yield from range(n)


@routine
def _remember(x: int, seen: _Seen) -> int:
    seen.count += 1
    seen.last = [*seen.last, x][-2:]
    return x


def test_per_node_stats_cost_the_garbage_collector_nothing_and_state_still_snapshots(
    workers: int,
) -> None:
    # A job makes one RoutineState per node it runs; they hold counters and snapshot
    # data (which cannot form a cycle), so the cyclic collector does not scan them:
    # half of what a kept short job left it before. User state is unaffected.
    with Flow(max_workers=workers) as flow:
        src, keep = _count_to(name="src"), _remember(name="keep")
        src.result >> keep.x
    state = flow.run(src.n(5))
    assert state.status is JobStatus.COMPLETED
    assert all(not gc.is_tracked(rs) for rs in state.routine_states.values())
    kept = state.routine_states["keep"]
    assert (kept.activations, kept.state) == (5, {"count": 5, "last": [3, 4]})
    again = JobState.from_bytes(state.to_bytes())
    assert again.routine_states["keep"].state == {"count": 5, "last": [3, 4]}
    assert not gc.is_tracked(again.routine_states["keep"])
