"""Cost per task of checkpoint policies (docs/durability.md quotes this script).

    python benchmarks/durability.py [N]

Runs a map-reduce of N items (N+2 tasks) inline with no store, then with
``checkpoint="every_task"`` on each store, and prints the extra cost per task.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from routilux import Append, FileStore, Flow, MemoryStore, SQLiteStore, routine


@routine
def split(n: int) -> Iterator[int]:
    yield from range(n)


@routine
def work(x: int) -> int:
    return x * x


@routine
def total(values: Append[int]) -> int:
    return sum(values)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with Flow("bench") as flow:
        s, w, t = split(), work(), total()
        s.result >> w.x
        w.result >> t.values
    tmp = Path(tempfile.mkdtemp())
    cases = {
        "no store": None,
        "MemoryStore": MemoryStore(),
        "FileStore(fsync=False)": FileStore(tmp / "files", fsync=False),
        "FileStore(fsync=True)": FileStore(tmp / "files-sync"),
        "SQLiteStore (WAL, synchronous=NORMAL)": SQLiteStore(tmp / "jobs.db"),
        "SQLiteStore (WAL, synchronous=FULL)": SQLiteStore(tmp / "full.db", synchronous="FULL"),
    }
    flow.run(s.n(10))  # warm-up
    base = 0.0
    for label, store in cases.items():
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            if store is None:
                state = flow.run(s.n(n))
            else:
                state = flow.run(s.n(n), store=store, checkpoint="every_task")
            best = min(best, time.perf_counter() - t0)
            assert state.status == "completed", state.error
        per_task = best / (n + 2) * 1e6
        if store is None:
            base = per_task
            print(f"{label:40s} {per_task:8.1f} us/task")
        else:
            print(f"{label:40s} {per_task:8.1f} us/task  (+{per_task - base:.1f} us/task)")


if __name__ == "__main__":
    main()
