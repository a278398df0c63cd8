"""Flow semantics as a behaviour table, plus the job-level behaviours around it.

Each :class:`Case` lists how to build a flow, the run inputs, the expected terminal
outputs (``state.outputs``) and the expected activations per node. Every case runs
with ``max_workers`` 1 (inline on the dispatcher) and 4 (a thread pool).
"""

from __future__ import annotations

import asyncio
import operator
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import pytest

from routilux import (
    Append,
    Batch,
    Emit,
    Flow,
    Job,
    JobState,
    JobStatus,
    JobTimeoutError,
    Latest,
    Outputs,
    Reduce,
    StateError,
    routine,
)
from routilux.slot import RunInput


class Calls:
    """A thread-safe record of routine calls, for "expected calls" assertions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.log: list[tuple[str, object]] = []

    def hit(self, name: str, value: object = None) -> None:
        with self._lock:
            self.log.append((name, value))

    def values(self, name: str) -> list[object]:
        with self._lock:
            return [v for n, v in self.log if n == name]

    def clear(self) -> None:
        with self._lock:
            self.log.clear()


CALLS = Calls()

# -- routines used by the table ------------------------------------------------------


@routine
def numbers(n: int) -> Iterator[int]:
    """Yield 0..n-1."""
    CALLS.hit("numbers", n)
    yield from range(n)


@routine
def letters(text: str) -> Iterator[str]:
    """Yield each character of ``text``."""
    CALLS.hit("letters", text)
    yield from text


@routine
def double(x: int) -> int:
    CALLS.hit("double", x)
    return x * 2


@routine(concurrency=4)
def square(x: int) -> int:
    CALLS.hit("square", x)
    return x * x


@routine
def pair(a: int, b: str) -> tuple[int, str]:
    CALLS.hit("pair", (a, b))
    return (a, b)


@routine
def total(values: Append[int]) -> int:
    CALLS.hit("total", sorted(values))
    return sum(values)


@routine
def sorted_all(values: Append[int]) -> list[int]:
    CALLS.hit("sorted_all", list(values))
    return sorted(values)


@routine
def chunks(values: Annotated[Append[int], Batch(3)]) -> list[int]:
    CALLS.hit("chunks", list(values))
    return list(values)


@routine
def scale(x: int, factor: Latest[int]) -> int:
    CALLS.hit("scale", (x, factor))
    return x * factor


@routine
def fold_sum(x: Annotated[int, Reduce(operator.add)]) -> int:
    CALLS.hit("fold_sum", x)
    return x


def _push(acc: list[int], value: int) -> list[int]:
    return [*acc, value]


# The slot type of a Reduce slot is the accumulator's (mypy only sees that type), so a
# fold that collects ints into a list declares Any.
@routine
def fold_list(x: Annotated[Any, Reduce(_push, initial=[])]) -> list[int]:
    CALLS.hit("fold_list", x)
    return list(x)


@routine
def fold_digits(x: Annotated[int, Reduce(lambda acc, v: acc * 10 + v, initial=7)]) -> int:
    CALLS.hit("fold_digits", x)
    return x


class Parity(Outputs):
    even: Emit[int]
    odd: Emit[int]
    big: Emit[int]


@routine
def classify(x: int, out: Parity) -> None:
    """Emit on ``even`` for even numbers and on ``big`` above 3: zero, one or two emits."""
    CALLS.hit("classify", x)
    if x % 2 == 0:
        out.even(x)
    if x > 3:
        out.big(x)


@routine
async def fetch_async(x: int) -> int:
    CALLS.hit("fetch_async", x)
    await asyncio.sleep(0)
    return x + 100


@routine
async def stream_async(n: int) -> AsyncIterator[int]:
    CALLS.hit("stream_async", n)
    for i in range(n):
        await asyncio.sleep(0)
        yield i * 10


class Step(Outputs):
    again: Emit[int]
    done: Emit[int]


@routine
def countdown(n: int, out: Step) -> None:
    """Loop on ``again`` until ``n`` reaches 0, then emit ``done``."""
    CALLS.hit("countdown", n)
    if n > 0:
        out.again(n - 1)
    else:
        out.done(n)


@routine
def shout(text: str) -> str:
    CALLS.hit("shout", text)
    return text.upper()


def as_text(value: int) -> str:
    return f"#{value}"


@routine
def offset(x: int, by: int = 10) -> int:
    CALLS.hit("offset", (x, by))
    return x + by


@routine
def ident(x: int) -> int:
    CALLS.hit("ident", x)
    return x


# -- the table ----------------------------------------------------------------------

Built = tuple[Flow, list[RunInput]]


@dataclass
class Case:
    """One row: build the flow, run it, compare outputs and activations.

    Attributes:
        build: ``build(max_workers) -> (flow, run inputs)``.
        outputs: Expected ``state.outputs``.
        calls: Expected activations per node name (nodes not listed: zero).
        ordered: Whether output order is part of the contract at every worker count;
            otherwise, with a pool, each output list is compared as a multiset.
        flow_kw: Extra ``Flow(...)`` arguments.
        check: Further assertions on the final state.
    """

    build: Callable[[Flow], list[RunInput]]
    outputs: dict[str, list[Any]]
    calls: dict[str, int]
    ordered: bool = True
    flow_kw: dict[str, Any] = field(default_factory=dict)
    check: Callable[[JobState], None] | None = None


def _streaming(flow: Flow) -> list[RunInput]:
    src, d = numbers(), double()
    src.result >> d.x
    return [src.n(5)]


def _join(flow: Flow) -> list[RunInput]:
    a, b, j = numbers(), letters(), pair()
    a.result >> j.a
    b.result >> j.b
    return [a.n(3), b.text("xyz")]


def _join_leftover(flow: Flow) -> list[RunInput]:
    a, b, j = numbers(), letters(), pair()
    a.result >> j.a
    b.result >> j.b
    return [a.n(4), b.text("xy")]


def _check_join_leftover(state: JobState) -> None:
    # The unmatched values stay in the slot buffers of the completed job, in order.
    assert [(b.node, b.slot, b.values) for b in state.buffers] == [("pair", "a", [2, 3])]


def _map_reduce(flow: Flow) -> list[RunInput]:
    src, sq, tot = numbers(), square(), total()
    src.result >> sq.x
    sq.result >> tot.values
    return [src.n(6)]


def _append_fan_in(flow: Flow) -> list[RunInput]:
    # Two producers feed one Append slot: it fires once, after both are quiescent.
    a, b, d, s = numbers(), numbers(name="more"), double(), sorted_all()
    a.result >> d.x
    d.result >> s.values
    b.result >> s.values
    return [a.n(3), b.n(2)]


def _batch(flow: Flow) -> list[RunInput]:
    src, c = numbers(), chunks()
    src.result >> c.values
    return [src.n(7)]


def _latest(flow: Flow) -> list[RunInput]:
    src, s = numbers(), scale()
    src.result >> s.x
    return [s.factor(2), s.factor(3), src.n(4)]


def _reduce(flow: Flow) -> list[RunInput]:
    src, plain, seeded, listed = numbers(), fold_sum(), fold_digits(), fold_list()
    src.result >> plain.x
    src.result >> seeded.x
    src.result >> listed.x
    return [src.n(5)]


def _routing(flow: Flow) -> list[RunInput]:
    src, c = numbers(), classify()
    src.result >> c.x
    return [src.n(6)]


def _routing_downstream(flow: Flow) -> list[RunInput]:
    src, c, d, i = numbers(), classify(), double(), ident()
    src.result >> c.x
    c.even >> d.x
    c.big >> i.x
    return [src.n(6)]


def _async(flow: Flow) -> list[RunInput]:
    s, f = stream_async(), fetch_async()
    s.result >> f.x
    return [s.n(3)]


def _loop(flow: Flow) -> list[RunInput]:
    c = countdown()
    c.again >> c.n
    return [c.n(3)]


def _loop_through_two(flow: Flow) -> list[RunInput]:
    # countdown -> ident -> countdown: a cycle of two nodes.
    c, i = countdown(), ident()
    c.again >> i.x
    i.result >> c.n
    return [c.n(2)]


def _map(flow: Flow) -> list[RunInput]:
    src, s = numbers(), shout()
    src.result.map(as_text) >> s.text
    src.result.map(as_text).map(lambda t: t + "!") >> s.text
    return [src.n(2)]


def _optional_default(flow: Flow) -> list[RunInput]:
    src, o = numbers(), offset()
    src.result >> o.x
    return [src.n(3)]


def _optional_given(flow: Flow) -> list[RunInput]:
    # A delivered value is used once (it is a queue slot); later activations use the default.
    src, o = numbers(), offset()
    src.result >> o.x
    return [o.by(100), src.n(3)]


def _terminal_bounded(flow: Flow) -> list[RunInput]:
    src = numbers()
    return [src.n(5)]


def _check_dropped(state: JobState) -> None:
    assert state.outputs_dropped == {"numbers.result": 2}


def _many_to_many(flow: Flow) -> list[RunInput]:
    a, b = numbers(), numbers(name="other")
    d, i = double(), ident()
    for ev in (a.result, b.result):
        ev >> d.x
        ev >> i.x
    return [a.n(2), b.n(3)]


def _reuse(flow: Flow) -> list[RunInput]:
    first, second, named = double(), double(), double(name="last")
    assert (first.node_name, second.node_name, named.node_name) == ("double", "double_2", "last")
    first.result >> second.x
    second.result >> named.x
    return [first.x(1), first.x(5)]


def _multi_inputs(flow: Flow) -> list[RunInput]:
    # Several run inputs to the same slot are delivered in the order given.
    d = double()
    return [d.x(3), d.x(1), d.x(2)]


CASES: dict[str, Case] = {
    "streaming": Case(_streaming, {"double.result": [0, 2, 4, 6, 8]}, {"numbers": 1, "double": 5}),
    "join zips in arrival order": Case(
        _join,
        {"pair.result": [(0, "x"), (1, "y"), (2, "z")]},
        {"numbers": 1, "letters": 1, "pair": 3},
    ),
    "join keeps unmatched values buffered": Case(
        _join_leftover,
        {"pair.result": [(0, "x"), (1, "y")]},
        {"numbers": 1, "letters": 1, "pair": 2},
        check=_check_join_leftover,
    ),
    "map-reduce fires Append once": Case(
        _map_reduce, {"total.result": [55]}, {"numbers": 1, "square": 6, "total": 1}
    ),
    "Append fan-in from two producers": Case(
        _append_fan_in,
        {"sorted_all.result": [[0, 0, 1, 2, 4]]},
        {"numbers": 1, "more": 1, "double": 3, "sorted_all": 1},
    ),
    "Append with Batch(3)": Case(
        _batch, {"chunks.result": [[0, 1, 2], [3, 4, 5], [6]]}, {"numbers": 1, "chunks": 3}
    ),
    "Latest overrides and sticks": Case(
        _latest, {"scale.result": [0, 3, 6, 9]}, {"numbers": 1, "scale": 4}
    ),
    "Reduce with and without initial": Case(
        _reduce,
        {
            "fold_sum.result": [10],
            "fold_digits.result": [701234],
            "fold_list.result": [[0, 1, 2, 3, 4]],
        },
        {"numbers": 1, "fold_sum": 1, "fold_digits": 1, "fold_list": 1},
    ),
    "Outputs routing, zero or more emits": Case(
        _routing,
        {"classify.even": [0, 2, 4], "classify.big": [4, 5]},
        {"numbers": 1, "classify": 6},
    ),
    "Outputs routing to other nodes": Case(
        _routing_downstream,
        {"double.result": [0, 4, 8], "ident.result": [4, 5]},
        {"numbers": 1, "classify": 6, "double": 3, "ident": 2},
    ),
    "async generator into async def": Case(
        _async, {"fetch_async.result": [100, 110, 120]}, {"stream_async": 1, "fetch_async": 3}
    ),
    "loop until it stops emitting": Case(_loop, {"countdown.done": [0]}, {"countdown": 4}),
    "loop through two nodes": Case(
        _loop_through_two, {"countdown.done": [0]}, {"countdown": 3, "ident": 2}
    ),
    "map transforms on the edge": Case(
        _map,
        {"shout.result": ["#0", "#0!", "#1", "#1!"]},
        {"numbers": 1, "shout": 4},
        ordered=False,
    ),
    "optional slot uses its default": Case(
        _optional_default, {"offset.result": [10, 11, 12]}, {"numbers": 1, "offset": 3}
    ),
    "optional slot uses a delivered value once": Case(
        _optional_given, {"offset.result": [100, 11, 12]}, {"numbers": 1, "offset": 3}
    ),
    "terminal outputs are bounded": Case(
        _terminal_bounded,
        {"numbers.result": [0, 1, 2]},
        {"numbers": 1},
        flow_kw={"output_limit": 3},
        check=_check_dropped,
    ),
    "many-to-many": Case(
        _many_to_many,
        {"double.result": [0, 2, 0, 2, 4], "ident.result": [0, 1, 0, 1, 2]},
        {"numbers": 1, "other": 1, "double": 5, "ident": 5},
        ordered=False,
    ),
    "one routine backs several nodes": Case(
        _reuse,
        {"last.result": [8, 40]},
        {"double": 2, "double_2": 2, "last": 2},
    ),
    "several inputs to one slot keep their order": Case(
        _multi_inputs, {"double.result": [6, 2, 4]}, {"double": 3}
    ),
}


def _multiset(values: list[Any]) -> Counter[str]:
    return Counter(repr(v) for v in values)


def _run(flow: Flow, inputs: list[RunInput], entry: str) -> JobState:
    """Run a job through one of the three paths a job can take through the dispatcher."""
    if entry == "run":  # the caller's thread dispatches
        return flow.run(*inputs)
    if entry == "start":  # a dispatcher thread runs it; wait with a bound
        return flow.start(*inputs).wait(10)
    # With a job timeout, tasks run where the deadline can interrupt the wait.
    return flow.run(*inputs, timeout=10)


@pytest.mark.parametrize("entry", ["run", "start", "run-timeout"])
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_behaviour_table(case: Case, workers: int, entry: str) -> None:
    CALLS.clear()
    with Flow("table", max_workers=workers, **case.flow_kw) as flow:
        inputs = case.build(flow)
    flow.validate(*inputs)
    state = _run(flow, inputs, entry)

    assert state.status is JobStatus.COMPLETED, state.error
    assert state.error is None
    assert state.errors == []
    if case.ordered or workers == 1:
        assert state.outputs == case.outputs
    else:
        assert state.outputs.keys() == case.outputs.keys()
        for key, expected in case.outputs.items():
            assert _multiset(state.outputs[key]) == _multiset(expected), key
    # Nodes that never ran may have no entry in routine_states.
    activations = {name: rs.activations for name, rs in state.routine_states.items()}
    expected_calls = {name: case.calls.get(name, 0) for name in flow.nodes}
    assert {n: a for n, a in activations.items() if a} == {
        n: c for n, c in expected_calls.items() if c
    }
    assert {name: flow.nodes[name].stats(state).activations for name in flow.nodes} == (
        expected_calls
    )
    # The routines' own record agrees with the engine's counters.
    assert len(CALLS.log) == sum(expected_calls.values())
    if case.check is not None:
        case.check(state)


# -- details of single behaviours ---------------------------------------------------


def test_append_sees_every_value_once_with_a_pool() -> None:
    CALLS.clear()
    with Flow(max_workers=4) as flow:
        src, sq, tot = numbers(), square(), total()
        src.result >> sq.x
        sq.result >> tot.values
    state = flow.run(src.n(40), timeout=10)
    assert state.status is JobStatus.COMPLETED
    assert CALLS.values("total") == [sorted(i * i for i in range(40))]
    assert sorted(CALLS.values("square")) == list(range(40))  # type: ignore[type-var]


def test_append_gets_a_list_subclass_it_may_keep() -> None:
    kept: list[list[int]] = []

    @routine
    def keep(values: Append[int]) -> None:
        kept.append(values)

    with Flow() as flow:
        src, k = numbers(), keep()
        src.result >> k.values
    flow.run(src.n(3))
    flow.run(src.n(2))
    assert kept == [[0, 1, 2], [0, 1]]
    assert all(isinstance(v, list) for v in kept)


def test_latest_value_stays_across_activations_of_a_stream(workers: int) -> None:
    CALLS.clear()
    with Flow(max_workers=workers) as flow:
        src, s = numbers(), scale()
        src.result >> s.x
    state = flow.run(s.factor(5), src.n(3))
    assert state.outputs == {"scale.result": [0, 5, 10]}
    # Once the factor was used it stays buffered: the completed job still holds it.
    assert [(b.node, b.slot, b.values) for b in state.buffers] == [("scale", "factor", [5])]


def test_generator_emits_as_it_yields() -> None:
    # The consumer of the first item runs while the generator is still suspended.
    first_seen = threading.Event()

    @routine
    def slow_gen(n: int) -> Iterator[int]:
        yield 1
        assert first_seen.wait(10), "the first item was not delivered while the generator ran"
        yield 2

    @routine
    def see(x: int) -> int:
        first_seen.set()
        return x

    with Flow(max_workers=4) as flow:
        g, s = slow_gen(), see()
        g.result >> s.x
    state = flow.run(g.n(0), timeout=10)
    assert state.status is JobStatus.COMPLETED, state.error
    assert state.outputs == {"see.result": [1, 2]}


def test_generator_values_are_delivered_before_it_returns(workers: int) -> None:
    # Each yield is delivered as it happens: a failure after two yields keeps them.
    @routine
    def half(n: int) -> Iterator[int]:
        yield 1
        yield 2
        msg = "half-way"
        raise RuntimeError(msg)

    with Flow(max_workers=workers) as flow:
        h = half()
    state = flow.run(h.n(0))
    assert state.status is JobStatus.FAILED
    assert state.outputs == {"half.result": [1, 2]}
    assert state.routine_states["half"].emits == 2


def test_async_routine_in_pool_runs_on_worker_loops() -> None:
    CALLS.clear()
    with Flow(max_workers=4) as flow:
        src, f = numbers(), fetch_async()
        src.result >> f.x
    state = flow.run(src.n(20), timeout=10)
    assert sorted(state.outputs["fetch_async.result"]) == [100 + i for i in range(20)]


def test_map_with_typed_function_changes_the_event_type() -> None:
    with Flow() as flow:
        src = numbers()
        mapped = src.result.map(as_text)
    assert mapped.type is str
    assert src.result.type is int
    assert flow.connections == []  # map alone connects nothing


def test_terminal_outputs_of_events_with_connections_are_not_collected(workers: int) -> None:
    with Flow(max_workers=workers) as flow:
        src, d = numbers(), double()
        src.result >> d.x
    state = flow.run(src.n(2))
    assert "numbers.result" not in state.outputs
    assert state.output("double.result") == [0, 2]
    with pytest.raises(
        KeyError, match=r"has no output 'numbers.result' \(outputs: double.result\)"
    ):
        state.output("numbers.result")


# -- jobs: start, concurrent jobs, concurrency, fairness ------------------------------


def test_start_returns_at_once_and_job_handle_works(workers: int) -> None:
    release = threading.Event()
    entered = threading.Event()

    @routine
    def gate(x: int) -> int:
        entered.set()
        assert release.wait(10)
        return x + 1

    with Flow(max_workers=workers) as flow:
        g = gate()
    job = flow.start(g.x(1))
    assert isinstance(job, Job)
    assert entered.wait(10)
    assert not job.done()
    assert job.status is JobStatus.RUNNING
    assert job.state.status is JobStatus.RUNNING
    with pytest.raises(JobTimeoutError, match=r"^Job \w+ still running after waiting 0.01 s$"):
        job.wait(0.01)
    release.set()
    state = job.wait(10)
    assert state is job.state
    assert job.done()
    assert state.status is JobStatus.COMPLETED
    assert job.result() == [2]
    assert job.result("gate.result") == [2]


def test_job_result_errors(workers: int) -> None:
    @routine
    def two(x: int, out: Parity) -> None:
        out.even(x)
        out.odd(x + 1)

    with Flow(max_workers=workers) as flow:
        t = two()
    job = flow.start(t.x(2))
    with pytest.raises(KeyError, match=r"has 2 outputs \(two.even, two.odd\); pass key="):
        job.result()
    assert job.result("two.odd") == [3]

    @routine
    def bad(x: int) -> int:
        msg = f"no {x}"
        raise ValueError(msg)

    with Flow(max_workers=workers) as flow2:
        b = bad()
    job = flow2.start(b.x(7))
    with pytest.raises(StateError, match=r"^Job \w+ is failed: ValueError in `bad`: no 7$"):
        job.result()


def test_concurrent_jobs_share_nothing(workers: int) -> None:
    CALLS.clear()
    with Flow(max_workers=workers) as flow:
        src, sq, tot = numbers(), square(), total()
        src.result >> sq.x
        sq.result >> tot.values
    jobs = [flow.start(src.n(n)) for n in (3, 5, 8, 1)]
    states = [job.wait(10) for job in jobs]
    assert [s.outputs for s in states] == [
        {"total.result": [sum(i * i for i in range(n))]} for n in (3, 5, 8, 1)
    ]
    assert [s.routine_states["square"].activations for s in states] == [3, 5, 8, 1]
    assert [sq.stats(s).activations for s in states] == [3, 5, 8, 1]
    assert len({s.job_id for s in states}) == 4
    # The flow-wide stats sum every finished job.
    assert sq.stats().activations == 17
    assert sq.stats().jobs == 4


def test_concurrent_jobs_run_at_the_same_time_with_a_pool() -> None:
    # Three jobs of one flow meet at a barrier inside the same node: each job's node
    # has its own activation limit.
    meet = threading.Barrier(3, timeout=10)

    @routine
    def rendezvous(x: int) -> int:
        meet.wait()
        return x

    with Flow(max_workers=4) as flow:
        r = rendezvous()
    jobs = [flow.start(r.x(i)) for i in range(3)]
    states = [job.wait(10) for job in jobs]
    assert [s.status for s in states] == [JobStatus.COMPLETED] * 3
    assert [s.outputs for s in states] == [{"rendezvous.result": [i]} for i in range(3)]


class _Overlap:
    """Counts simultaneous entries into a routine."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.active -= 1


