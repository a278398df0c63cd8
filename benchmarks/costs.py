"""Unit costs of the primitives the hot path is built from (``python -m benchmarks.costs``).

Not part of ``make bench``: these are the measurements behind the suggestions in
``benchmarks/README.md`` (what one task, one job or one thread hand-off costs at
the least on this machine). Each figure is the best of 5 ``timeit`` rounds.
"""

from __future__ import annotations

import _thread
import threading
import timeit
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from queue import SimpleQueue
from time import perf_counter
from typing import Any

from routilux.job_state import JobState, RoutineState, TaskRecord


def _best_ns(stmt: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=5)) / number * 1e9


def _handoff_round_trip_ns(n: int = 5000) -> float:
    """One put to a waiting thread and one put back (the minimum per pooled task)."""
    a: SimpleQueue[int | None] = SimpleQueue()
    b: SimpleQueue[int] = SimpleQueue()

    def echo() -> None:
        while (x := a.get()) is not None:
            b.put(x)

    t = threading.Thread(target=echo)
    t.start()
    best = float("inf")
    for _ in range(3):
        t0 = perf_counter()
        for i in range(n):
            a.put(i)
            b.get()
        best = min(best, (perf_counter() - t0) / n * 1e9)
    a.put(None)
    t.join()
    return best


def _tpe_round_trip_ns(n: int = 5000) -> float:
    with ThreadPoolExecutor(1) as pool:
        pool.submit(int).result()
        best = float("inf")
        for _ in range(3):
            t0 = perf_counter()
            for _ in range(n):
                pool.submit(int).result()
            best = min(best, (perf_counter() - t0) / n * 1e9)
    return best


def _thread_start_join_ns(n: int = 500) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = perf_counter()
        for _ in range(n):
            t = threading.Thread(target=int)
            t.start()
            t.join()
        best = min(best, (perf_counter() - t0) / n * 1e9)
    return best


class _Slotted:
    """Shaped like the scheduler's per-node, per-job record: 10 slots and a bound method."""

    __slots__ = ("a", "b", "c", "d", "e", "emit", "f", "g", "h", "i")

    def __init__(self, x: Any) -> None:
        self.a = self.b = self.c = self.d = x
        self.e = self.f = self.g = self.h = 0
        self.i: deque[Any] = deque()
        self.emit = self.go

    def go(self) -> None:
        return None


def measure() -> list[tuple[str, float]]:
    """Every unit cost, in ns."""
    dq: deque[int] = deque()
    hist: list[TaskRecord] = []
    rs = RoutineState()

    def deque_cycle() -> None:
        dq.append(1)
        dq.popleft()

    def record() -> None:
        hist.append(TaskRecord("hop3", 1.0, 2.0, True))
        if len(hist) > 1000:
            hist.clear()

    def counters() -> None:
        rs.activations += 1
        rs.busy_time += 1e-6

    def call2(a: Any, b: Any) -> None:
        return None

    def event_cycle() -> None:
        ev = threading.Event()
        ev.set()
        ev.wait()

    def lock_cycle() -> None:
        lk = _thread.allocate_lock()
        lk.acquire()
        lk.release()
        lk.acquire(True, 1.0)

    def job_state() -> None:
        JobState(flow_id="f", job_id="j")

    def routine_states_10() -> None:
        d: dict[str, RoutineState] = {}
        for name in ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"):
            d[name] = RoutineState()

    sq: SimpleQueue[int] = SimpleQueue()

    def slotted_10() -> None:
        for _ in range(10):
            _Slotted(1)

    def simplequeue_same_thread() -> None:
        sq.put(1)
        sq.get()

    return [
        ("time.perf_counter()", _best_ns(perf_counter, 200_000)),
        ("a Python function call with 2 arguments", _best_ns(lambda: call2(1, 2), 200_000)),
        ("deque append + popleft", _best_ns(deque_cycle, 200_000)),
        ("TaskRecord(...) + list append (history record)", _best_ns(record, 200_000)),
        ("RoutineState: 2 counter updates", _best_ns(counters, 200_000)),
        ("SimpleQueue put + get, same thread", _best_ns(simplequeue_same_thread, 200_000)),
        ("threading.Event() + set + wait (already set)", _best_ns(event_cycle, 50_000)),
        (
            "_thread lock as a one-shot event: create + acquire + release + acquire",
            _best_ns(lock_cycle, 50_000),
        ),
        ("JobState(flow_id, job_id) (empty)", _best_ns(job_state, 50_000)),
        ("10 x RoutineState() into a dict", _best_ns(routine_states_10, 20_000)),
        ("10 x a 10-slot object with a deque and a bound method", _best_ns(slotted_10, 20_000)),
        ("hand-off round trip to a waiting thread (SimpleQueue)", _handoff_round_trip_ns()),
        ("ThreadPoolExecutor(1).submit(int).result()", _tpe_round_trip_ns()),
        ("threading.Thread start + join", _thread_start_join_ns()),
    ]


def main() -> None:
    """Print the unit costs."""
    for what, ns in measure():
        print(f"{ns / 1000:10.3f} µs  {what}")


if __name__ == "__main__":
    main()
