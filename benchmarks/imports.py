"""Import time and peak memory.

* ``python -c "import routilux"`` in a fresh subprocess, best of N wall times
  (the whole command, interpreter start included: what a CLI user waits for),
  with a warm bytecode cache (kept in a temp dir, ``PYTHONPYCACHEPREFIX``) as an
  installed package has; the notes add the figure without one.
  Floor: ``python -c "pass"`` the same way. The notes add routilux's own share
  from ``-X importtime`` (cumulative µs of the ``routilux`` package).
* A realistic first use, informational (no target): ``from routilux import Flow,
  routine``, three routines, wired, one job run (:data:`FIRST_USE`), measured the same
  way. ``import routilux`` loads some names lazily (PEP 562); this row shows that the
  saving is not just cost moved to the first use.
* Peak RSS of a fresh process that runs W1 once, with ``max_workers`` 1 and 4
  (``VmHWM``; ``ru_maxrss`` of a subprocess inherits the parent's peak on Linux,
  see ``_common.peak_rss_kib``). Floor: a fresh process that only imports routilux.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter

from ._common import Config, Report, Row, check

TARGET_IMPORT_MS = 60.0
ROOT = Path(__file__).resolve().parent.parent

#: What a first program does: import, define three routines, wire them, run one job
#: (a default ``Flow``: a pool of threads, so ``concurrent.futures`` is part of it).
FIRST_USE = """
from routilux import Flow, routine

@routine
def parse(text: str) -> int:
    return len(text)

@routine
def double(n: int) -> int:
    return 2 * n

@routine
def total(n: int) -> int:
    return n + 1

with Flow("first") as flow:
    p, d, t = parse(), double(), total()
    p.result >> d.n
    d.result >> t.n
