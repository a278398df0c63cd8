"""Profile the hot path of a workload: cProfile on every thread, or py-spy sampling.

    python -m benchmarks.hotpath w1 --workers 1            # cProfile, all threads
    python -m benchmarks.hotpath w1 --workers 4 --py-spy   # sampling, no tracing overhead
    python -m benchmarks.hotpath w2 --py-spy --gil         # only samples that hold the GIL
    python -m benchmarks.hotpath w5 --py-spy               # W1 with SQLiteStore, every_task
    python -m benchmarks.hotpath all --rate 2000           # all of them, with py-spy

cProfile only traces the thread that enables it, and the engine runs handlers on
its dispatcher and worker threads, so this wraps ``threading.Thread.run`` to give
every thread its own profiler and merges them. Deterministic tracing inflates
small Python functions, so shares are indicative; py-spy (``pip install py-spy``,
the ``bench`` extra) samples without changing the program.

Shares are of *busy* time: time blocked in a lock, a queue ``get`` or an event
wait (idle threads) is listed apart.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routilux import Flow

_profiles: list[tuple[str, cProfile.Profile]] = []
_lock = threading.Lock()

# Where an idle thread sits: excluded from "busy" shares.
_BLOCKING = (
    "acquire' of '_thread.lock",
    "acquire' of '_thread.RLock",
    "get' of '_queue.SimpleQueue",
    "method 'wait'",
    "threading.py:",  # Event.wait / Condition.wait / Thread.join frames
)


# py-spy leaf frames of a thread blocked in a wait (py-spy's idle detection misses lock waits).
_WAITS = (" Latch.wait", " Event.wait", " Condition.wait", " Thread.join", "_wait_for_tstate_lock")


def _install_thread_profiler() -> None:
    orig = threading.Thread.run

    def run(self: threading.Thread) -> None:
        prof = cProfile.Profile()
        with _lock:
            _profiles.append((self.name, prof))
        prof.enable()
        try:
            orig(self)
        finally:
            prof.disable()

    threading.Thread.run = run  # type: ignore[method-assign]


def _workload(name: str, workers: int, repeat: int) -> tuple[Callable[[], None], Flow]:
    """``(run, flow)`` for a workload: ``run()`` runs it ``repeat`` times, checked."""
    if name == "w1":
        from . import w1_stream

        flow, src = w1_stream.build(workers)

        def run_w1() -> None:
            for _ in range(repeat):
                w1_stream.run_once(flow, src)

        return run_w1, flow
    if name == "w2":
        from . import w2_jobs

        flow, entry = w2_jobs.build(workers)

        def run_w2() -> None:
            for _ in range(repeat):
                w2_jobs.run_jobs(flow, entry, w2_jobs.JOBS)

        return run_w2, flow
    if name == "w3":
        from . import w3_fanin

        flow, entry = w3_fanin.build(workers)

        def run_w3() -> None:
            for _ in range(repeat):
                w3_fanin.run_times(flow, entry, w3_fanin.RUNS)

        return run_w3, flow
    if name == "w5":
        import tempfile as _tf

        from routilux.stores import SQLiteStore

        from . import w1_stream

        flow, src = w1_stream.build(workers, name="w5")
        tmp = _tf.mkdtemp(prefix="routilux-hotpath-")

        def run_w5() -> None:
            for r in range(repeat):
                store = SQLiteStore(Path(tmp) / f"jobs{r}.db")
                w1_stream.received.clear()
                state = flow.start(src.n(w1_stream.N), store=store, checkpoint="every_task").wait()
                w1_stream.verify(state, where="W5")
                store.close()

        return run_w5, flow
    msg = f"unknown workload {name!r} (choose from w1, w2, w3, w5)"
    raise SystemExit(msg)


def _blocking(label: str) -> bool:
    return any(b in label for b in _BLOCKING)


def _label(func: tuple[str, int, str]) -> str:
    file, line, fn = func
    if file == "~":
        return fn
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if "routilux" in parts or "benchmarks" in parts else parts[-1]
    return f"{short}:{line} {fn}"


def _cprofile(name: str, workers: int, repeat: int, top: int) -> None:
    _install_thread_profiler()
    run, flow = _workload(name, workers, repeat)
    main = cProfile.Profile()
    main.enable()
    run()
    main.disable()
    flow.shutdown()
    for t in threading.enumerate():
        if t is not threading.current_thread() and t.name.startswith("routilux"):
            t.join(5)
    stats = pstats.Stats(main)
    main_tt: float = stats.total_tt  # type: ignore[attr-defined]
    per_thread: dict[str, float] = collections.defaultdict(float)
    with _lock:
        profiles = list(_profiles)
    for tname, prof in profiles:
        st = pstats.Stats(prof)
        group = tname.rstrip("0123456789_-")
        per_thread[group] += st.total_tt  # type: ignore[attr-defined]
        stats.add(st)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = [(_label(f), v[2], v[3], v[1]) for f, v in raw.items()]  # label, tottime, cumtime, calls
    blocked = sum(r[1] for r in rows if _blocking(r[0]))
    total = sum(r[1] for r in rows)
    busy = total - blocked
    print(
        f"cProfile {name} max_workers={workers} x{repeat}: {total:.3f} s traced on all threads, "
        f"{blocked:.3f} s blocked (waits), {busy:.3f} s busy"
    )
    print(
        "per thread group (tottime incl. waits):",
        ", ".join(f"{k or 'thread'} {v:.3f} s" for k, v in sorted(per_thread.items())),
        f"| main {main_tt:.3f} s",
    )
    print(f"\ntop {top} by own time (share of busy time):")
    print(f"{'own s':>8} {'share':>6} {'cum s':>8} {'calls':>9}  function")
    for label, tt, ct, calls in sorted(rows, key=lambda r: -r[1])[: top * 2]:
        if _blocking(label):
            continue
        print(f"{tt:8.3f} {100 * tt / busy:5.1f}% {ct:8.3f} {calls:9d}  {label}")
        top -= 1
        if top == 0:
            break
    print("\nblocking (idle) entries:")
    for label, tt, _ct, calls in sorted(rows, key=lambda r: -r[1]):
        if _blocking(label) and tt > 0.001:
            print(f"{tt:8.3f}        {'':8} {calls:9d}  {label}")


def _pyspy(
    name: str,
    workers: int,
    repeat: int,
    top: int,
    gil: bool,
    rate: int,
    lines: bool,
    nonblocking: bool = False,
) -> None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "raw.txt"
        cmd = [exe, "record", "--format", "raw", "--rate", str(rate), "-o", str(out)]
        if gil:
            cmd.append("--gil")
        if nonblocking:
            cmd.append("--nonblocking")
        cmd += [
            "--",
            sys.executable,
            "-m",
            "benchmarks.hotpath",
            name,
            "--workers",
            str(workers),
            "--repeat",
            str(repeat),
            "--no-profile",
        ]
        proc = subprocess.run(
            cmd,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        timed = [ln for ln in proc.stdout.splitlines() if ln.startswith("timed ")]
        wall = float(timed[-1].split()[1]) if timed else float("nan")
        raw = out.read_text().splitlines()
    own: collections.Counter[str] = collections.Counter()
    waiting: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw:
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        # Only the timed part: skip import and flow building (frames under <module>/build).
        if not any(
            "run_once" in f or "run_jobs" in f or "run_times" in f or "run_w5" in f for f in frames
        ) and not any("routilux/scheduler.py" in f or "routilux/jobrun.py" in f for f in frames):
            continue
        if any(f.startswith("verify (") for f in frames):
            continue  # the bench's own result checks, outside its clock
        labels = [_frame(f) for f in frames[1:]]
        if labels and labels[-1].endswith(_WAITS):
            waiting[labels[-1]] += n
            continue
        total += n
        if labels:
            own[_frame(frames[-1], lines) if lines else labels[-1]] += n
        for lab in set(labels):
            incl[lab] += n
    print(
        f"py-spy {name} max_workers={workers} x{repeat} at {rate} Hz"
        f"{' (GIL holder only)' if gil else ''}: {total} samples in the timed part "
        f"({wall:.2f} s wall under py-spy)"
    )
    if gil:
        # With --gil a sample is taken only while some thread holds the GIL.
        print(f"the GIL is held {100 * total / rate / wall:.0f}% of the timed wall time")
    print("waiting (not counted):", ", ".join(f"{k} {v}" for k, v in waiting.most_common(5)))
    print(f"\ntop {top} by own samples:")
    for lab, n in own.most_common(top):
        print(f"{n:7d} {100 * n / total:5.1f}%  {lab}")
    print(f"\ntop {top} routilux functions by inclusive samples:")
    shown = 0
    for lab, n in incl.most_common():
        if "routilux/" in lab:
            print(f"{n:7d} {100 * n / total:5.1f}%  {lab}")
            shown += 1
            if shown == top:
                break


def _frame(f: str, lines: bool = False) -> str:
    # "func (path/to/file.py:123)" -> "routilux/scheduler.py func" (or "…py:123 func")
    fn, _, where = f.partition(" (")
    path, _, line = where.rstrip(")").rpartition(":")
    parts = path.split(os.sep)
    short = "/".join(parts[-2:]) if "routilux" in parts or "benchmarks" in parts else parts[-1]
    return f"{short}:{line} {fn}" if lines else f"{short} {fn}"


#: ``all``: (workload, max_workers, repetitions, GIL holder only), a few seconds each.
#: With a pool, threads blocked in a queue ``get`` look busy to py-spy (it cannot see
#: they wait in C), so ``max_workers=4`` is also sampled GIL-holder-only.
ALL = (
    ("w1", 1, 10, False),
    ("w1", 4, 2, False),
    ("w1", 4, 2, True),
    ("w2", 1, 5, False),
    ("w3", 1, 3, False),
    ("w5", 1, 1, False),
)


def main() -> None:
    """Parse the command line and profile."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.hotpath",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "workload",
        choices=["w1", "w2", "w3", "w5", "all"],
        help="all: w1 (1 and 4 workers), w2, w3, w5 with py-spy, one after the other",
    )
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3, help="workload repetitions")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--py-spy", action="store_true", help="sample with py-spy instead of cProfile")
    p.add_argument("--gil", action="store_true", help="py-spy: only samples holding the GIL")
    p.add_argument("--lines", action="store_true", help="py-spy: own samples per source line")
    p.add_argument(
        "--nonblocking",
        action="store_true",
        help="py-spy: do not pause the program to sample (less distortion, rougher stacks)",
    )
    p.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    p.add_argument("--no-profile", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.workload == "all":
        for name, workers, repeat, gil in ALL:
            print(f"\n===== {name}, max_workers={workers} =====", flush=True)
            # GIL-holder runs measure a time share: sample without pausing the program.
            _pyspy(
                name, workers, repeat, a.top, gil or a.gil, a.rate, a.lines, gil or a.nonblocking
            )
    elif a.no_profile:
        run, flow = _workload(a.workload, a.workers, a.repeat)
        t0 = time.perf_counter()
        run()
        print(f"timed {time.perf_counter() - t0:.6f} s", flush=True)
        flow.shutdown()
    elif a.py_spy:
        _pyspy(a.workload, a.workers, a.repeat, a.top, a.gil, a.rate, a.lines, a.nonblocking)
    else:
        _cprofile(a.workload, a.workers, a.repeat, a.top)


if __name__ == "__main__":
    main()