def test_node_runs_one_activation_of_a_job_at_a_time() -> None:
    overlap = _Overlap()
    entered = threading.Event()
    release = threading.Event()

    @routine
    def serial(x: int) -> int:
        with overlap:
            entered.set()
            assert release.wait(10)
        return x

    with Flow(max_workers=4) as flow:
        s = serial()
    job = flow.start(*(s.x(i) for i in range(5)))
    assert entered.wait(10)
    # While the first activation is blocked, the dispatcher has formed no second one:
    # one activation is pending (the running one) and four values wait in the buffer.
    snap = job.state.snapshot()
    assert [p.args for p in snap.pending] == [[0]]
    assert [(b.slot, b.values) for b in snap.buffers] == [("x", [1, 2, 3, 4])]
    release.set()
    state = job.wait(10)
    assert state.outputs == {"serial.result": [0, 1, 2, 3, 4]}
    assert overlap.peak == 1


def test_concurrency_n_runs_n_activations_of_a_job_at_once() -> None:
    overlap = _Overlap()
    meet = threading.Barrier(3, timeout=10)

    @routine(concurrency=3)
    def wide(x: int) -> int:
        with overlap:
            meet.wait()  # passes only when three activations of this job are inside
        return x

    with Flow(max_workers=4) as flow:
        w = wide()
    job = flow.start(*(w.x(i) for i in range(6)))
    state = job.wait(10)
    assert state.status is JobStatus.COMPLETED, state.error
    assert sorted(state.outputs["wide.result"]) == list(range(6))
    assert overlap.peak == 3  # never the pool's 4


