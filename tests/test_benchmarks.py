"""`make bench` and `python -m benchmarks.ab` keep working: their workloads run and check out.

No speed is asserted (speed is what the benchmarks print, not what tests judge): these
run the workloads at their `--quick` sizes and rely on the correctness checks every
workload makes (all values delivered, in order, right totals), so an engine change that
breaks a benchmark's flow, or a benchmark that rots, fails here and not in the next
person's `make bench`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_every_engine_workload_runs_and_passes_its_own_checks() -> None:
    res = _run("-m", "benchmarks", "--quick", "--repeats", "1", "--only", "W1,W2,W2b,W3,W4,W5")
    assert res.returncode == 0, res.stderr
    assert "all correctness checks passed" in res.stdout
    rows = [line for line in res.stdout.splitlines() if line.startswith("| W")]
    # W1 x3, W2 x2, W2b x2, W3 x2, W4 x2, W5 x1: one row per figure the issue asks for.
    assert len(rows) == 12, res.stdout
    assert {r.split("|")[1].strip() for r in rows} == {"W1", "W2", "W2b", "W3", "W4", "W5"}


def test_a_bad_workload_name_is_refused_with_the_valid_ones() -> None:
    res = _run("-m", "benchmarks", "--only", "W9")
    assert res.returncode == 2
    assert "unknown workload(s) W9" in res.stderr
    assert "(choose from W1, W2, W2b, W3, W4, W5, import)" in res.stderr


def test_the_ab_child_measures_this_tree_and_checks_its_results() -> None:
    res = _run("benchmarks/ab.py", "--child", str(ROOT), "w1,w1p,w2,w3,w3p", "1")
    assert res.returncode == 0, res.stderr
    figures = json.loads(res.stdout)
    assert set(figures) == {"w1", "w1p", "w2", "w3", "w3p"}
    assert all(v > 0 for v in figures.values())


def test_the_ab_child_refuses_a_tree_without_routilux() -> None:
    res = _run("benchmarks/ab.py", "--child", str(ROOT / "docs"), "w1", "1")
    assert res.returncode != 0
    assert "not from" in res.stderr


def test_ab_refuses_an_unknown_revision() -> None:
    res = _run("-m", "benchmarks.ab", "--base", "no-such-rev", "--rounds", "1", "--only", "w1")
    assert res.returncode != 0
    assert "not a revision" in res.stderr


def test_passes_keep_each_rows_best_pass_with_its_own_floor() -> None:
    from benchmarks._common import Floor, Report, Row, merge_passes

    def report(us: float, floor_us: float, jobs: float, direct: float) -> Report:
        rep = Report()
        rep.rows.append(Row("W1", "stream", us, "µs/handler", floor=floor_us, target=3.0))
        rep.rows.append(
            Row("W2", "jobs", jobs, "jobs/s", floor=direct, target=20_000, higher_is_better=True)
        )
        rep.floors.append(Floor("W1", "loop", floor_us, "µs/handler"))
        rep.floors.append(Floor("W2", "direct", direct, "jobs/s"))
        return rep

    slow, fast = report(3.6, 0.30, 15_000, 0.8e6), report(2.2, 0.20, 21_000, 1.4e6)
    merged = merge_passes([slow, fast])
    w1, w2 = merged.rows
    assert (w1.value, w1.floor, w1.verdict) == (2.2, 0.20, "PASS")
    assert (w2.value, w2.floor, w2.verdict) == (21_000, 1.4e6, "PASS")
    assert w1.note.startswith("best of 2 passes (3.60, 2.20)")
    assert {f.what: f.value for f in merged.floors} == {"loop": 0.20, "direct": 1.4e6}
    assert merge_passes([slow]) is slow


def test_the_bench_runs_several_passes_into_one_table() -> None:
    res = _run("-m", "benchmarks", "--quick", "--repeats", "1", "--passes", "2", "--only", "W4")
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines() if line.startswith("| W4")]
    assert len(rows) == 2
    assert all("best of 2 passes" in r for r in rows)
