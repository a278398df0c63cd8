"""W2 jobs: 1,000 separate ``flow.run`` calls on a 10-hop chain, one value each.

Figure: jobs per second with ``max_workers=1`` (target), and with ``max_workers=4``
for reference. Each hop adds 1, so a job fed ``i`` must output ``[i + 10]``.

Floors, same process: the 10 functions called directly per job (the table's
floor), and the cost of one cross-thread round trip per job in three forms — a
persistent worker thread behind a ``SimpleQueue``, ``ThreadPoolExecutor.submit``
+ ``result()``, and a new ``threading.Thread`` started and joined per job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from queue import SimpleQueue
from time import perf_counter, process_time
from typing import Any

from routilux import Flow, JobState, Node, routine

from ._common import Config, Report, Row, check, figure

JOBS = 1000
HOPS = 10
TARGET_JOBS_PER_S = 20_000.0
OUT_KEY = f"step{HOPS - 1}.result"


@routine
def step(x: int) -> int:
    return x + 1


def build(max_workers: int, name: str = "w2") -> tuple[Flow, Node[Any, Any]]:
    """The W2 chain ``step0 -> … -> step9``; returns the flow and its entry node."""
    with Flow(f"{name}-mw{max_workers}", max_workers=max_workers) as flow:
        first = prev = step(name="step0")
        for i in range(1, HOPS):
            h = step(name=f"step{i}")
            prev.result >> h.x
            prev = h
    return flow, first


def verify(state: JobState, i: int) -> None:
    """The job completed and its one output is ``i + 10``."""
    check(
        state.status == "completed",
        f"W2: job {i} ended {state.status}, expected completed (error: {state.error})",
    )
    got = state.outputs.get(OUT_KEY)
    check(got == [i + HOPS], f"W2: job {i} output {OUT_KEY}={got!r}, expected [{i + HOPS}]")
    runs = sum(rs.activations for rs in state.routine_states.values())
    check(runs == HOPS, f"W2: job {i} ran {runs} handlers, expected {HOPS}")


def run_jobs(flow: Flow, entry: Node[Any, Any], jobs: int) -> float:
    """Seconds for ``jobs`` sequential ``flow.run`` calls (each checked, after the clock)."""
    return run_jobs_timed(flow, entry, jobs)[0]


def run_jobs_timed(flow: Flow, entry: Node[Any, Any], jobs: int) -> tuple[float, float]:
    """Wall and process CPU seconds of ``jobs`` ``flow.run`` calls; checked after both clocks."""
    run = flow.run
    x = entry.x
    states: list[JobState] = []
    keep = states.append
    c0 = process_time()
    t0 = perf_counter()
    for i in range(jobs):
        keep(run(x(i)))
    dt = perf_counter() - t0
    cpu = process_time() - c0
    for i, state in enumerate(states):
        verify(state, i)
    return dt, cpu


# -- floors --------------------------------------------------------------------------


def _step(x: int) -> int:
    return x + 1


def _chain(x: int) -> int:
    for _ in range(HOPS):
        x = _step(x)
    return x


def floor_direct(jobs: int) -> float:
    """Seconds for the 10 functions called directly, per job."""
    t0 = perf_counter()
    for i in range(jobs):
        check(_chain(i) == i + HOPS, "W2 direct floor: wrong result")
    return perf_counter() - t0


def floor_worker_thread(jobs: int) -> float:
    """Seconds for one round trip per job to a persistent thread behind a SimpleQueue."""
    req: SimpleQueue[int | None] = SimpleQueue()
    res: SimpleQueue[int] = SimpleQueue()

    def worker() -> None:
        while (x := req.get()) is not None:
            res.put(_chain(x))

    t = threading.Thread(target=worker)
    t.start()
    t0 = perf_counter()
    for i in range(jobs):
        req.put(i)
        check(res.get() == i + HOPS, "W2 worker-thread floor: wrong result")
    dt = perf_counter() - t0
    req.put(None)
    t.join()
    return dt


def floor_executor(jobs: int) -> float:
    """Seconds for ``ThreadPoolExecutor(1).submit(...).result()`` per job."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(int).result()
        t0 = perf_counter()
        for i in range(jobs):
            check(pool.submit(_chain, i).result() == i + HOPS, "W2 executor floor: wrong result")
        return perf_counter() - t0


def floor_thread_per_job(jobs: int) -> float:
    """Seconds for starting and joining a new thread per job (it runs the chain)."""
    out: list[int] = []
    t0 = perf_counter()
    for i in range(jobs):
        t = threading.Thread(target=lambda x=i: out.append(_chain(x)))
        t.start()
        t.join()
    dt = perf_counter() - t0
    check(out == [i + HOPS for i in range(jobs)], "W2 thread-per-job floor: wrong result")
    return dt


def run(cfg: Config, report: Report) -> None:
    """Measure W2 at max_workers 1 (target) and 4, with its floors."""
    jobs = 200 if cfg.quick else JOBS

    def rate(fn: Callable[[int], float], k: int = jobs) -> float:
        return k / figure([fn(k) for _ in range(cfg.repeats)], cfg)

    direct = report.floor("W2", "10 functions called directly", rate(floor_direct), "jobs/s")
    report.floor(
        "W2", "round trip to a SimpleQueue worker thread", rate(floor_worker_thread), "jobs/s"
    )
    report.floor("W2", "ThreadPoolExecutor(1).submit().result()", rate(floor_executor), "jobs/s")
    report.floor("W2", "new Thread started + joined", rate(floor_thread_per_job), "jobs/s")
    for mw, k, target in ((1, jobs, TARGET_JOBS_PER_S), (4, max(50, jobs // 4), None)):
        flow, entry = build(mw)
        try:
            run_jobs(flow, entry, 20)  # warm-up
            secs: list[float] = []
            cpu: list[float] = []
            for _ in range(cfg.repeats if mw == 1 else 3):
                wall, used = run_jobs_timed(flow, entry, k)
                secs.append(wall)
                cpu.append(used)
        finally:
            flow.shutdown()
        report.rows.append(
            Row(
                "W2",
                f"jobs, max_workers={mw}",
                k / figure(secs, cfg),
                "jobs/s",
                floor=direct,
                floor_what="direct calls",
                target=target,
                higher_is_better=True,
                note=f"CPU {k / min(cpu):,.0f} jobs/CPU-s (process, best); "
                f"{k} runs x {HOPS} hops, each output checked",
                samples=[k / s for s in secs],
            )
        )
