"""The dispatcher: executors, inline mode, no polling, prompt waits."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from routilux import Append, Flow, JobStatus, JobTimeoutError, Retry, routine, scheduler


@routine
def numbers(n: int) -> Iterator[int]:
    yield from range(n)


def _thread_recorder() -> tuple[list[tuple[str, int, str]], object, object]:
    seen: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    @routine
    def left(x: int) -> int:
        with lock:
            t = threading.current_thread()
            seen.append(("left", t.ident or 0, t.name))
        return x

    @routine
    def right(x: int) -> int:
        with lock:
            t = threading.current_thread()
            seen.append(("right", t.ident or 0, t.name))
        return x

    return seen, left, right


def test_user_executor_runs_the_tasks() -> None:
    seen, left, right = _thread_recorder()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mine") as pool:
        with Flow("exec", executor=pool) as flow:
            src, a, b = numbers(), left(), right()  # type: ignore[operator]
            src.result >> a.x
            src.result >> b.x
        assert flow.execution_strategy == "concurrent"
        state = flow.run(src.n(10), timeout=10)
        assert state.status is JobStatus.COMPLETED
        assert len(seen) == 20
        assert {name.split("_")[0] for _, _, name in seen} == {"mine"}
        flow.shutdown()
        # The flow does not shut down an executor it was given: it still works.
        assert pool.submit(lambda: 41 + 1).result(timeout=10) == 42
        # And the flow can run again on it.
        assert flow.run(src.n(2), timeout=10).status is JobStatus.COMPLETED


def test_inline_mode_runs_every_activation_of_a_job_on_one_thread() -> None:
    seen, left, right = _thread_recorder()
    with Flow("inline", max_workers=1) as flow:
        src, a, b = numbers(), left(), right()  # type: ignore[operator]
        src.result >> a.x
        src.result >> b.x
    assert flow.execution_strategy == "sequential"
    job = flow.start(src.n(10))
    assert job.wait(10).status is JobStatus.COMPLETED
    assert len(seen) == 20
    assert len({ident for _, ident, _ in seen}) == 1
    (name,) = {n for _, _, n in seen}
    assert name.startswith("routilux-")
    assert threading.current_thread().name != name


def test_inline_mode_runs_one_task_at_a_time() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    @routine(concurrency=8)
    def work(x: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        with lock:
            active -= 1
        return x

    with Flow("one", max_workers=1) as flow:
        src, w = numbers(), work()
        src.result >> w.x
    assert flow.run(src.n(50)).status is JobStatus.COMPLETED
    assert peak == 1


def _new_routilux_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("routilux-") and t not in before]


@pytest.mark.parametrize("workers", [1, 4])
def test_dispatcher_thread_exits_when_idle(workers: int) -> None:
    before = set(threading.enumerate())

    @routine
    def collect(values: Append[int]) -> int:
        return sum(values)

    with Flow("idle", max_workers=workers) as flow:
        src, c = numbers(), collect()
        src.result >> c.values
    jobs = [flow.start(src.n(n)) for n in range(1, 6)]
    assert [j.wait(10).outputs for j in jobs] == [
        {"collect.result": [sum(range(n))]} for n in range(1, 6)
    ]
    # No thread keeps polling: the dispatcher ends by itself once no job runs, and the
    # pool's workers end on shutdown.
    flow.shutdown()
    threads = _new_routilux_threads(before)
    for t in threads:
        t.join(timeout=10)
    assert [t.name for t in threads if t.is_alive()] == []


def test_dispatcher_restarts_after_going_idle() -> None:
    with Flow("again", max_workers=1) as flow:
        src = numbers()
    for n in range(3):
        before = set(threading.enumerate())
        assert flow.start(src.n(n + 1)).wait(10).outputs == {"numbers.result": list(range(n + 1))}
        for t in _new_routilux_threads(before):
            t.join(timeout=10)
            assert not t.is_alive()


def test_wait_returns_promptly() -> None:
    release = threading.Event()
    entered = threading.Event()

    @routine
    def gate(x: int) -> int:
        entered.set()
        release.wait(10)
        return x

    with Flow("prompt", max_workers=4) as flow:
        g = gate()
    job = flow.start(g.x(1))
    assert entered.wait(10)
    release.set()
    t0 = time.perf_counter()
    state = job.wait(10)
    assert state.status is JobStatus.COMPLETED
    # Signalled, not polled: far below any plausible polling interval, even on a busy box.
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("workers", [1, 4])
def test_many_short_jobs_wait_without_polling_delays(workers: int) -> None:
    @routine
    def inc(x: int) -> int:
        return x + 1

    with Flow("many", max_workers=workers) as flow:
        i = inc()
    t0 = time.perf_counter()
    for n in range(100):
        assert flow.start(i.x(n)).wait(10).outputs == {"inc.result": [n + 1]}
    # 100 start/wait round trips; a 50 ms poll anywhere would take 5 s.
    assert time.perf_counter() - t0 < 2.5


@pytest.mark.parametrize("workers", [1, 4])
def test_blocking_runs_leave_no_residue_in_the_dispatcher(workers: int) -> None:
    # A long-lived service calls flow.run millions of times: the dispatcher's memory must
    # not grow with the number of jobs (each blocking run once left a doorbell ring behind).
    @routine
    def inc(x: int) -> int:
        return x + 1

    with Flow("residue", max_workers=workers) as flow:
        i = inc()
    for n in range(300):
        assert flow.run(i.x(n)).outputs == {"inc.result": [n + 1]}
    disp = flow._dispatcher
    assert disp is not None
    assert (disp.inbox.empty(), disp.inbox._bell.qsize(), disp.jobs) == (True, 0, set())


def _wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    # A condition with no signal of its own (a thread retiring): re-check on a short wait.
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not cond():
        if time.monotonic() > deadline:
            return False
        tick.wait(0.01)
    return True


def _run_and_drop_a_pool_flow(
    inc: Any,
) -> tuple[weakref.ref[Flow], list[threading.Thread]]:
    before = set(threading.enumerate())
    with Flow("linger", max_workers=2) as flow:
        i = inc()
    assert flow.run(i.x(1)).outputs == {"inc.result": [2]}
    workers = [t for t in _new_routilux_threads(before) if "worker" in t.name]
    assert workers
    disp = flow._dispatcher
    assert disp is not None
    assert _wait_for(lambda: disp._loops == 0)
    # A retired flow still runs jobs: loops start again on demand.
    assert flow.run(i.x(2)).outputs == {"inc.result": [3]}
    assert _wait_for(lambda: disp._loops == 0)
    return weakref.ref(flow), workers


def test_idle_pool_loops_retire_and_a_dropped_flow_lets_its_threads_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Idle worker loops stay for the next job, then retire: a flow dropped without
    # shutdown() must not keep its dispatcher, its pool and their threads forever.
    monkeypatch.setattr(scheduler, "LOOP_LINGER", 0.05)

    @routine
    def inc(x: int) -> int:
        return x + 1

    gone, workers = _run_and_drop_a_pool_flow(inc)
    gc.collect()
    assert gone() is None
    for t in workers:
        t.join(timeout=10)
    assert [t.name for t in workers if t.is_alive()] == []


@pytest.mark.parametrize("workers", [1, 4])
def test_every_waiter_of_a_job_wakes_when_it_ends(workers: int) -> None:
    release = threading.Event()
    entered = threading.Event()

    @routine
    def gate(x: int) -> int:
        entered.set()
        release.wait(10)
        return x

    with Flow("waiters", max_workers=workers) as flow:
        g = gate()
    job = flow.start(g.x(7))
    assert entered.wait(10)
    # A wait that runs out says so, and leaves the job running.
    with pytest.raises(JobTimeoutError, match=r"^Job \S+ still running after waiting 0.01 s$"):
        job.wait(0.01)
    got: list[object] = []
    waiters = [threading.Thread(target=lambda: got.append(job.wait(10).outputs)) for _ in range(3)]
    for t in waiters:
        t.start()
    release.set()
    for t in waiters:
        t.join(10)
    assert got == [{"gate.result": [7]}] * 3
    # Once finished, waits return at once, with or without a timeout.
    assert job.wait(0).outputs == job.wait().outputs == {"gate.result": [7]}


def test_run_inside_a_routine_of_the_same_flow_is_refused() -> None:
    errors: list[str] = []

    @routine
    def nested(x: int) -> int:
        try:
            flow.run(other.x(1))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        return x

    @routine
    def plain(x: int) -> int:
        return x

    with Flow("nest", max_workers=1) as flow:
        n, other = nested(), plain()
    state = flow.run(n.x(1))
    assert state.status is JobStatus.COMPLETED
    assert errors == [
        "StateError: flow.run on flow 'nest' from inside one of its own routines would wait "
        "for itself; use flow.start(...) there"
    ]


def test_start_inside_a_routine_runs_the_new_job() -> None:
    started = []

    @routine
    def spawn(x: int) -> int:
        if x == 0:
            started.append(flow.start(s.x(1)))
        return x

    with Flow("spawn", max_workers=1) as flow:
        s = spawn()
    assert flow.run(s.x(0), timeout=10).outputs == {"spawn.result": [0]}
    assert started[0].wait(10).outputs == {"spawn.result": [1]}


def test_set_execution_strategy_rejects_unknown_names() -> None:
    flow = Flow("s")
    with pytest.raises(
        ValueError,
        match=r"^Unknown execution strategy 'parallel' \(valid: sequential, concurrent\)$",
    ):
        flow.set_execution_strategy("parallel")


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_max_workers_must_be_positive(bad: object) -> None:
    with pytest.raises(
        ValueError, match=rf"^Flow 'w': max_workers must be a positive int, got {bad!r}$"
    ):
        Flow("w", max_workers=bad)  # type: ignore[arg-type]


EXIT_WHILE_RETRY_WAITS = """
from routilux import Flow, Retry, routine