def test_short_job_overtakes_long_job_inline() -> None:
    # max_workers=1: a short job started while a long one runs finishes first, because
    # the dispatcher takes turns between jobs instead of draining one job's queue.
    started = threading.Event()
    short_submitted = threading.Event()
    finished: list[str] = []

    @routine
    def spin(n: int, out: Step) -> None:
        if n == 4999:
            started.set()
            assert short_submitted.wait(10)
        if n > 0:
            out.again(n - 1)
        else:
            finished.append("long")

    @routine
    def quick(x: int) -> int:
        return x + 1

    @routine
    def note(x: int) -> None:
        finished.append("short")

    with Flow(max_workers=1) as flow:
        s, q, q2, nt = spin(), quick(), quick(), note()
        s.again >> s.n
        q.result >> q2.x
        q2.result >> nt.x
    long_job = flow.start(s.n(5000))
    assert started.wait(10)
    short_job = flow.start(q.x(1))
    short_submitted.set()
    assert short_job.wait(10).status is JobStatus.COMPLETED
    assert long_job.wait(10).status is JobStatus.COMPLETED
    assert finished == ["short", "long"]
    assert spin.spec.name == "spin"
    assert long_job.state.routine_states["spin"].activations == 5001


# -- history and stats --------------------------------------------------------------


