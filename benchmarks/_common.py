"""Shared pieces of the benchmark suite: result rows, timing, checks, the table.

Every workload module exposes ``run(cfg: Config) -> list[Row]``. A row carries our
figure, the plain-Python floor measured in the same process, and the target from
issue 6; the table prints the ratio and PASS/MISS. Correctness checks raise
:class:`BenchmarkFailure`, which makes ``python -m benchmarks`` exit non-zero.
"""

from __future__ import annotations

import gc
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BenchmarkFailure",
    "Config",
    "Floor",
    "Report",
    "Row",
    "check",
    "figure",
    "format_table",
    "median",
    "peak_rss_kib",
    "timed",
]


class BenchmarkFailure(RuntimeError):
    """A workload produced a wrong result; its figures would be meaningless."""


def check(ok: bool, what: str) -> None:
    """Fail loudly when a correctness check does not hold.

    Raises:
        BenchmarkFailure: ``ok`` is false; ``what`` says what was expected and what was got.
    """
    if not ok:
        raise BenchmarkFailure(what)


@dataclass(frozen=True)
class Config:
    """How hard to measure.

    Attributes:
        repeats: Timed repetitions of each whole-run measurement.
        quick: Smaller sizes where a workload allows it (for smoke runs, not figures).
        stat: How repetitions become the figure: ``"best"`` (the fastest: other
            processes on a shared machine only ever slow a run down) or ``"median"``.
    """

    repeats: int = 5
    quick: bool = False
    stat: str = "best"


@dataclass
class Floor:
    """One extra plain-Python reference measurement, printed under the table."""

    workload: str
    what: str
    value: float
    unit: str


@dataclass
class Row:
    """One line of the table.

    Attributes:
        workload: ``W1``, ``W2b``, …
        metric: What is measured, with its setting (``µs/handler, max_workers=1``).
        value: Our figure in ``unit`` (``None``: not measurable here, see ``note``).
        unit: The unit of ``value``, ``floor`` and ``target``.
        floor: The plain-Python floor in the same unit, measured in the same process.
        floor_what: What the floor is.
        target: Issue 6's target in ``unit`` (``None``: report only).
        higher_is_better: True for throughputs (jobs/s).
        note: Extra facts (sizes, counts) printed after the row.
    """

    workload: str
    metric: str
    value: float | None
    unit: str
    floor: float | None = None
    floor_what: str = ""
    target: float | None = None
    higher_is_better: bool = False
    note: str = ""
    samples: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """How many times worse than the floor (1.0 = as fast as plain Python)."""
        if self.value is None or self.floor is None or self.floor == 0 or self.value == 0:
            return None
        return self.floor / self.value if self.higher_is_better else self.value / self.floor

    @property
    def verdict(self) -> str:
        """``PASS``/``MISS`` against the target, ``-`` when there is none."""
        if self.target is None or self.value is None:
            return "-"
        ok = self.value >= self.target if self.higher_is_better else self.value <= self.target
        return "PASS" if ok else "MISS"

    def as_dict(self) -> dict[str, Any]:
        """The row as plain data (for ``--json``)."""
        return {
            "workload": self.workload,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "floor": self.floor,
            "floor_what": self.floor_what,
            "ratio": self.ratio,
            "target": self.target,
            "higher_is_better": self.higher_is_better,
            "verdict": self.verdict,
            "note": self.note,
            "samples": self.samples,
        }


@dataclass
class Report:
    """What the workloads produce: table rows and extra floor measurements."""

    rows: list[Row] = field(default_factory=list)
    floors: list[Floor] = field(default_factory=list)

    def floor(self, workload: str, what: str, value: float, unit: str) -> float:
        """Record an extra floor measurement and return its value."""
        self.floors.append(Floor(workload, what, value, unit))
        return value