state = flow.run(p.text("hello"), timeout=30)
print(state.status, state.outputs["total.result"])
"""


#: Bytecode cache of the measured processes, kept out of the source tree.
PYCACHE = Path(tempfile.gettempdir()) / "routilux-bench-pycache"


def _env(cached: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    if cached:
        # An installed package has its .pyc files; a PYTHONDONTWRITEBYTECODE=1 environment
        # (this one sets it) would make every import compile routilux from source.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def _py(*args: str, cached: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(cached),
        check=False,
    )
    check(
        proc.returncode == 0,
        f"subprocess {' '.join(args)!r} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}",
    )
    return proc


def best_wall(code: str, n: int, cached: bool = True) -> tuple[float, float]:
    """Best wall seconds and best CPU seconds (user + sys) of ``python -c code``, n processes.

    The CPU time is reported too because, unlike wall time, it does not grow when
    other processes compete for the cores.
    """
    best = best_cpu = float("inf")
    _py("-c", code, cached=cached)  # writes the bytecode cache
    for _ in range(n):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = perf_counter()
        _py("-c", code, cached=cached)
        best = min(best, perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        best_cpu = min(best_cpu, cpu)
    return best, best_cpu


def own_import_us() -> int:
    """Cumulative µs of the ``routilux`` package in ``-X importtime`` (best of 5)."""
    best = 10**9
    for _ in range(5):
        err = _py("-X", "importtime", "-c", "import routilux").stderr
        for line in err.splitlines():
            # "import time: self [us] | cumulative | imported package"
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[2] == "routilux":
                best = min(best, int(parts[1]))
    check(best < 10**9, "imports: -X importtime printed no line for routilux")
    return best


def rss_kib(*args: str) -> int:
    """The peak RSS in KiB that a fresh process prints as its last line."""
    return int(_py(*args).stdout.strip().splitlines()[-1])


def run(cfg: Config, report: Report) -> None:
    """Measure import time and W1's peak RSS in fresh processes."""
    n = 5 if cfg.quick else 15
    bare, bare_cpu = best_wall("pass", n)
    report.floor("import", "python -c pass (interpreter start)", bare * 1e3, "ms")
    report.floor("import", "python -c pass, CPU time (user+sys)", bare_cpu * 1e3, "ms")
    # What imports routilux needs cost on their own (see the README): msgspec is the
    # bound of the target here (it imports typing_extensions, which imports inspect).
    for code, why in (
        ("import msgspec", "our one runtime dependency, imported by import routilux"),
        (
            "import sys; sys.modules['typing_extensions'] = None; import msgspec",
            "msgspec where typing_extensions is not installed",
        ),
        ("import concurrent.futures", "a default Flow's thread pool imports it on first run"),
    ):
        secs, _ = best_wall(code, n)  # as many runs as ours: it bounds the target
        report.floor("import", f"python -c {code!r} ({why})", secs * 1e3, "ms")
    ours, ours_cpu = best_wall("import routilux", n)
    first, first_cpu = best_wall(FIRST_USE, n)
    uncached, _ = best_wall("import routilux", max(3, n // 3), cached=False)
    own = own_import_us()
    out = _py("-c", FIRST_USE).stdout.strip()
    check(out == "completed [11]", f"first use: expected 'completed [11]', got {out!r}")
    report.rows.append(
        Row(
            "import",
            'python -c "import routilux", best of ' + str(n),
            ours * 1e3,
            "ms",
            floor=bare * 1e3,
            floor_what="python -c pass",
            target=TARGET_IMPORT_MS,
            note=f"CPU {ours_cpu * 1e3:.0f} ms (floor {bare_cpu * 1e3:.0f}); routilux package "
            f"{own / 1e3:.1f} ms cumulative (-X importtime); {uncached * 1e3:.0f} ms with no "
            "bytecode cache (PYTHONDONTWRITEBYTECODE=1); stores and the classic Routine "
            f"load on first use: a first program takes {first * 1e3:.0f} ms (next row)",
        )
    )
    report.rows.append(
        Row(
            "import",
            "first use: import, 3 routines, wire, run 1 job, best of " + str(n),
            first * 1e3,
            "ms",
            floor=bare * 1e3,
            floor_what="python -c pass",
            note=f"CPU {first_cpu * 1e3:.0f} ms; {1e3 * (first - ours):+.0f} ms over import "
            "routilux (a default Flow: its thread pool imports concurrent.futures); "
            "informational, no target",
        )
    )
    bare_rss = rss_kib("-c", "from benchmarks._common import peak_rss_kib; print(peak_rss_kib())")
    report.floor("RSS", "python -c pass (+ the bench helper)", bare_rss / 1024, "MiB")
    only_import = rss_kib(
        "-c", "import routilux; from benchmarks._common import peak_rss_kib; print(peak_rss_kib())"
    )
    for mw in (1, 4):
        peak = rss_kib("-m", "benchmarks.w1_stream", "--rss", "--workers", str(mw))
        report.rows.append(
            Row(
                "RSS",
                f"peak RSS of a process running W1, max_workers={mw}",
                peak / 1024,
                "MiB",
                floor=only_import / 1024,
                floor_what="import routilux only",
                note="VmHWM of a fresh process",
            )
        )


def breakdown(runs: int = 7) -> list[tuple[str, int, int]]:
    """Best-of-``runs`` ``-X importtime`` entries of ``import routilux``.

    Returns ``(module, self µs, cumulative µs)`` for every module it imports, indented as
    imported; modules the bare interpreter imports at start-up (``site`` …) are left out.
    """
    at_start = {
        line.split("|")[2].strip()
        for line in _py("-X", "importtime", "-c", "pass").stderr.splitlines()
        if line.count("|") == 2
    }
    best: dict[str, tuple[int, int]] = {}
    order: list[str] = []
    for _ in range(runs):
        err = _py("-X", "importtime", "-c", "import routilux").stderr
        for line in err.splitlines():
            parts = line.removeprefix("import time:").split("|")
            if len(parts) != 3 or not parts[0].strip().isdigit():
                continue
            own, cum, name = int(parts[0]), int(parts[1]), parts[2].rstrip()
            if name.strip() in at_start:
                continue
            if name not in best:
                order.append(name)
                best[name] = (own, cum)
            else:
                best[name] = (min(best[name][0], own), min(best[name][1], cum))
    return [(name, *best[name]) for name in order]


def cumulative_us(code: str, module: str, runs: int = 7) -> int:
    """Best-of-``runs`` cumulative µs of ``module`` in ``-X importtime`` of ``python -c code``."""
    best = 10**9
    for _ in range(runs):
        for line in _py("-X", "importtime", "-c", code).stderr.splitlines():
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[2] == module:
                best = min(best, int(parts[1]))
    check(best < 10**9, f"imports: -X importtime of {code!r} printed no line for {module}")
    return best


#: msgspec imports typing_extensions when it is installed (routilux's own metadata requires
#: it, and mypy, pydantic and most tools do), and typing_extensions imports inspect.
NO_TYPING_EXTENSIONS = "import sys; sys.modules['typing_extensions'] = None; "


if __name__ == "__main__":
    rows = breakdown()
    total = next(cum for name, _, cum in rows if name.strip() == "routilux")
    print(f"import routilux: {total / 1e3:.1f} ms cumulative (best of 7, warm bytecode cache)")
    print("largest subtrees (cumulative ms, share of routilux's):")
    for name, _own, cum in sorted(rows, key=lambda r: -r[2])[:25]:
        print(f"{cum / 1e3:8.1f} {100 * cum / total:5.1f}%  {name}")
    print("routilux modules by own (self) time:")
    own_rows = [r for r in rows if r[0].strip().startswith("routilux")]
    for name, own_us, _cum in sorted(own_rows, key=lambda r: -r[1])[:8]:
        print(f"{own_us / 1e3:8.1f}  {name.strip()}")
    msgspec_us = cumulative_us("import msgspec", "msgspec")
    beyond_us = cumulative_us("import msgspec; import routilux", "routilux")
    print(
        f"msgspec alone: {msgspec_us / 1e3:.1f} ms cumulative; routilux beyond msgspec: "
        f"{beyond_us / 1e3:.1f} ms"
    )
    bare_msgspec_us = cumulative_us(NO_TYPING_EXTENSIONS + "import msgspec", "msgspec")
    bare_us = cumulative_us(NO_TYPING_EXTENSIONS + "import routilux", "routilux")
    print(
        f"without typing_extensions: msgspec {bare_msgspec_us / 1e3:.1f} ms, "
        f"import routilux {bare_us / 1e3:.1f} ms cumulative (was {total / 1e3:.1f})"
    )
