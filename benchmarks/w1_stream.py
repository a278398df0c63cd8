"""W1 stream: one job; a generator source yields 2,000 values through 10 pass-through
routines to a sink. Figure: wall time per handler run (source + 10 hops + sink =
22,001 runs), with ``max_workers=1`` (inline on the dispatcher) and ``max_workers=4``.

Floors, measured in the same process on the same 12 functions:

* a plain loop calling them;
* one dispatcher thread draining a ``queue.SimpleQueue`` of (stage, value) tasks
  (the floor of the inline, ``max_workers=1`` design);
* a dispatcher handing each task to 4 plain threads pulling from a ``SimpleQueue``,
  which post the result back to the dispatcher's ``SimpleQueue`` (the floor of the
  pool design, the table's floor for ``max_workers=4``); the same through a
  ``ThreadPoolExecutor(4)``; through 1 thread; and batched hand-offs (several tasks
  per hand-off, with and without the engine's one-activation-per-node rule).

``python -m benchmarks.w1_stream --rss --workers N`` runs W1 once and prints the
process's peak RSS in KiB (``VmHWM``, see ``_common.peak_rss_kib``) (used by the import/RSS workload, in a fresh process).
"""

from __future__ import annotations

import argparse
import functools
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from queue import SimpleQueue
from time import perf_counter
from typing import Any

from routilux import Flow, JobState, Node, routine

from ._common import Config, Report, Row, check, figure, peak_rss_kib, timed

N = 2000
HOPS = 10
#: source once, then every value through 10 hops and the sink
HANDLERS = 1 + N * (HOPS + 1)

TARGET_US = {1: 3.0, 4: 10.0}
#: the job timeout of the informational "with a timeout" row (never reached)
JOB_TIMEOUT = 300.0

received: list[int] = []


@routine
def source(n: int) -> Iterator[int]:
    yield from range(n)


@routine
def hop(x: int) -> int:
    return x


@routine
def sink(x: int) -> None:
    received.append(x)


def build(max_workers: int, name: str = "w1", **flow_kw: Any) -> tuple[Flow, Node[Any, Any]]:
    """The W1 flow: ``source -> hop0 … hop9 -> sink``; returns the flow and the source node."""
    with Flow(f"{name}-mw{max_workers}", max_workers=max_workers, **flow_kw) as flow:
        src = source(name="source")
        prev: Any = src.result
        for i in range(HOPS):
            h = hop(name=f"hop{i}")
            prev >> h.x
            prev = h.result
        k = sink(name="sink")
        prev >> k.x
    return flow, src


def verify(state: JobState, n: int = N, where: str = "W1") -> None:
    """Every value reached the sink, in order, and every handler ran exactly once."""
    check(
        state.status == "completed",
        f"{where}: job ended {state.status}, expected completed (error: {state.error})",
    )
    check(
        len(received) == n,
        f"{where}: the sink received {len(received)} values, expected {n}",
    )
    check(
        received == list(range(n)),
        f"{where}: the sink received the values out of order or altered "
        f"(sum {sum(received)}, expected {n * (n - 1) // 2})",
    )
    runs = sum(rs.activations for rs in state.routine_states.values())
    expected = 1 + n * (HOPS + 1)
    check(runs == expected, f"{where}: {runs} handler runs, expected {expected}")


def run_once(flow: Flow, src: Node[Any, Any], n: int = N, timeout: float | None = None) -> JobState:
    """Run one W1 job and check it (no job timeout unless given: the default path)."""
    received.clear()
    state = flow.run(src.n(n), timeout=timeout)
    where = f"W1 ({flow.flow_id}, max_workers={flow.max_workers}, timeout={timeout})"
    verify(state, n, where)
    return state


# -- floors --------------------------------------------------------------------------


def _hop(x: int) -> int:
    return x


def _stages(out: list[int]) -> list[Callable[[int], Any]]:
    return [_hop] * HOPS + [out.append]


def floor_plain(n: int = N) -> float:
    """Seconds for the 12 functions called in a plain loop."""

    def src(k: int) -> Iterator[int]:
        yield from range(k)

    out: list[int] = []
    stages = _stages(out)
    t0 = perf_counter()
    for v in src(n):
        x = v
        for f in stages:
            x = f(x)
    dt = perf_counter() - t0
    check(out == list(range(n)), "W1 plain floor lost values")
    return dt


def floor_queue_thread(n: int = N) -> float:
    """Seconds for one dispatcher thread draining a SimpleQueue of (stage, value) tasks."""
    out: list[int] = []
    stages = _stages(out)
    last = len(stages) - 1
    q: SimpleQueue[tuple[int, int] | None] = SimpleQueue()
    done = threading.Event()

    def loop() -> None:
        get, put = q.get, q.put
        remaining = n
        while remaining:
            item = get()
            if item is None:  # the source task
                for v in range(n):
                    put((0, v))
                continue
            stage, v = item
            r = stages[stage](v)
            if stage < last:
                put((stage + 1, r))
            else:
                remaining -= 1
        done.set()

    t0 = perf_counter()
    t = threading.Thread(target=loop)
    t.start()
    q.put(None)
    done.wait()
    dt = perf_counter() - t0
    t.join()
    check(out == list(range(n)), "W1 SimpleQueue floor lost values")
    return dt


