"""W2b latency: time from the last task finishing to ``flow.run`` (start + wait) returning.

The chain is W2's (9 steps) ending in a sink whose last act is to record
``time.perf_counter()``; the caller reads ``perf_counter()`` right after ``run()``
returns. Figure: the median over the jobs, with ``max_workers=1`` and 4.

Floor, same process: a thread records ``perf_counter()`` and sets a
``threading.Event`` another thread waits on (the wake-up ``Job.wait`` needs at
the least); also the same through a ``SimpleQueue``.
"""

from __future__ import annotations

import threading
from queue import SimpleQueue
from time import perf_counter
from typing import Any

from routilux import Flow, Node, routine

from ._common import Config, Report, Row, check, median

JOBS = 1000
STEPS = 9
TARGET_MS = 1.0

_seen: list[int] = [0]
_stamp: list[float] = [0.0]


@routine
def step(x: int) -> int:
    return x + 1


@routine
def stamp(x: int) -> None:
    _seen[0] = x
    _stamp[0] = perf_counter()  # the sink's last act


def build(max_workers: int) -> tuple[Flow, Node[Any, Any]]:
    """``step0 -> … -> step8 -> stamp``; returns the flow and its entry node."""
    with Flow(f"w2b-mw{max_workers}", max_workers=max_workers) as flow:
        first = prev = step(name="step0")
        for i in range(1, STEPS):
            h = step(name=f"step{i}")
            prev.result >> h.x
            prev = h
        s = stamp(name="stamp")
        prev.result >> s.x
    return flow, first


def latencies(flow: Flow, entry: Node[Any, Any], jobs: int) -> list[float]:
    """Seconds from the sink's stamp to ``run`` returning, one per job (each checked)."""
    out: list[float] = []
    for i in range(jobs):
        _stamp[0] = 0.0
        state = flow.run(entry.x(i))
        t = perf_counter()
        check(
            state.status == "completed",
            f"W2b: job {i} ended {state.status}, expected completed (error: {state.error})",
        )
        check(_seen[0] == i + STEPS, f"W2b: job {i}: the sink saw {_seen[0]}, expected {i + STEPS}")
        check(_stamp[0] > 0.0, f"W2b: job {i}: the sink did not run")
        out.append(t - _stamp[0])
    return out


def floor_event(n: int) -> list[float]:
    """Seconds from ``Event.set`` (stamped just before) to the waiter waking, n times."""
    out: list[float] = []
    go: SimpleQueue[bool] = SimpleQueue()
    stamps = [0.0]

    def setter() -> None:
        while go.get():
            ev = events[0]
            stamps[0] = perf_counter()
            ev.set()

    events = [threading.Event()]
    t = threading.Thread(target=setter)
    t.start()
    for _ in range(n):
        ev = events[0] = threading.Event()
        go.put(True)
        ev.wait()
        out.append(perf_counter() - stamps[0])
    go.put(False)
    t.join()
    return out


def floor_queue(n: int) -> list[float]:
    """Seconds from a ``SimpleQueue.put`` of a stamp to the waiting ``get`` returning."""
    out: list[float] = []
    go: SimpleQueue[bool] = SimpleQueue()
    back: SimpleQueue[float] = SimpleQueue()

    def putter() -> None:
        while go.get():
            back.put(perf_counter())

    t = threading.Thread(target=putter)
    t.start()
    for _ in range(n):
        go.put(True)
        s = back.get()
        out.append(perf_counter() - s)
    go.put(False)
    t.join()
    return out


def run(cfg: Config, report: Report) -> None:
    """Measure W2b at max_workers 1 (target) and 4, with its floors."""
    jobs = 200 if cfg.quick else JOBS
    ev = median(floor_event(jobs)) * 1e3
    report.floor("W2b", "Event.set -> waiter wakes (median)", ev, "ms")
    report.floor(
        "W2b", "SimpleQueue.put -> get returns (median)", median(floor_queue(jobs)) * 1e3, "ms"
    )
    for mw, k in ((1, jobs), (4, max(50, jobs // 4))):
        flow, entry = build(mw)
        try:
            latencies(flow, entry, 20)  # warm-up
            lat = latencies(flow, entry, k)
        finally:
            flow.shutdown()
        lat_ms = sorted(x * 1e3 for x in lat)
        p90 = lat_ms[int(0.9 * (len(lat_ms) - 1))]
        report.rows.append(
            Row(
                "W2b",
                f"done -> run() returns, median, max_workers={mw}",
                median(lat_ms),
                "ms",
                floor=ev,
                floor_what="Event wake-up",
                target=TARGET_MS,
                note=f"{k} jobs; p90 {p90:.3f} ms, max {lat_ms[-1]:.3f} ms",
            )
        )