def merge_passes(reports: list[Report]) -> Report:
    """One report from several passes over the same workloads: each row's best pass.

    A row keeps the figure, floor and note of its best pass (so its ratio compares
    numbers measured together) and says what the other passes gave; a floor keeps its
    best value. One pass is returned as it is.
    """
    if len(reports) == 1:
        return reports[0]
    out = Report()
    keys: list[tuple[str, str]] = []
    by_key: dict[tuple[str, str], list[Row]] = {}
    for rep in reports:
        for row in rep.rows:
            key = (row.workload, row.metric)
            if key not in by_key:
                keys.append(key)
            by_key.setdefault(key, []).append(row)
    for key in keys:
        rows = by_key[key]
        measured = [r for r in rows if r.value is not None]
        if not measured:
            out.rows.append(rows[0])
            continue
        best = (max if rows[0].higher_is_better else min)(measured, key=lambda r: r.value or 0.0)
        values = ", ".join(_num(r.value) for r in measured)
        merged = Row(**{**vars(best), "samples": [v for r in measured for v in r.samples]})
        merged.note = f"best of {len(measured)} passes ({values}); " + best.note
        out.rows.append(merged)
    floors: dict[tuple[str, str], Floor] = {}
    for rep in reports:
        for f in rep.floors:
            old = floors.get((f.workload, f.what))
            rate = f.unit.endswith("/s")
            if old is None or (f.value > old.value if rate else f.value < old.value):
                floors[(f.workload, f.what)] = f
    out.floors = list(floors.values())
    return out


def timed(
    fn: Callable[[], Any],
    repeats: int,
    cpu: list[float] | None = None,
    usage: list[float] | None = None,
) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` (a garbage collection before each).

    With ``cpu``, the process CPU seconds of each call are appended to it: for work on
    one thread that figure hardly moves when other processes load the machine, so it
    is the one to compare two versions of the engine with. With ``usage`` (four zeros),
    the calls' user seconds, system seconds and voluntary and involuntary context
    switches are added to it.
    """
    out: list[float] = []
    for _ in range(repeats):
        gc.collect()
        r0 = resource.getrusage(resource.RUSAGE_SELF) if usage is not None else None
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
        if usage is not None and r0 is not None:
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            usage[0] += r1.ru_utime - r0.ru_utime
            usage[1] += r1.ru_stime - r0.ru_stime
            usage[2] += r1.ru_nvcsw - r0.ru_nvcsw
            usage[3] += r1.ru_nivcsw - r0.ru_nivcsw
    return out


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB.

    Linux copies the parent's peak into a child's ``ru_maxrss`` when the child is
    spawned (``resource.getrusage`` in a subprocess of this 40 MiB bench reported
    40 MiB for a bare interpreter), so ``VmHWM`` from ``/proc/self/status`` is used
    where it exists; elsewhere ``getrusage``'s ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def median(values: list[float]) -> float:
    """The median (of per-run latencies, where the distribution is the point)."""
    return statistics.median(values)


def figure(seconds: list[float], cfg: Config) -> float:
    """The figure for repeated whole-run timings: the fastest run, or the median."""
    return min(seconds) if cfg.stat == "best" else statistics.median(seconds)


def _num(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _notes(r: Row) -> str:
    if r.value is None:
        return ""
    if len(r.samples) > 1:
        lo, hi = min(r.samples), max(r.samples)
        return f"{len(r.samples)} runs {_num(lo)}-{_num(hi)}, median {_num(median(r.samples))}; {r.note}"
    return r.note


def format_table(rows: list[Row]) -> str:
    """The one table ``make bench`` prints (GitHub markdown, readable as text too)."""
    head = ["workload", "metric", "routilux", "floor", "x floor", "target", "verdict", "notes"]
    body: list[list[str]] = []
    for r in rows:
        op = ">=" if r.higher_is_better else "<="
        target = f"{op} {_num(r.target)}" if r.target is not None else "-"
        ratio = r.ratio
        body.append(
            [
                r.workload,
                f"{r.metric} [{r.unit}]",
                _num(r.value) if r.value is not None else (r.note or "n/a"),
                f"{_num(r.floor)} ({r.floor_what})" if r.floor is not None else "-",
                f"{ratio:.1f}x" if ratio is not None else "-",
                target,
                r.verdict,
                _notes(r),
            ]
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(b) for b in body)
    return "\n".join(out)