def _submitter(
    pool: ThreadPoolExecutor, work: Callable[[int, int], None]
) -> Callable[[int, int], Any]:
    def submit(stage: int, v: int) -> Any:
        return pool.submit(work, stage, v)

    return submit


def _putter(q: SimpleQueue[tuple[int, int] | None]) -> Callable[[int, int], None]:
    def submit(stage: int, v: int) -> None:
        q.put((stage, v))

    return submit


def floor_pool(n: int = N, workers: int = 4, executor: bool = True) -> float:
    """Seconds for a dispatcher handing every task to ``workers`` threads and back.

    With ``executor`` the hand-off is ``ThreadPoolExecutor.submit``; without, plain
    threads pulling from a ``SimpleQueue``. Results come back on the dispatcher's
    inbox (a ``SimpleQueue``), as in the engine's pool mode.
    """
    out: list[int] = []
    stages = _stages(out)
    last = len(stages) - 1
    inbox: SimpleQueue[tuple[int, int]] = SimpleQueue()

    def work(stage: int, v: int) -> None:
        inbox.put((stage, stages[stage](v)))

    jobs: SimpleQueue[tuple[int, int] | None] = SimpleQueue()

    def worker() -> None:
        get = jobs.get
        while (item := get()) is not None:
            work(*item)

    pool: ThreadPoolExecutor | None = None
    threads: list[threading.Thread] = []
    if executor:
        pool = ThreadPoolExecutor(workers)
        for f in [pool.submit(int) for _ in range(workers * 2)]:
            f.result()
        submit: Callable[[int, int], Any] = _submitter(pool, work)
    else:
        threads = [threading.Thread(target=worker) for _ in range(workers)]
        for t in threads:
            t.start()
        submit = _putter(jobs)

    t0 = perf_counter()
    ready: deque[tuple[int, int]] = deque((0, v) for v in range(n))
    inflight = 0
    finished = 0
    get = inbox.get
    while finished < n:
        while ready and inflight < workers:
            submit(*ready.popleft())
            inflight += 1
        stage, r = get()
        inflight -= 1
        if stage < last:
            ready.append((stage + 1, r))
        else:
            finished += 1
    dt = perf_counter() - t0
    if pool is not None:
        pool.shutdown()
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    check(sorted(out) == list(range(n)), "W1 pool floor lost values")
    return dt


