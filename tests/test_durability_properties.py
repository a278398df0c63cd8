"""Property tests: snapshots round-trip; a pause anywhere in any DAG changes nothing.

* Random ``JobState`` trees encode to msgpack and JSON and decode unchanged.
* A random DAG of routines (maps, generators, fan-in, a final ``Append``) is paused
  after a random number of tasks, its snapshot goes through bytes, and a freshly built
  copy of the flow resumes it: the outputs equal those of an uninterrupted run. The
  same holds when the job is checkpointed ``every_task`` and "crashes" at a random
  commit (the store's content at that moment is resumed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from routilux import Append, Flow, JobState, JobStatus, MemoryStore, routine
from routilux.job_state import ErrorRecord, PendingTask, RoutineState, SlotBuffer, TaskRecord

# -- random JobStates ----------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_payloads = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_names = st.text(min_size=1, max_size=10)
_times = st.floats(min_value=0, max_value=2e9, allow_nan=False)

_errors = st.builds(
    ErrorRecord,
    node=st.none() | _names,
    type=_names,
    message=st.text(max_size=30),
    traceback=st.text(max_size=30),
    attempt=st.integers(1, 5),
    at=_times,
)
_routine_states = st.builds(
    RoutineState,
    status=st.sampled_from(["idle", "running", "completed", "failed"]),
    activations=st.integers(0, 10**6),
    emits=st.integers(0, 10**6),
    errors=st.integers(0, 100),
    retries=st.integers(0, 100),
    busy_time=_times,
    last_error=st.none() | _errors,
    state=st.dictionaries(st.text(max_size=6), _payloads, max_size=3),
)
_states = st.builds(
    JobState,
    flow_id=_names,
    job_id=_names,
    status=st.sampled_from(list(JobStatus)),
    created_at=_times,
    started_at=st.none() | _times,
    finished_at=st.none() | _times,
    error=st.none() | _errors,
    routine_states=st.dictionaries(_names, _routine_states, max_size=3),
    pending=st.lists(
        st.builds(
            PendingTask,
            node=_names,
            args=st.lists(_payloads, max_size=3),
            attempt=st.integers(1, 5),
        ),
        max_size=3,
    ),
    buffers=st.lists(
        st.builds(
            SlotBuffer,
            node=_names,
            slot=_names,
            values=st.lists(_payloads, max_size=3),
            fresh=st.booleans(),
        ),
        max_size=3,
    ),
    outputs=st.dictionaries(_names, st.lists(_payloads, max_size=3), max_size=3),
    outputs_dropped=st.dictionaries(_names, st.integers(0, 100), max_size=2),
    history=st.lists(st.builds(TaskRecord, _names, _times, _times, st.booleans()), max_size=4),
    history_dropped=st.integers(0, 1000),
    errors=st.lists(_errors, max_size=2),
    shared_data=st.dictionaries(st.text(max_size=6), _payloads, max_size=3),
    shared_log=st.lists(_payloads, max_size=3),
    fingerprint=st.dictionaries(st.text(max_size=6), _payloads, max_size=2),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_states)
def test_random_job_states_round_trip_through_bytes_and_json(state: JobState) -> None:
    assert JobState.from_bytes(state.to_bytes()) == state
    assert JobState.from_json(state.to_json()) == state


# -- random DAGs, paused at random points --------------------------------------------------

_CONTROL: dict[str, Any] = {}
_ROUTINES: dict[tuple[str, int], Any] = {}


def _tick() -> None:
    """Count a task; pause the job when the count reaches the chosen point."""
    ctl = _CONTROL
    if not ctl:
        return
    ctl["ready"].wait()
    with ctl["lock"]:
        ctl["count"] += 1
        hit = ctl["count"] == ctl["pause_at"]
    if hit:
        ctl["flow"].pause(ctl["state"])


def _node_routine(kind: str, salt: int) -> Any:
    key = (kind, salt)
    made = _ROUTINES.get(key)
    if made is not None:
        return made
    if kind == "gen":

        def gen_body(x: int) -> Iterator[int]:
            _tick()
            yield (x * 7 + salt) % 1009
            yield (x * 13 + salt) % 1009

        made = routine(gen_body, name=f"gen{salt}")
    else:

        def map_body(x: int) -> int:
            _tick()
            return (x * 31 + salt) % 1009

        made = routine(map_body, name=f"map{salt}")
    _ROUTINES[key] = made
    return made


@routine
def gather(values: Append[int]) -> list[int]:
    _tick()
    return sorted(values)


Shape = tuple[list[str], list[list[int]]]


@st.composite
def _dags(draw: Callable[..., Any]) -> Shape:
    n = draw(st.integers(2, 6))
    kinds = [draw(st.sampled_from(["map", "gen"])) for _ in range(n)]
    preds: list[list[int]] = [[]]
    for j in range(1, n):
        preds.append(sorted(draw(st.sets(st.integers(0, j - 1), min_size=1, max_size=j))))
    return kinds, preds


def _build(shape: Shape, workers: int) -> tuple[Flow, Any]:
    kinds, preds = shape
    with Flow("dag", max_workers=workers) as flow:
        nodes = [_node_routine(k, i)(name=f"n{i}") for i, k in enumerate(kinds)]
        g = gather()
        has_succ = set()
        for j, ps in enumerate(preds):
            for p in ps:
                nodes[p].result >> nodes[j].x
                has_succ.add(p)
        for i, node in enumerate(nodes):
            if i not in has_succ:
                node.result >> g.values
    return flow, nodes[0]


def _start_with_pause(flow: Flow, entry: Any, seed: int, pause_at: int, **start: Any) -> JobState:
    ready = threading.Event()
    _CONTROL.update(
        ready=ready, lock=threading.Lock(), count=0, pause_at=pause_at, flow=flow, state=None
    )
    try:
        job = flow.start(entry.x(seed), **start)
        _CONTROL["state"] = job.state
        ready.set()
        return job.wait(30)
    finally:
        _CONTROL.clear()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=_dags(),
    seed=st.integers(0, 1000),
    pause_at=st.integers(1, 40),
    workers=st.sampled_from([1, 3]),
)
def test_a_pause_anywhere_then_resume_gives_the_uninterrupted_outputs(
    shape: Shape, seed: int, pause_at: int, workers: int
) -> None:
    flow, entry = _build(shape, workers)
    expected = flow.run(entry.x(seed)).outputs
    assert list(expected) == ["gather.result"]

    state = _start_with_pause(flow, entry, seed, pause_at)
    event(f"paused: {state.status is JobStatus.PAUSED}")
    if state.status is JobStatus.COMPLETED:
        assert state.outputs == expected  # fewer tasks than the pause point
        return
    assert state.status is JobStatus.PAUSED
    again, _ = _build(shape, workers)
    resumed = again.wait(again.resume(JobState.from_bytes(state.to_bytes())), timeout=30)
    assert resumed.status is JobStatus.COMPLETED
    assert resumed.outputs == expected


class _Points(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.points: list[bytes] = []

    def _append(self, job_id: str, record: bytes) -> None:
        super()._append(job_id, record)
        self.points.append(self.load(job_id).to_bytes())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=_dags(),
    seed=st.integers(0, 1000),
    crash_at=st.integers(0, 60),
    workers=st.sampled_from([1, 3]),
)
def test_a_crash_at_any_commit_of_any_dag_recovers_the_uninterrupted_outputs(
    shape: Shape, seed: int, crash_at: int, workers: int
) -> None:
    flow, entry = _build(shape, workers)
    store = _Points()
    expected = flow.run(entry.x(seed), store=store, checkpoint="every_task").outputs
    assert store.points
    blob = store.points[min(crash_at, len(store.points) - 1)]
    again, _ = _build(shape, workers)
    state = JobState.from_bytes(blob)
    if state.status is not JobStatus.COMPLETED:
        state = again.wait(again.resume(state), timeout=30)
    assert state.outputs == expected