def test_history_is_bounded_and_counts_dropped(workers: int) -> None:
    with Flow(max_workers=workers, history_limit=5) as flow:
        src, d = numbers(), double()
        src.result >> d.x
    state = flow.run(src.n(20))
    assert len(state.history) == 5
    assert state.history_dropped == 16  # 21 activations, 5 kept
    assert [r.node for r in state.history] == ["double"] * 5
    assert all(r.ok for r in state.history)
    assert all(r.duration >= 0 for r in state.history)


def test_history_keeps_every_record_under_the_limit(workers: int) -> None:
    with Flow(max_workers=workers) as flow:
        src, d = numbers(), double()
        src.result >> d.x
    state = flow.run(src.n(3))
    assert [r.node for r in state.history] == ["numbers", "double", "double", "double"]
    assert state.history_dropped == 0
    starts = [r.started_at for r in state.history]
    assert state.started_at is not None
    assert state.finished_at is not None
    assert state.started_at - 1 <= min(starts) <= max(starts) <= state.finished_at + 1


def test_per_routine_stats(workers: int) -> None:
    CALLS.clear()
    with Flow(max_workers=workers) as flow:
        src, c = numbers(), classify()
        src.result >> c.x
    state = flow.run(src.n(6))
    rs = state.routine_states
    assert (rs["numbers"].activations, rs["numbers"].emits, rs["numbers"].errors) == (1, 6, 0)
    # classify emitted 0:even 2:even 4:even+big 5:big = 5 values.
    assert (rs["classify"].activations, rs["classify"].emits, rs["classify"].errors) == (6, 5, 0)
    assert rs["classify"].busy_time > 0
    stats = c.stats(state)
    assert (stats.activations, stats.emits, stats.errors, stats.jobs) == (6, 5, 0, 1)
    assert stats.busy_time == rs["classify"].busy_time
    assert c.stats(JobState(flow_id="x", job_id="y")).activations == 0


