"""W3 fan-in: one value fanned out to 100 routines, joined by an ``Append`` slot.

``scatter -> work_0 … work_99 -> gather(values: Append[int])``: each ``work`` adds
1, ``gather`` sums, so a run fed ``x`` must output ``[100 * (x + 1)]`` (which, with
every value equal to ``x + 1 > 0``, also proves that exactly 100 values arrived).
Figure: the median wall time of one ``flow.run``, ``max_workers`` 1 and 4.

Floor, same process: the 102 functions called directly (``sum`` over a list).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import SimpleQueue
from time import perf_counter
from typing import Any

from routilux import Append, Flow, Node, routine

from ._common import Config, Report, Row, check, figure, median

WIDTH = 100
RUNS = 300
TARGET_MS = 0.5


@routine
def scatter(x: int) -> int:
    return x


@routine
def work(x: int) -> int:
    return x + 1


@routine
def gather(values: Append[int]) -> int:
    return sum(values)


def build(max_workers: int) -> tuple[Flow, Node[Any, Any]]:
    """The fan-in flow; returns it and the ``scatter`` node."""
    with Flow(f"w3-mw{max_workers}", max_workers=max_workers) as flow:
        s = scatter(name="scatter")
        g = gather(name="gather")
        for i in range(WIDTH):
            w = work(name=f"work{i}")
            s.result >> w.x
            w.result >> g.values
    return flow, s


def run_times(flow: Flow, entry: Node[Any, Any], runs: int) -> list[float]:
    """Seconds per ``flow.run``, each result checked."""
    out: list[float] = []
    for i in range(runs):
        t0 = perf_counter()
        state = flow.run(entry.x(i))
        out.append(perf_counter() - t0)
        check(
            state.status == "completed",
            f"W3: run {i} ended {state.status}, expected completed (error: {state.error})",
        )
        got = state.outputs.get("gather.result")
        want = [WIDTH * (i + 1)]
        check(got == want, f"W3: run {i} output gather.result={got!r}, expected {want}")
    return out


def _work(x: int) -> int:
    return x + 1


def floor_plain(runs: int) -> list[float]:
    """Seconds per run of the same 102 functions called directly."""
    fns = [_work] * WIDTH
    out: list[float] = []
    for i in range(runs):
        t0 = perf_counter()
        x = _work(i) - 1  # scatter
        total = sum([f(x) for f in fns])
        out.append(perf_counter() - t0)
        check(total == WIDTH * (i + 1), "W3 plain floor: wrong total")
    return out


def floor_pool(runs: int, workers: int = 4) -> list[float]:
    """Seconds per run of the fan-in as plain tasks on ``workers`` threads.

    A dispatcher thread (the caller) hands each task to threads pulling from a
    ``SimpleQueue`` and takes the results back from another: ``scatter``, then the
    100 ``work`` tasks (up to ``workers`` in flight), then the sum. The pure cost of
    moving 102 tasks through a thread pool and back, with no engine at all.
    """
    tasks: SimpleQueue[tuple[Callable[[int], int], int] | None] = SimpleQueue()
    results: SimpleQueue[int] = SimpleQueue()

    def worker() -> None:
        get, put = tasks.get, results.put
        while (item := get()) is not None:
            fn, x = item
            put(fn(x))

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    out: list[float] = []
    try:
        for i in range(runs):
            t0 = perf_counter()
            tasks.put((_scatter, i))
            x = results.get()
            got: list[int] = []
            sent = 0
            while len(got) < WIDTH:
                while sent < WIDTH and sent - len(got) < workers:
                    tasks.put((_work, x))
                    sent += 1
                got.append(results.get())
            tasks.put((sum, got))  # type: ignore[arg-type]  # gather runs on a worker too
            total = results.get()
            out.append(perf_counter() - t0)
            check(total == WIDTH * (i + 1), "W3 pool floor: wrong total")
    finally:
        for _ in threads:
            tasks.put(None)
        for t in threads:
            t.join()
    return out


def _scatter(x: int) -> int:
    return x


def run(cfg: Config, report: Report) -> None:
    """Measure W3 at max_workers 1 and 4, with its floor."""
    runs = 60 if cfg.quick else RUNS
    floor = median(floor_plain(runs)) * 1e3
    report.floor("W3", "102 functions called directly", floor, "ms/run")
    pool = median(floor_pool(max(20, runs // 6))) * 1e3
    report.floor("W3", "102 tasks through 4 threads on a SimpleQueue (median)", pool, "ms/run")
    for mw, k in ((1, runs), (4, max(20, runs // 6))):
        flow, entry = build(mw)
        # The runs go in cfg.repeats batches; each batch's median is one sample and the
        # figure is made from the samples like every whole-run figure (the fastest by
        # default): a batch that a busy neighbour slowed down does not set the figure.
        batches = max(1, cfg.repeats)
        per = max(1, k // batches)
        try:
            run_times(flow, entry, 10)  # warm-up
            secs = [run_times(flow, entry, per) for _ in range(batches)]
        finally:
            flow.shutdown()
        medians = [median(b) for b in secs]
        every = sorted(t for b in secs for t in b)
        report.rows.append(
            Row(
                "W3",
                f"fan-in 1->{WIDTH}->Append, max_workers={mw}",
                figure(medians, cfg) * 1e3,
                "ms/run",
                floor=floor if mw == 1 else pool,
                floor_what="direct calls" if mw == 1 else "4 threads on a SimpleQueue",
                target=TARGET_MS,
                note=f"median of each of {batches} batches of {per} runs, {WIDTH + 2} "
                f"handlers each; all runs: median {median(every) * 1e3:.3f} ms, "
                f"p90 {every[int(0.9 * (len(every) - 1))] * 1e3:.3f} ms",
                samples=[m * 1e3 for m in medians],
            )
        )
