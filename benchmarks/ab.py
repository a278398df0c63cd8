"""A/B: the working tree against a git revision, interleaved (``python -m benchmarks.ab``).

This machine's speed moves by up to 2x within minutes (see ``benchmarks/README.md``),
so two ``make bench`` runs minutes apart cannot tell a 5 % change from noise. This
tool alternates fresh processes of the two trees (base first in odd rounds, the
working tree first in even ones) and keeps each figure's best over all rounds:
both sides see the same fast and slow phases of the machine.

    python -m benchmarks.ab                  # working tree vs HEAD, 8 rounds
    python -m benchmarks.ab --base ea79fec --rounds 12 --only w2,w3p

The base is exported with ``git archive`` into a temp dir; the working tree is used
as it is, uncommitted changes included. Both sides run this checkout's workload code
(``w1_stream``, ``w2_jobs``, ``w3_fanin``: public API only, each checking its results)
against their own ``routilux``:

    w1   W1 inline: 2,000 values through 10 pass-through routines [µs/handler]
    w1p  the same with max_workers=4 [µs/handler]
    w2   W2: 500 flow.run calls on a 10-hop chain, per batch [µs/job]
    w3   W3 inline: 1 -> 100 -> Append, median of 30 runs [ms/run]
    w3p  the same with max_workers=4 [ms/run]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("w1", "w1p", "w2", "w3", "w3p")
UNITS = {"w1": "µs/handler", "w1p": "µs/handler", "w2": "µs/job", "w3": "ms/run", "w3p": "ms/run"}


# -- the child: one process, one tree --------------------------------------------------


def _child(tree: str, chosen: list[str], reps: int) -> dict[str, float]:
    sys.path.insert(0, tree)  # this tree's routilux, ahead of the installed one
    import routilux

    if not routilux.__file__ or not routilux.__file__.startswith(tree):
        raise SystemExit(f"imported routilux from {routilux.__file__}, not from {tree}")
    # The workloads are always this checkout's (routilux stays the one imported above):
    # both sides run the same code, and it uses only the public API.
    sys.path.insert(0, str(ROOT))
    for name in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
        del sys.modules[name]
    from benchmarks import w1_stream, w2_jobs, w3_fanin
    from benchmarks._common import BenchmarkFailure

    def stream(mw: int) -> Callable[[], float]:
        flow, src = w1_stream.build(mw, name="ab-w1")
        handlers = 1 + w1_stream.N * (w1_stream.HOPS + 1)

        def once() -> float:
            t0 = perf_counter()
            w1_stream.run_once(flow, src)
            return (perf_counter() - t0) / handlers * 1e6

        return once

    def jobs() -> Callable[[], float]:
        flow, entry = w2_jobs.build(1, name="ab-w2")
        return lambda: w2_jobs.run_jobs(flow, entry, 500) / 500 * 1e6

    def fanin(mw: int) -> Callable[[], float]:
        flow, entry = w3_fanin.build(mw)
        return lambda: statistics.median(w3_fanin.run_times(flow, entry, 30)) * 1e3

    makers: dict[str, Callable[[], Callable[[], float]]] = {
        "w1": lambda: stream(1),
        "w1p": lambda: stream(4),
        "w2": jobs,
        "w3": lambda: fanin(1),
        "w3p": lambda: fanin(4),
    }
    out: dict[str, float] = {}
    try:
        for name in chosen:
            once = makers[name]()
            once()  # warm-up
            out[name] = min(once() for _ in range(reps))
    except BenchmarkFailure as exc:
        raise SystemExit(f"{name}: {exc}") from exc
    return out


# -- the parent -----------------------------------------------------------------------


def _export(rev: str, into: Path) -> str:
    """``git archive`` of ``rev`` unpacked into ``into``; returns the resolved commit."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True
    )
    if commit.returncode != 0:
        raise SystemExit(f"--base {rev!r}: not a revision of {ROOT} ({commit.stderr.strip()})")
    archive = into / "tree.tar"
    subprocess.run(["git", "archive", "-o", str(archive), rev], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return commit.stdout.strip()


def _measure(tree: Path, chosen: list[str], reps: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", str(tree), ",".join(chosen), str(reps)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if res.returncode != 0:
        raise SystemExit(f"the run in {tree} failed:\n{res.stderr}")
    data: dict[str, float] = json.loads(res.stdout.strip().splitlines()[-1])
    return data


def main(argv: list[str] | None = None) -> int:
    """Compare the working tree with ``--base``; print the best of each side and the ratio."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--child":
        print(json.dumps(_child(args[1], args[2].split(","), int(args[3]))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__)
    parser.add_argument("--base", default="HEAD", help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=8, help="process pairs per figure")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per process")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="of " + ",".join(WORKLOADS))
    opts = parser.parse_args(args)
    chosen = [w.strip() for w in opts.only.split(",") if w.strip()]
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)} (choose from {', '.join(WORKLOADS)})"
        )
    with tempfile.TemporaryDirectory(prefix="routilux-ab-") as tmp:
        commit = _export(opts.base, Path(tmp))
        sides = {"base": Path(tmp), "new": ROOT}
        best: dict[str, dict[str, float]] = {"base": {}, "new": {}}
        for r in range(max(1, opts.rounds)):
            order = ("base", "new") if r % 2 == 0 else ("new", "base")
            for side in order:
                for name, v in _measure(sides[side], chosen, opts.reps).items():
                    best[side][name] = min(best[side].get(name, float("inf")), v)
            print(f"  round {r + 1}/{opts.rounds} done", file=sys.stderr, flush=True)
    print(f"base = {opts.base} ({commit}), new = working tree; best of {opts.rounds} rounds")
    print(f"{'workload':<9}{'base':>10}{'new':>10}{'new/base':>10}  unit")
    for name in chosen:
        b, n = best["base"][name], best["new"][name]
        print(f"{name:<9}{b:>10.3f}{n:>10.3f}{n / b:>10.3f}  {UNITS[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