# -- failures and timeouts ----------------------------------------------------------


@routine
def explode(x: int) -> int:
    if x == 3:
        msg = f"cannot take {x}"
        raise ValueError(msg)
    return x


def test_failing_routine_fails_its_job(workers: int) -> None:
    with Flow(max_workers=workers) as flow:
        src, e = numbers(), explode()
        src.result >> e.x
    state = flow.run(src.n(5), timeout=10)
    assert state.status is JobStatus.FAILED
    assert state.finished_at is not None
    err = state.error
    assert err is not None
    assert (err.node, err.type, err.message) == ("explode", "ValueError", "cannot take 3")
    assert "Traceback (most recent call last)" in err.traceback
    assert "in explode" in err.traceback
    assert err.traceback.rstrip().endswith("ValueError: cannot take 3")
    assert state.errors == [err]
    assert state.routine_states["explode"].errors == 1
    assert state.routine_states["explode"].last_error == err
    assert e.stats(state).errors == 1
    # The failed record is in the bounded history too.
    assert any(r.node == "explode" and not r.ok for r in state.history)


def test_failed_job_leaves_other_jobs_alone(workers: int) -> None:
    with Flow(max_workers=workers) as flow:
        src, e = numbers(), explode()
        src.result >> e.x
    jobs = [flow.start(src.n(n)) for n in (2, 5, 3, 4)]
    states = [j.wait(10) for j in jobs]
    assert [s.status for s in states] == [
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.COMPLETED,
        JobStatus.FAILED,
    ]
    assert states[0].outputs == {"explode.result": [0, 1]}
    assert states[2].outputs == {"explode.result": [0, 1, 2]}
    assert [s.error is None for s in states] == [True, False, True, False]


