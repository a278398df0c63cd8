"""Running a flow's tasks in other processes (routilux/remote.py, routilux/executors.py).

The behaviour table of tests/test_behaviour.py runs again on a process pool and must
give what it gives on threads. Then the boundary itself: payload types, user
exceptions and error policies, a worker killed mid-activation, a task that kills its
worker every time, routines workers cannot import, values msgspec cannot encode, and
``placement="local"``.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pytest
import remote_flows as rf
from test_behaviour import CASES, Case

from routilux import (
    Continue,
    DefinitionError,
    Flow,
    JobState,
    JobStatus,
    Retry,
    Routine,
    Skip,
    State,
    ValidationError,
    routine,
)
from routilux.executors import ProcessPool

P = ParamSpec("P")
T = TypeVar("T")


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPool]:
    """Two worker processes shared by the tests that do not kill them."""
    p = ProcessPool(2)
    yield p
    p.shutdown(wait=True, cancel_futures=True)


class InThread(Executor):
    """A fake remote executor: runs each submitted call at once, in the calling thread.

    Any executor that is not a thread pool gets the remote path, so this exercises the
    encoding, the entry point and the completion path without processes, and records
    what was submitted.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        self.calls.append(args)
        fut: Future[T] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


def _run(case: Case, **flow_kw: Any) -> tuple[Flow, JobState]:
    with Flow("table", **case.flow_kw, **flow_kw) as flow:
        inputs = case.build(flow)
    return flow, flow.run(*inputs, timeout=20)


def _multiset(values: list[Any]) -> Counter[str]:
    return Counter(repr(v) for v in values)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_behaviour_table_on_processes_matches_threads(case: Case, pool: ProcessPool) -> None:
    _, on_threads = _run(case, max_workers=4)
    flow, on_processes = _run(case, executor=pool, max_workers=4)

    assert on_processes.status is JobStatus.COMPLETED, on_processes.error
    assert on_processes.errors == []
    for state in (on_threads, on_processes):
        if case.ordered:
            assert state.outputs == case.outputs
        else:
            assert state.outputs.keys() == case.outputs.keys()
            for key, expected in case.outputs.items():
                assert _multiset(state.outputs[key]) == _multiset(expected), key
        if case.check is not None:
            case.check(state)
    activations = {n: rs.activations for n, rs in on_processes.routine_states.items()}
    assert activations == {n: case.calls.get(n, 0) for n in flow.nodes}
    assert activations == {n: rs.activations for n, rs in on_threads.routine_states.items()}
    assert [r.node for r in on_processes.history].count("numbers") == case.calls.get("numbers", 0)


def test_payload_types_come_back_as_declared(pool: ProcessPool) -> None:
    def build() -> tuple[Flow, list[Any]]:
        with Flow(executor=pool, max_workers=2) as flow:
            s, summary = rf.shout_doc(), rf.summarize()
            s.result >> summary.docs
        return flow, [s.doc(rf.Doc("a", 2)), s.doc(rf.Doc("b", 3))]

    flow, inputs = build()
    state = flow.run(*inputs, timeout=20)
    # Structs cross as msgspec values and are converted back with the slot's and the
    # event's declared types: the routines assert it, and the outputs are typed.
    assert state.status is JobStatus.COMPLETED, state.error
    assert state.outputs == {"summarize.result": [rf.Summary(["A", "B"], 5)]}


@pytest.mark.parametrize(
    "policy",
    [Continue(), Skip(), Retry(max_attempts=3), None],
    ids=["continue", "skip", "retry-then-stop", "stop"],
)
def test_error_policies_on_processes_match_threads(policy: Any, pool: ProcessPool) -> None:
    def run(**kw: Any) -> JobState:
        with Flow(on_error=policy, **kw) as flow:
            e, p = rf.each(), rf.picky()
            e.result >> p.x
        return flow.run(e.values([2, 1, 4]), timeout=20)

    threads = run(max_workers=2)
    processes = run(executor=pool, max_workers=2)

    def summary(state: JobState) -> Any:
        rs = state.routine_states["picky"]
        errors = [(e.node, e.type, e.message, e.attempt) for e in state.errors]
        return state.status, state.outputs, errors, rs.status, rs.retries, rs.activations

    assert summary(processes) == summary(threads)
    assert processes.errors[0].message == "odd number 1"
    # The worker's traceback is kept: it names the routine's own code.
    assert "in picky" in processes.errors[0].traceback
    assert processes.errors[0].traceback.rstrip().endswith("ValueError: odd number 1")


