"""``python -m benchmarks`` (``make bench``): run every workload of issue 6, print one table.

Options: ``--only W1,W4`` picks workloads, ``--repeats N`` sets the repetitions
of whole-run measurements and ``--stat best|median`` how they become the figure
(default: the fastest run, see ``_common.figure``), ``--passes N`` runs the whole
selection N times over and keeps each row's best pass (repetitions spread over minutes
instead of a second: this machine's speed moves with its neighbours), ``--quick`` shrinks sizes for a smoke
run (its figures are not the issue's workloads), ``--json PATH`` also writes every
row and floor as JSON. Exits 1 when a correctness check fails.
"""

from __future__ import annotations

import argparse
import datetime
import faulthandler
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from . import imports, w1_stream, w2_jobs, w2b_latency, w3_fanin, w4_snapshot, w5_durable
from ._common import BenchmarkFailure, Config, Report, format_table, merge_passes

WORKLOADS: dict[str, ModuleType] = {
    "W1": w1_stream,
    "W2": w2_jobs,
    "W2b": w2b_latency,
    "W3": w3_fanin,
    "W4": w4_snapshot,
    "W5": w5_durable,
    "import": imports,
}


WATCHDOG_S = 900


def _git_rev() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "routilux"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" + uncommitted changes in routilux/" if dirty else "")


def _header() -> str:
    import routilux

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"routilux {routilux.__version__} @ {_git_rev()} | Python {platform.python_version()} "
        f"| {platform.machine()}, {os.cpu_count()} CPUs, load {load:.2f} | {now}"
    )


def _derived(report: Report) -> list[str]:
    """Figures computed from two rows (printed when both were measured)."""
    rows = {(r.workload, r.metric): r.value for r in report.rows}
    w1 = rows.get(("W1", "stream, max_workers=1"))
    w2 = rows.get(("W2", "jobs, max_workers=1"))
    out: list[str] = []
    if w1 and w2:
        per_job = 1e6 / w2
        fixed = per_job - w2_jobs.HOPS * w1
        # W1's handler runs belong to one long job; a fresh job's hop also makes and
        # retires that node's per-job state, so the rest is not only the fixed cost.
        out.append(
            f"W2: {per_job:.1f} µs per job = {w2_jobs.HOPS} handler runs at W1's {w1:.2f} µs "
            f"+ {fixed:.1f} µs more (job start and finish, and each node's per-job state: "
            f"NodeRun, RoutineState, recycling, their GC); >= 20,000 jobs/s leaves "
            f"{50 - w2_jobs.HOPS * w1:.1f} µs for it"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the selected workloads and print the table; 1 on a failed check, else 0."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only", default="", help="comma-separated workloads: " + ",".join(WORKLOADS)
    )
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of whole runs")
    parser.add_argument(
        "--stat",
        choices=["best", "median"],
        default="best",
        help="whole-run repetitions -> figure: the fastest (default) or the median",
    )
    parser.add_argument(
        "--passes", type=int, default=1, help="run the selection N times, keep each row's best"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    chosen = [w.strip() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)} (choose from {', '.join(WORKLOADS)})"
        )
    cfg = Config(repeats=max(1, args.repeats), quick=args.quick, stat=args.stat)
    passes = max(1, args.passes)
    reports: list[Report] = []
    # A hung engine must not hang `make bench`: dump every thread's stack and exit.
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    header = _header()  # the load average and time at the start, also in the JSON
    print(header, flush=True)
    t0 = time.perf_counter()
    for n in range(passes):
        report = Report()
        reports.append(report)
        for name in chosen:
            t = time.perf_counter()
            try:
                WORKLOADS[name].run(cfg, report)
            except BenchmarkFailure as exc:
                print(f"\nFAILED {name}: {exc}", file=sys.stderr)
                return 1
            where = f" (pass {n + 1}/{passes})" if passes > 1 else ""
            print(
                f"  {name} done in {time.perf_counter() - t:.1f} s{where}",
                file=sys.stderr,
                flush=True,
            )
    report = merge_passes(reports)
    print()
    print(format_table(report.rows))
    print("\nFloors (plain Python, same process):")
    width = max((len(f.what) for f in report.floors), default=0)
    for f in report.floors:
        print(f"  {f.workload:<7} {f.what:<{width}} {f.value:>14,.3f} {f.unit}")
    derived = _derived(report)
    if derived:
        print("\nDerived:")
        for line in derived:
            print(f"  {line}")
    print(
        f"\n{len(report.rows)} rows in {time.perf_counter() - t0:.0f} s; all correctness checks passed."
    )
    if args.quick:
        print("(--quick: reduced sizes; not the issue's workloads)")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "header": header,
                    "argv": sys.argv,
                    "rows": [r.as_dict() for r in report.rows],
                    "floors": [vars(f) for f in report.floors],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