def test_failure_while_another_job_is_blocked() -> None:
    release = threading.Event()
    entered = threading.Event()

    @routine
    def hold(x: int) -> int:
        entered.set()
        assert release.wait(10)
        return x

    with Flow(max_workers=4) as flow:
        h, e = hold(), explode()
    held = flow.start(h.x(1))
    assert entered.wait(10)
    failed = flow.run(e.x(3), timeout=10)
    assert failed.status is JobStatus.FAILED
    assert not held.done()
    release.set()
    assert held.wait(10).outputs == {"hold.result": [1]}


def test_job_timeout_fails_a_blocked_job(workers: int) -> None:
    release = threading.Event()

    @routine
    def stuck(x: int) -> int:
        release.wait(30)
        return x

    with Flow(max_workers=workers) as flow:
        s = stuck()
    try:
        t0 = time.perf_counter()
        state = flow.run(s.x(1), timeout=0.2)
        elapsed = time.perf_counter() - t0
    finally:
        release.set()
    assert state.status is JobStatus.FAILED
    assert state.error is not None
    assert state.error.type == "JobTimeoutError"
    assert state.error.message == f"Job {state.job_id} ran past its timeout of 0.2 s"
    assert state.error.node is None
    assert elapsed < 5  # returned at the deadline, not when the routine let go
    assert "stuck.result" not in state.outputs


def test_run_with_timeout_returns_completed_state_when_fast(workers: int) -> None:
    with Flow(max_workers=workers) as flow:
        d = double()
    state = flow.run(d.x(2), timeout=10)
    assert state.status is JobStatus.COMPLETED
    assert state.outputs == {"double.result": [4]}


def test_failing_map_transform_fails_the_job(workers: int) -> None:
    def picky(v: int) -> int:
        if v == 2:
            msg = "two is not allowed"
            raise KeyError(msg)
        return v

    with Flow(max_workers=workers) as flow:
        src, d = numbers(), double()
        src.result.map(picky) >> d.x
    state = flow.run(src.n(4), timeout=10)
    assert state.status is JobStatus.FAILED
    assert state.error is not None
    # The transform runs as part of the emitting node's delivery.
    assert (state.error.node, state.error.type) == ("numbers", "KeyError")
    assert state.error.message == "'two is not allowed'"
    assert "in picky" in state.error.traceback


def test_failing_map_on_a_return_value_fails_the_job_and_keeps_a_sound_state(
    workers: int,
) -> None:
    # A function routine's return value is emitted when its task ends (in pool mode,
    # together with the task's completion): a transform that raises there still fails
    # the job, names the emitting node, and leaves a state that round-trips.
    def picky(v: int) -> int:
        if v == 4:
            msg = "four is not allowed"
            raise ValueError(msg)
        return v

    with Flow(max_workers=workers) as flow:
        d, after = double(name="d"), double(name="after")
        d.result.map(picky) >> after.x
    ok = flow.run(d.x(1))
    assert ok.status is JobStatus.COMPLETED
    assert ok.outputs == {"after.result": [4]}

    state = flow.run(d.x(2))
    assert state.status is JobStatus.FAILED
    assert state.error is not None
    assert (state.error.node, state.error.type) == ("d", "ValueError")
    assert state.error.message == "four is not allowed"
    assert state.routine_states["d"].activations == 1
    assert "after" not in state.outputs
    again = JobState.from_bytes(state.to_bytes())
    assert again.status is JobStatus.FAILED
    assert again.error == state.error