@pytest.mark.parametrize("where", ["inline", "threads", "processes"])
def test_routine_state_is_per_job_and_the_same_everywhere(where: str, pool: ProcessPool) -> None:
    kw: dict[str, Any] = {
        "inline": {"max_workers": 1},
        "threads": {"max_workers": 4},
        "processes": {"executor": pool, "max_workers": 4},
    }[where]
    with Flow(**kw) as flow:
        e, t = rf.each(), rf.running_total()
        e.result >> t.x
    first = flow.run(e.values([1, 2, 3]), timeout=20)
    second = flow.run(e.values([10]), timeout=20)
    assert first.outputs == {"running_total.result": [1, 3, 6]}
    assert first.routine_states["running_total"].state == {"seen": 3, "total": 6}
    # Another job starts from a fresh Tally().
    assert second.outputs == {"running_total.result": [10]}
    assert second.routine_states["running_total"].state == {"seen": 1, "total": 10}
    # The state is plain data in the snapshot, and comes back as it was.
    restored = JobState.from_bytes(first.to_bytes())
    assert restored.routine_states["running_total"].state == {"seen": 3, "total": 6}


def test_state_definition_errors() -> None:
    with pytest.raises(
        DefinitionError,
        match=r"^Routine `f`: a routine with State runs one activation per job at a time; remove concurrency=2$",
    ):

        @routine(concurrency=2)
        def f(x: int, tally: rf.Tally) -> None: ...

    class NoDefault(State):
        n: int

    with pytest.raises(
        DefinitionError,
        match=r"^Routine `g`: State class `test_state_definition_errors.<locals>.NoDefault` needs a default for every field \(",
    ):

        @routine
        def g(x: int, s: NoDefault) -> None: ...


def test_user_exception_type_and_arguments_cross_back(pool: ProcessPool) -> None:
    # Retry(on=...) matches the rebuilt exception's type, as it would on threads.
    with Flow(
        executor=pool, max_workers=2, on_error=Retry(max_attempts=2, on=(rf.Refused,))
    ) as flow:
        r = rf.refuse()
    state = flow.run(r.x(7), timeout=20)
    assert state.status is JobStatus.FAILED
    assert [(e.type, e.message, e.attempt) for e in state.errors] == [
        ("Refused", "('no', 7)", 1),
        ("Refused", "('no', 7)", 2),
    ]


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pid"
    os.mkfifo(path)
    return path


def test_worker_killed_mid_activation_job_completes_exactly(tmp_path: Path) -> None:
    pool = ProcessPool(2)
    try:
        fifo = _fifo(tmp_path)
        with Flow(executor=pool, max_workers=2) as flow:
            v, tot = rf.victim(), rf.total_of()
            v.result >> tot.values
        job = flow.start(v.where(str(tmp_path)), *[v.x(i) for i in range(6)], timeout=30)
        with fifo.open() as f:  # blocks until the activation of x=3 reports its pid
            pid = int(f.read())
        os.kill(pid, signal.SIGKILL)
        state = job.wait(timeout=30)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

    assert state.status is JobStatus.COMPLETED, state.error
    assert state.outputs == {"total_of.result": [30]}
    # Lost attempts are not activations: the re-run counts once, nothing is doubled.
    assert state.routine_states["victim"].activations == 6
    # The killed attempt had counted x=3 in its state: that change died with it.
    assert state.routine_states["victim"].state == {"seen": 6, "total": 30}
    assert state.errors == []
    assert pool.rebuilds == 1
    assert (tmp_path / "victim.attempts").read_text().count("\n") == 2


def test_task_that_always_kills_its_worker_ends_after_n_attempts(tmp_path: Path) -> None:
    pool = ProcessPool(1)
    try:
        with Flow(executor=pool, max_workers=1, worker_attempts=2) as flow:
            c = rf.crash()
        state = flow.run(c.where(str(tmp_path)), c.x(5), timeout=30)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

    assert state.status is JobStatus.FAILED
    assert state.error is not None
    assert (state.error.node, state.error.type) == ("crash", "WorkerLostError")
    assert state.error.message.startswith(
        "Worker lost while running `crash`: 2 attempts of 2 ended with the worker process "
        "gone (BrokenProcessPool: "
    )
    assert len((tmp_path / "crash.attempts").read_text().splitlines()) == 2
    # Not an activation, and kept as pending work: the job can be resumed elsewhere.
    assert state.routine_states["crash"].activations == 0
    assert [(p.node, p.args) for p in state.pending] == [("crash", [5, str(tmp_path)])]


def test_broken_plain_process_pool_fails_the_job_naming_the_fix(tmp_path: Path) -> None:
    pool = ProcessPoolExecutor(1)
    try:
        with Flow(executor=pool, max_workers=1, worker_attempts=3) as flow:
            c = rf.crash()
        state = flow.run(c.where(str(tmp_path)), c.x(5), timeout=30)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    assert state.error is not None
    assert state.error.message.endswith(
        "; a ProcessPoolExecutor takes no more tasks once a worker has died: use "
        "routilux.executors.ProcessPool, which replaces itself"
    )
    # The pool broke on the first attempt; the others were refused without running.
    assert len((tmp_path / "crash.attempts").read_text().splitlines()) == 1


def _nested() -> Any:
    @routine
    def inner(x: int) -> int:
        return x

    return inner


