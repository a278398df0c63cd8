"""mypy time on a generated 500-routine flow: no plugin, the plugin, and stubs.

Run ``python benchmarks/bench_mypy.py [N]`` (default 500 routines). It writes a module of
``N`` routines (plain, generator, ``Outputs`` and ``Append`` shapes mixed) and a flow
wiring them into a chain, then times ``python -m mypy`` on the flow, each configuration
with a cold cache (best of two) and again after an edit to the flow file (incremental, cache warm):

* ``plain``: no plugin, no stubs (ports are ``Any``; the baseline cost of the package);
* ``plugin``: ``plugins = routilux.mypy_plugin``;
* ``stubs``: no plugin, a stub from ``python -m routilux.stubgen`` on ``mypy_path``.

The flow holds one wrong connection (``int`` into a ``str`` slot): the plugin and stub
runs must report exactly that error, the plain run nothing (its ports are ``Any``); the
script exits 1 otherwise. A script that prints, not a test.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def routines_source(n: int) -> str:
    lines = [
        "from collections.abc import Iterator",
        "from routilux import Append, Emit, Outputs, routine",
        "",
        "class Split(Outputs):",
        "    ok: Emit[int]",
        "    bad: Emit[str]",
        "",
    ]
    for i in range(n):
        if i % 10 == 3:
            lines += [
                "@routine",
                f"def r{i}(x: int, label: str = '') -> Iterator[int]:",
                "    yield x",
            ]
        elif i % 10 == 6:
            lines += ["@routine", f"def r{i}(x: int, out: Split) -> None:", "    out.ok(x)"]
        elif i % 10 == 9:
            lines += ["@routine", f"def r{i}(x: Append[int]) -> int:", "    return sum(x)"]
        else:
            lines += [
                "@routine",
                f"def r{i}(x: int, scale: float = 1.0) -> int:",
                "    return int(x * scale)",
            ]
        lines.append("")
    return "\n".join(lines)


def flow_source(n: int) -> str:
    lines = [
        "from routilux import Flow",
        "import routines500 as r",
        "",
        'with Flow("big") as flow:',
    ]
    for i in range(n):
        lines.append(f"    n{i} = r.r{i}()")
    for i in range(n - 1):
        out = "ok" if i % 10 == 6 else "result"
        lines.append(f"    n{i}.{out} >> n{i + 1}.x")
    # One deliberate mistake: an int event into the str slot `label` of r3.
    lines.append("    n0.result >> n3.label")
    lines.append("flow.run(n0.x(1))")
    return "\n".join(lines) + "\n"


def mypy_seconds(folder: Path, config: Path, cache: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(config),
            "--cache-dir",
            str(cache),
            "flow500.py",
        ],
        capture_output=True,
        text=True,
        cwd=folder,
        check=False,
    )
    return time.perf_counter() - start, proc.stdout.strip()


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        src = base / "src"
        src.mkdir()
        (src / "routines500.py").write_text(routines_source(n))
        flow_file = src / "flow500.py"
        flow_file.write_text(flow_source(n))
        stubs = base / "stubs"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "routilux.stubgen",
                str(src / "routines500.py"),
                "-o",
                str(stubs),
            ],
            check=True,
            capture_output=True,
        )
        # A flow checked against a stub must not see routines500.py next to it.
        stub_src = base / "stub_src"
        stub_src.mkdir()
        (stub_src / "flow500.py").write_text(flow_file.read_text())
        configs = {
            "plain": (src, [str(ROOT)], False, 0),
            "plugin": (src, [str(ROOT)], True, 1),
            "stubs": (stub_src, [str(stubs), str(ROOT)], False, 1),
        }
        print(f"mypy {n}-routine flow ({n - 1} connections), seconds")
        print(f"{'config':<8} {'cold':>7} {'edit':>7}  result")
        status = 0
        for name, (folder, path, plugin, errors) in configs.items():
            config = base / f"{name}.ini"
            lines = ["[mypy]", "strict = True", "mypy_path = " + ":".join(path)]
            if plugin:
                lines.append("plugins = routilux.mypy_plugin")
            lines += ["[mypy-routilux.*]", "follow_imports = silent"]
            config.write_text("\n".join(lines) + "\n")
            # Best of two cold runs (fresh caches): the first run of the script also pays
            # for reading typeshed and the package from disk.
            cold, out = mypy_seconds(folder, config, base / f"cache-{name}-0")
            cache = base / f"cache-{name}"
            cold2, out = mypy_seconds(folder, config, cache)
            cold = min(cold, cold2)
            target = folder / "flow500.py"
            target.write_text(target.read_text() + "# edited\n")
            warm, out2 = mypy_seconds(folder, config, cache)
            want = "Success" if errors == 0 else f"Found {errors} error in 1 file"
            ok = out.splitlines()[-1].startswith(want) and out2.splitlines()[-1].startswith(want)
            status |= 0 if ok else 1
            verdict = "ok" if ok else f"WRONG (expected {want!r})"
            print(f"{name:<8} {cold:7.2f} {warm:7.2f}  {out.splitlines()[-1]}: {verdict}")
        return status


if __name__ == "__main__":
    sys.exit(main())