def test_failing_async_routine_fails_the_job(workers: int) -> None:
    @routine
    async def sour(x: int) -> int:
        await asyncio.sleep(0)
        msg = f"sour {x}"
        raise RuntimeError(msg)

    with Flow(max_workers=workers) as flow:
        s = sour()
    state = flow.run(s.x(1), timeout=10)
    assert state.status is JobStatus.FAILED
    assert state.error is not None
    assert (state.error.node, state.error.type, state.error.message) == (
        "sour",
        "RuntimeError",
        "sour 1",
    )


def test_failed_job_keeps_unrun_work_as_pending(workers: int) -> None:
    with Flow(max_workers=workers) as flow:
        e = explode()
    state = flow.run(e.x(3), e.x(4), timeout=10)
    assert state.status is JobStatus.FAILED
    # The failed activation is pending (for a resume); the value behind it is kept too.
    assert [(p.node, p.args) for p in state.pending][:1] == [("explode", [3])]
    kept = [p.args[0] for p in state.pending[1:]] + [v for b in state.buffers for v in b.values]
    assert kept == [4]


class Late(Outputs):
    late: Emit[int]


def test_job_timeout_keeps_the_abandoned_activation_pending(workers: int) -> None:
    release = threading.Event()
    emitted = threading.Event()

    @routine
    def stuck(x: int, out: Late) -> None:
        if x == 7:
            release.wait(30)
        out.late(x)
        if x == 7:
            emitted.set()

    with Flow(max_workers=workers) as flow:
        s = stuck()
    try:
        state = flow.run(s.x(7), timeout=0.1)
    finally:
        release.set()
    assert state.status is JobStatus.FAILED
    assert [(p.node, p.args) for p in state.pending] == [("stuck", [7])]
    # The abandoned activation's late emit (posted before `emitted`, so handled before the
    # next job starts) does not reach the finished job.
    assert emitted.wait(10)
    assert flow.run(s.x(1), timeout=10).outputs == {"stuck.late": [1]}
    assert state.outputs == {}
    assert state.routine_states["stuck"].emits == 0


def _fragile_fold(acc: int, value: int) -> int:
    if value == 2:
        msg = f"cannot fold {value} into {acc}"
        raise ArithmeticError(msg)
    return acc + value


@routine
def fragile(x: Annotated[int, Reduce(_fragile_fold, initial=0)]) -> int:
    return x


@pytest.mark.parametrize("via", ["stream", "input"])
def test_failing_reduce_fold_fails_the_job_at_the_reducing_node(workers: int, via: str) -> None:
    with Flow(max_workers=workers) as flow:
        src, f = numbers(), fragile()
        src.result >> f.x
    inputs = [src.n(4)] if via == "stream" else [f.x(1), f.x(2), f.x(3)]
    state = flow.run(*inputs, timeout=10)
    assert state.status is JobStatus.FAILED
    assert state.error is not None
    # The fold is declared on `fragile`'s slot, so the error is `fragile`'s.
    assert (state.error.node, state.error.type, state.error.message) == (
        "fragile",
        "ArithmeticError",
        "cannot fold 2 into 1",
    )
    assert state.routine_states["fragile"].errors == 1
    assert f.stats(state).activations == 0
    assert "fragile.result" not in state.outputs