def _in_main() -> Any:
    def main_fn(x: int) -> int:
        return x

    main_fn.__module__ = "__main__"
    main_fn.__qualname__ = "main_fn"
    return routine(main_fn)


_LAMBDA = routine(lambda x: x)


def test_routines_workers_cannot_import_fail_before_anything_is_submitted() -> None:
    ex = InThread()
    with Flow("f", executor=ex) as flow:
        a, b, c = _nested()(), _in_main()(), _LAMBDA(name="lam")
        ok = rf.picky()
        ok.result >> a.x
    with pytest.raises(ValidationError) as info:
        flow.run(ok.x(2), b.x(1), c.x(1))
    assert str(info.value) == (
        "Cannot run flow 'f' on InThread:\n"
        "- routine `inner` (`test_remote:_nested.<locals>.inner`) is defined inside a "
        "function, so InThread workers cannot import it; define it at module level, or "
        'mark it @routine(placement="local") to run it in this process\n'
        "- routine `main_fn` is defined in `__main__`, which InThread workers cannot import; "
        'move it to an importable module, or mark it @routine(placement="local") to run '
        "it in this process\n"
        "- routine `<lambda>` (node `lam`) is a lambda, which InThread workers cannot "
        'import; write it as a module-level def, or mark it @routine(placement="local") to '
        "run it in this process"
    )
    with pytest.raises(
        ValidationError, match=r"^Cannot run flow 'f' on InThread:\n- routine `inner`"
    ):
        flow.start(ok.x(2))
    assert ex.calls == []


class Greeter(Routine):
    """A classic routine: its handler is a bound method of this object."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("name", handler=self.greet)
        self.define_event("greeting")

    def greet(self, name: str) -> None:
        self.emit("greeting", text=f"hello {name}")


def test_classic_routines_are_refused_on_a_remote_executor() -> None:
    ex = InThread()
    flow = Flow("classic", executor=ex)
    flow.add_routine(Greeter(), "greeter")
    with pytest.raises(ValidationError) as info:
        flow.run(flow.node("greeter").get_slot("name")({"name": "ada"}))
    assert str(info.value) == (
        "Cannot run flow 'classic' on InThread:\n"
        "- routine `Greeter` (node `greeter`) is a classic Routine: its handlers are bound to "
        "an object in this process, so InThread workers cannot run it; write it as a "
        "@routine function, or run the flow on threads (no executor, or a ThreadPoolExecutor)"
    )
    assert ex.calls == []


def test_unencodable_payload_fails_at_submit_and_is_never_retried() -> None:
    class Opaque:
        pass

    ex = InThread()
    with Flow(executor=ex, on_error=Retry(max_attempts=5)) as flow:
        t = rf.take_any()
    state = flow.run(t.x(Opaque()), timeout=20)
    assert state.status is JobStatus.FAILED
    assert [(e.node, e.type) for e in state.errors] == [("take_any", "SnapshotError")]
    assert state.errors[0].message.startswith(
        "Cannot send an activation of `take_any` to the executor: the value for slot `x` "
        "is a `test_unencodable_payload_fails_at_submit_and_is_never_retried.<locals>.Opaque`"
        ", which msgspec cannot encode ("
    )
    assert ex.calls == []
    assert state.pending == []  # it could not be snapshotted either


def test_unencodable_emit_is_a_routine_failure() -> None:
    with Flow(executor=InThread()) as flow:
        o = rf.opaque_out()
    state = flow.run(o.x(1), timeout=20)
    assert state.error is not None
    assert (state.error.type, state.error.message) == (
        "SnapshotError",
        "Routine `opaque_out` emitted a `lock` on `result`, which msgspec cannot encode "
        "(Encoding objects of type _thread.lock is unsupported); emit builtins, Structs, "
        'dataclasses or attrs classes, or run the routine in this process with @routine(placement="local")',
    )


def test_placement_local_runs_in_the_dispatcher_process(pool: ProcessPool) -> None:
    @routine(placement="local")
    def here(pid: int) -> tuple[int, int]:
        return (pid, os.getpid())

    with Flow(executor=pool, max_workers=2) as flow:
        w, h = rf.whoami(), here()
        w.result >> h.pid
    state = flow.run(w.x(0), timeout=20)
    assert state.status is JobStatus.COMPLETED, state.error
    ((worker_pid, local_pid),) = state.outputs["here.result"]
    assert local_pid == os.getpid()
    assert worker_pid != os.getpid()


def test_placement_must_be_known() -> None:
    with pytest.raises(
        DefinitionError,
        match=r'^Routine `f`: placement must be "executor" or "local", got \'gpu\'$',
    ):

        @routine(placement="gpu")
        def f(x: int) -> int:
            return x


def test_thread_pool_executor_keeps_the_thread_path() -> None:
    # Nested routines are fine on threads: nothing crosses a process boundary.
    with ThreadPoolExecutor(2) as ex, Flow(executor=ex) as flow:
        n = _nested()()
        state = flow.run(n.x(4), timeout=20)
    assert state.outputs == {"inner.result": [4]}