@routine(on_error=Retry(max_attempts=3, delay=60))
def flaky(x: int) -> int:
    raise OSError("down")

@routine
def fine(x: int) -> int:
    return x

with Flow("exit", max_workers=3) as flow:
    a, b = flaky(), fine()
flow.start(a.x(1))
print(flow.run(b.x(2)).status)
"""


def test_the_interpreter_exits_while_worker_loops_are_idle(tmp_path: Path) -> None:
    # A retry waiting on a timer keeps the dispatcher (and its idle worker loops) alive;
    # concurrent.futures joins its threads at exit, which must not wait on our loops.
    script = tmp_path / "exit_while_retry_waits.py"
    script.write_text(EXIT_WHILE_RETRY_WAITS)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "completed"


def test_shutdown_releases_a_user_executors_threads_from_the_worker_loops() -> None:
    pool = ThreadPoolExecutor(max_workers=3)

    @routine(on_error=Retry(max_attempts=3, delay=60))
    def flaky(x: int) -> int:
        raise OSError("down")

    @routine
    def ident(x: int) -> int:
        return x

    with Flow("release", executor=pool, max_workers=3) as flow:
        bad, n = flaky(), ident()
    waiting = flow.start(bad.x(0))  # its retry timer keeps the dispatcher and loops alive
    assert flow.run(n.x(1), timeout=10).outputs == {"ident.result": [1]}
    flow.shutdown()
    closer = threading.Thread(target=pool.shutdown, kwargs={"wait": True})
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "the pool's threads are still held by worker loops"
    assert waiting.cancel(timeout=10).status is JobStatus.CANCELLED