def test_iterative_map_reduce_rounds_through_a_cycle(workers: int) -> None:
    # numbers -> square -> total (Append) -> decide -> numbers ...: total fires once per
    # round, each time its upstream (which includes itself, via the cycle) is quiescent.
    class Decide(Outputs):
        more: Emit[int]
        done: Emit[int]

    @routine
    def decide(t: int, out: Decide) -> None:
        (out.more if t < 100 else out.done)(t)

    CALLS.clear()
    with Flow(max_workers=workers) as flow:
        src, sq, tot, d = numbers(), square(), total(), decide()
        src.result >> sq.x
        sq.result >> tot.values
        tot.result >> d.t
        d.more.map(lambda t: t // 2 + 2) >> src.n
    state = flow.run(src.n(3), timeout=10)
    assert state.status is JobStatus.COMPLETED, state.error
    # Rounds: n=3 -> 5; n=4 -> 14; n=9 -> 204 (done).
    assert CALLS.values("total") == [[0, 1, 4], [0, 1, 4, 9], [i * i for i in range(9)]]
    assert state.outputs == {"decide.done": [204]}
    assert tot.stats(state).activations == 3


def test_batch_exact_multiple_fires_no_empty_batch(workers: int) -> None:
    CALLS.clear()
    with Flow(max_workers=workers) as flow:
        src, c = numbers(), chunks()
        src.result >> c.values
    state = flow.run(src.n(6), timeout=10)
    assert state.outputs == {"chunks.result": [[0, 1, 2], [3, 4, 5]]}
    assert c.stats(state).activations == 2


def test_batch_from_a_parallel_upstream_sees_every_value_once(workers: int) -> None:
    CALLS.clear()
    with Flow(max_workers=workers) as flow:
        src, sq, c = numbers(), square(), chunks()
        src.result >> sq.x
        sq.result >> c.values
    state = flow.run(src.n(10), timeout=10)
    batches = state.outputs["chunks.result"]
    assert sorted(v for b in batches for v in b) == [i * i for i in range(10)]
    # Full batches until the upstream is quiescent, then the rest.
    assert sorted(len(b) for b in batches) == [1, 3, 3, 3]


def test_append_that_receives_nothing_does_not_fire(workers: int) -> None:
    CALLS.clear()
    with Flow(max_workers=workers) as flow:
        src, tot = numbers(), total()
        src.result >> tot.values
    state = flow.run(src.n(0), timeout=10)
    assert state.status is JobStatus.COMPLETED
    assert state.outputs == {}
    assert tot.stats(state).activations == 0


def test_run_without_inputs_completes_at_once(workers: int) -> None:
    with Flow(max_workers=workers) as flow:
        numbers()
    state = flow.run(timeout=10)
    assert state.status is JobStatus.COMPLETED
    assert state.outputs == {}
    assert state.history == []


def test_run_called_from_async_code_runs_async_routines(workers: int) -> None:
    # flow.run inside a coroutine: the calling thread already runs an event loop.
    CALLS.clear()
    with Flow(max_workers=workers) as flow:
        s, f = stream_async(), fetch_async()
        s.result >> f.x

    async def caller() -> JobState:
        return flow.run(s.n(3))

    state = asyncio.run(caller())
    assert state.status is JobStatus.COMPLETED, state.error
    assert sorted(state.outputs["fetch_async.result"]) == [100, 110, 120]


def test_late_latest_value_releases_buffered_queue_values(workers: int) -> None:
    # scale fires only when both slots are ready: x values wait for the first factor.
    CALLS.clear()
    with Flow(max_workers=workers) as flow:
        src, i, s = numbers(), ident(), scale()
        src.result >> s.x
        i.result >> s.factor
    state = flow.run(src.n(3), i.x(5), timeout=10)
    assert state.status is JobStatus.COMPLETED
    assert sorted(state.outputs["scale.result"]) == [0, 5, 10]


def test_flow_execution_timeout_is_the_default_job_timeout(workers: int) -> None:
    release = threading.Event()

    @routine
    def stuck(x: int) -> int:
        release.wait(30)
        return x

    with Flow(max_workers=workers, execution_timeout=0.1) as flow:
        s = stuck()
    try:
        state = flow.start(s.x(1)).wait(10)
    finally:
        release.set()
    assert state.status is JobStatus.FAILED
    assert state.error is not None
    assert state.error.type == "JobTimeoutError"
    assert state.error.message == f"Job {state.job_id} ran past its timeout of 0.1 s"


def test_jobs_after_a_timed_out_job_still_run(workers: int) -> None:
    # The abandoned activation keeps its thread until it returns; other jobs go on.
    release = threading.Event()

    @routine
    def maybe_stuck(x: int) -> int:
        if x == 0:
            release.wait(30)
        return x

    with Flow(max_workers=workers) as flow:
        m = maybe_stuck()
    try:
        assert flow.run(m.x(0), timeout=0.1).status is JobStatus.FAILED
        # Bounded waits: a stall behind the stuck activation fails here, not after 30 s.
        assert flow.start(m.x(1)).wait(5).outputs == {"maybe_stuck.result": [1]}
        assert flow.start(m.x(2), timeout=10).wait(5).outputs == {"maybe_stuck.result": [2]}
    finally:
        release.set()


def test_routine_without_slots_is_a_source_run_once_per_job(workers: int) -> None:
    calls: list[str] = []

    @routine
    def seed() -> Iterator[int]:
        calls.append("seed")
        yield from range(4)

    @routine
    def total(values: Append[int], bonus: int = 0) -> int:
        return sum(values) + bonus

    with Flow("sources", max_workers=workers) as flow:
        s, t = seed(), total()
        s.result >> t.values
    assert flow.run(timeout=10).outputs == {"total.result": [6]}
    assert flow.run(t.bonus(100), timeout=10).outputs == {"total.result": [106]}
    assert calls == ["seed", "seed"]


def test_inline_jobs_with_a_timeout_still_run_inline() -> None:
    # A job timeout must not cost a thread hand-off per task: every activation of a
    # max_workers=1 job runs on the same (dispatcher) thread.
    threads: set[int] = set()

    @routine
    def spread(n: int) -> Iterator[int]:
        threads.add(threading.get_ident())
        yield from range(n)

    @routine
    def note(x: int) -> int:
        threads.add(threading.get_ident())
        return x

    with Flow("timed-inline", max_workers=1) as flow:
        s, n = spread(), note()
        s.result >> n.x
    state = flow.run(s.n(50), timeout=30)
    assert state.status is JobStatus.COMPLETED
    assert sorted(state.outputs["note.result"]) == list(range(50))
    assert len(threads) == 1


def test_a_job_stuck_past_its_deadline_is_reported_failed_and_its_late_work_dropped() -> None:
    entered = threading.Event()
    release = threading.Event()

    @routine
    def slow(x: int) -> Iterator[int]:
        entered.set()
        release.wait(30)
        yield x  # emitted after the deadline: must be dropped

    @routine
    def sink(y: int) -> int:
        return y

    with Flow("stuck-inline", max_workers=1) as flow:
        s, k = slow(), sink()
        s.result >> k.y
    job = flow.start(s.x(7), timeout=0.2)
    try:
        assert entered.wait(10)
        reported = job.wait()  # returns at the deadline, while `slow` still blocks
        assert reported.status is JobStatus.FAILED
        assert reported.error is not None
        assert reported.error.type == "JobTimeoutError"
        assert [(p.node, p.args) for p in reported.pending] == [("slow", [7])]
        # The dispatcher role moved to a new thread: other jobs run meanwhile.
        assert flow.run(k.y(1), timeout=10).outputs == {"sink.result": [1]}
    finally:
        release.set()
    live = flow.wait(job.state, timeout=10)
    assert live.status is JobStatus.FAILED
    assert "sink.result" not in live.outputs
    assert [(p.node, p.args) for p in live.pending] == [("slow", [7])]
