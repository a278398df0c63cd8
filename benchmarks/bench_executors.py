"""Executors compared: threads vs processes vs Ray vs Dask (``make bench``; issue 7).

``python -m benchmarks.bench_executors [--quick] [--only threads,processes,ray,dask]``

Three figures per executor, printed as one table (not a test: numbers, not verdicts):

* **CPU**: 200 tasks of 50 ms of pure-Python CPU work in one job (a generator fans
  out to a ``concurrency=200`` node, an ``Append`` sums the results): wall time and
  speed-up over the same work run serially in this process (sampled once, before any
  engine starts; other load on the machine makes both figures noisy). Threads hold the GIL, so they stay
  near 1x; process and cluster workers scale with cores (2 cores here: at best 2x).
* **hop**: one job that is a chain of trivial activations (each one's output is the
  next one's input), so each hop is a full round trip: dispatcher → executor → worker
  → dispatcher. Milliseconds per hop.
* **raw**: the executor alone, ``submit(run_activation, blob).result()`` in a loop,
  no flow: the floor under "hop".
* **tasks/s**: 2000 trivial activations of one node (``concurrency=64``), one job.

Ray and Dask run local clusters bound to 127.0.0.1 with as many workers as cores;
an engine that is not installed is reported as such (``pip install routilux[ray]``,
``routilux[dask]``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager

from routilux import Append, Emit, Flow, Outputs, routine
from routilux.executors import ProcessPool, RayExecutor, dask_executor
from routilux.remote import _Call, _encode, run_activation

CPU_TASKS = 200
CPU_MS = 50
HOPS = 200
TRIVIAL = 2000
CORES = os.cpu_count() or 1

_LOOPS: list[int] = [0]


def burn_loops(loops: int) -> int:
    acc = 0
    for i in range(loops):
        acc = (acc + i * i) % 1_000_003
    return acc


def calibrate(ms: float) -> int:
    """Loop count that takes about ``ms`` milliseconds of CPU here."""
    n = 20_000
    while True:
        t0 = time.perf_counter()
        burn_loops(n)
        dt = time.perf_counter() - t0
        if dt > 0.05:
            return int(n * ms / 1000 / dt)
        n *= 2


@routine
def fan(n: int, loops: int) -> Iterator[int]:
    for _ in range(n):
        yield loops


@routine(concurrency=CPU_TASKS)
def burn(loops: int) -> int:
    return burn_loops(loops)


@routine
def add_up(values: Append[int]) -> int:
    return sum(values)


class Hop(Outputs):
    again: Emit[int]
    done: Emit[int]


@routine
def hop(n: int, out: Hop) -> None:
    if n > 0:
        out.again(n - 1)
    else:
        out.done(n)


@routine
def spread(n: int) -> Iterator[int]:
    yield from range(n)


@routine(concurrency=64)
def trivial(x: int) -> int:
    return x


# -- executors -----------------------------------------------------------------------


@contextmanager
def threads() -> Iterator[tuple[Executor, int]]:
    with ThreadPoolExecutor(CORES) as ex:
        yield ex, CORES


@contextmanager
def processes() -> Iterator[tuple[Executor, int]]:
    ex = ProcessPool(CORES)
    try:
        yield ex, CORES * 4
    finally:
        ex.shutdown(cancel_futures=True)


@contextmanager
def ray_cluster() -> Iterator[tuple[Executor, int]]:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # Ray's workers are fresh interpreters: they import this module from the repo root.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="ray") as tmp:
        ray.init(
            num_cpus=CORES,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            _temp_dir=tmp,
            log_to_driver=False,
            configure_logging=False,
        )
        try:
            yield RayExecutor(), CORES * 4
        finally:
            ray.shutdown()


@contextmanager
def dask_cluster() -> Iterator[tuple[Executor, int]]:
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(
            n_workers=CORES,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
    client = Client(cluster)
    try:
        yield dask_executor(client), CORES * 4
    finally:
        client.close()
        cluster.close()


ENGINES: dict[str, Callable[[], AbstractContextManager[tuple[Executor, int]]]] = {
    "threads": threads,
    "processes": processes,
    "ray": ray_cluster,
    "dask": dask_cluster,
}


# -- measurements --------------------------------------------------------------------


def serial_seconds(tasks: int, loops: int) -> float:
    """The CPU work of ``tasks`` tasks run here, one after another (sampled, scaled up)."""
    sample = min(tasks, 20)
    t0 = time.perf_counter()
    for _ in range(sample):
        burn_loops(loops)
    return (time.perf_counter() - t0) * tasks / sample


def cpu_seconds(ex: Executor, inflight: int, tasks: int, loops: int) -> float:
    with Flow("cpu", executor=ex, max_workers=inflight) as flow:
        f, b, s = fan(), burn(), add_up()
        f.result >> b.loops
        b.result >> s.values
    t0 = time.perf_counter()
    state = flow.run(f.n(tasks), f.loops(loops), timeout=600)
    dt = time.perf_counter() - t0
    want = burn_loops(loops) * tasks
    if state.outputs.get("add_up.result") != [want]:
        raise SystemExit(f"cpu: wrong result {state.outputs} (error: {state.error})")
    return dt


def hop_ms(ex: Executor, inflight: int, hops: int) -> float:
    with Flow("hops", executor=ex, max_workers=inflight) as flow:
        h = hop()
        h.again >> h.n
    flow.run(h.n(3), timeout=600)  # warm: workers import the routine once
    t0 = time.perf_counter()
    state = flow.run(h.n(hops), timeout=600)
    dt = time.perf_counter() - t0
    if state.outputs.get("hop.done") != [0]:
        raise SystemExit(f"hop: wrong result {state.outputs} (error: {state.error})")
    return dt / (hops + 1) * 1000


def raw_ms(ex: Executor, n: int) -> float:
    blob = _encode(_Call(f"{__name__}:trivial", "trivial", [1]))
    ex.submit(run_activation, blob).result()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        ex.submit(run_activation, blob).result()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def tasks_per_s(ex: Executor, inflight: int, n: int) -> float:
    with Flow("trivial", executor=ex, max_workers=inflight * 8) as flow:
        s, t = spread(), trivial()
        s.result >> t.x
    flow.run(s.n(10), timeout=600)
    t0 = time.perf_counter()
    state = flow.run(s.n(n), timeout=600)
    dt = time.perf_counter() - t0
    if len(state.outputs.get("trivial.result", [])) != n:
        raise SystemExit(f"trivial: lost results (error: {state.error})")
    return n / dt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--only", default=",".join(ENGINES), help="engines, comma-separated")
    args = parser.parse_args(argv)
    tasks, hops, trivial_n = (20, 50, 200) if args.quick else (CPU_TASKS, HOPS, TRIVIAL)
    loops = calibrate(CPU_MS)
    serial = serial_seconds(tasks, loops)
    print(
        f"executors: {tasks} tasks x {CPU_MS} ms CPU (serial here: {serial:.2f} s), "
        f"{hops} hops, {trivial_n} trivial tasks; {CORES} cores, Python {sys.version.split()[0]}"
    )
    header = f"{'engine':<10} {'start s':>8} {'CPU s':>7} {'speed-up':>9} {'hop ms':>8} {'raw ms':>8} {'tasks/s':>9}"
    print(header)
    print("-" * len(header))
    for name in args.only.split(","):
        make = ENGINES[name]
        t0 = time.perf_counter()
        try:
            cm = make()
            ex, inflight = cm.__enter__()
        except ImportError as exc:
            print(f"{name:<10} not installed ({exc.name}): pip install 'routilux[{name}]'")
            continue
        try:
            start = time.perf_counter() - t0
            raw = raw_ms(ex, 20 if args.quick else 200)
            hop_t = hop_ms(ex, inflight, hops)
            rate = tasks_per_s(ex, inflight, trivial_n)
            cpu = cpu_seconds(ex, inflight, tasks, loops)
        finally:
            cm.__exit__(None, None, None)
        print(
            f"{name:<10} {start:>8.2f} {cpu:>7.2f} {serial / cpu:>8.2f}x "
            f"{hop_t:>8.2f} {raw:>8.2f} {rate:>9.0f}"
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    # Run as a script this module is `__main__`, which workers cannot import: use the
    # routines of the importable module of the same name instead.
    from benchmarks.bench_executors import main as _main

    raise SystemExit(_main())