def floor_pool_batched(n: int = N, workers: int = 4, batch: int = 64) -> float:
    """Seconds for the pool floor when each hand-off carries up to ``batch`` tasks.

    The dispatcher splits the ready tasks into chunks for idle workers; a worker
    runs a chunk and posts all its results at once. This is the floor of a pool
    design that amortises the thread hand-off over several tasks.
    """
    out: list[int] = []
    stages = _stages(out)
    last = len(stages) - 1
    inbox: SimpleQueue[list[tuple[int, int]]] = SimpleQueue()
    jobs: SimpleQueue[list[tuple[int, int]] | None] = SimpleQueue()

    def worker() -> None:
        get = jobs.get
        while (chunk := get()) is not None:
            inbox.put([(s, stages[s](v)) for s, v in chunk])

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    t0 = perf_counter()
    ready: deque[tuple[int, int]] = deque((0, v) for v in range(n))
    busy = 0
    finished = 0
    while finished < n:
        while ready and busy < workers:
            k = min(batch, max(1, len(ready) // (workers - busy)))
            jobs.put([ready.popleft() for _ in range(k)])
            busy += 1
        results = inbox.get()
        busy -= 1
        for stage, r in results:
            if stage < last:
                ready.append((stage + 1, r))
            else:
                finished += 1
    dt = perf_counter() - t0
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    check(sorted(out) == list(range(n)), "W1 batched pool floor lost values")
    return dt


def floor_pool_pipeline(n: int = N, workers: int = 4) -> float:
    """Seconds for the batched pool floor that keeps the engine's rule: one activation
    per node at a time (every routine here has ``concurrency=1``).

    Each round the dispatcher takes the head value of every idle stage that has one,
    splits these tasks over the idle workers, and each worker posts its chunk's results
    at once. This bounds what batching can give W1 without changing its semantics.
    """
    out: list[int] = []
    stages = _stages(out)
    last = len(stages) - 1
    inbox: SimpleQueue[list[tuple[int, int]]] = SimpleQueue()
    jobs: SimpleQueue[list[tuple[int, int]] | None] = SimpleQueue()

    def worker() -> None:
        get = jobs.get
        while (chunk := get()) is not None:
            inbox.put([(s, stages[s](v)) for s, v in chunk])

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    t0 = perf_counter()
    queues: list[deque[int]] = [deque() for _ in stages]
    queues[0].extend(range(n))
    busy = [False] * len(stages)
    idle_workers = workers
    finished = 0
    while finished < n:
        ready = [(i, q.popleft()) for i, q in enumerate(queues) if q and not busy[i]]
        if ready and idle_workers:
            for i, _ in ready:
                busy[i] = True
            k = min(idle_workers, len(ready))
            for c in range(k):
                jobs.put(ready[c::k])
            idle_workers -= k
        elif ready:  # no idle worker: put the values back
            for i, v in reversed(ready):
                queues[i].appendleft(v)
        results = inbox.get()
        idle_workers += 1
        for stage, r in results:
            busy[stage] = False
            if stage < last:
                queues[stage + 1].append(r)
            else:
                finished += 1
    dt = perf_counter() - t0
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    check(out == list(range(n)), "W1 pipeline pool floor lost or reordered values")
    return dt


# -- the workload --------------------------------------------------------------------


def run(cfg: Config, report: Report) -> None:
    """Measure W1 at max_workers 1 and 4, with its floors."""
    n = 500 if cfg.quick else N
    handlers = 1 + n * (HOPS + 1)
    per = 1e6 / handlers
    plain = figure([floor_plain(n) for _ in range(cfg.repeats)], cfg) * per
    report.floor("W1", "12 functions in a plain loop", plain, "µs/handler")
    qthread = figure([floor_queue_thread(n) for _ in range(cfg.repeats)], cfg) * per
    report.floor("W1", "SimpleQueue + 1 dispatcher thread", qthread, "µs/handler")
    tpe = figure([floor_pool(n, 4, executor=True) for _ in range(cfg.repeats)], cfg) * per
    report.floor("W1", "dispatcher + ThreadPoolExecutor(4) hand-off", tpe, "µs/handler")
    raw = figure([floor_pool(n, 4, executor=False) for _ in range(cfg.repeats)], cfg) * per
    report.floor("W1", "dispatcher + 4 threads on a SimpleQueue", raw, "µs/handler")
    raw1 = figure([floor_pool(n, 1, executor=False) for _ in range(cfg.repeats)], cfg) * per
    report.floor("W1", "dispatcher + 1 thread on a SimpleQueue (pure hand-off)", raw1, "µs/handler")
    batched = figure([floor_pool_batched(n, 4) for _ in range(cfg.repeats)], cfg) * per
    report.floor("W1", "dispatcher + 4 threads, up to 64 tasks per hand-off", batched, "µs/handler")
    pipeline = figure([floor_pool_pipeline(n, 4) for _ in range(cfg.repeats)], cfg) * per
    report.floor(
        "W1", "dispatcher + 4 threads, batched, 1 activation per node", pipeline, "µs/handler"
    )
    cases: list[tuple[int, float | None, float, str]] = [
        (1, None, qthread, "SimpleQueue thread"),
        (4, None, raw, "4 threads on a SimpleQueue"),
        # Not an issue-6 workload: shows what a job timeout costs on the default path.
        (1, JOB_TIMEOUT, qthread, "SimpleQueue thread"),
    ]
    for mw, timeout, floor, floor_what in cases:
        flow, src = build(mw)
        try:
            run_once(flow, src, 50, timeout)  # warm-up: compile, threads, caches
            reps = cfg.repeats if mw == 1 and timeout is None else max(1, min(cfg.repeats, 3))
            cpu: list[float] = []
            use = [0.0, 0.0, 0.0, 0.0]
            secs = timed(functools.partial(run_once, flow, src, n, timeout), reps, cpu, use)
        finally:
            flow.shutdown()
        report.rows.append(
            Row(
                "W1",
                f"stream, max_workers={mw}"
                + (f", run(timeout={timeout:g})" if timeout is not None else ""),
                figure(secs, cfg) * per,
                "µs/handler",
                floor=floor,
                floor_what=floor_what,
                target=TARGET_US[mw] if timeout is None else None,
                note=f"CPU {min(cpu) * per:.2f} µs/handler (process, best; mean of the runs: "
                f"user {use[0] * per / reps:.1f} + sys {use[1] * per / reps:.1f} µs, "
                f"{(use[2] + use[3]) / reps / handlers:.2f} context switches per handler); "
                f"{handlers:,} handler runs; {n * (n - 1) // 2:,} = sink total"
                + ("; informational: a job timeout" if timeout is not None else ""),
                samples=[s * per for s in secs],
            )
        )


def _rss_main(workers: int) -> None:
    flow, src = build(workers)
    run_once(flow, src)
    flow.shutdown()
    print(peak_rss_kib())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rss", action="store_true", help="run W1 once, print peak RSS (KiB)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if args.rss:
        _rss_main(args.workers)
    else:
        rep = Report()
        run(Config(), rep)
        for row in rep.rows:
            print(row.as_dict())
