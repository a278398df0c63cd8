"""`make demo` runs examples/quickstart.py: it must work, store its job, and resume it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"


def _run(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(QUICKSTART), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quickstart_prints_the_report_and_stats_and_stores_the_job(tmp_path: Path) -> None:
    out = _run(cwd=tmp_path)
    assert "completed" in out.splitlines()[0]
    assert "14 orders, revenue 2936.21 USD" in out
    assert "  wayne          879.15" in out
    assert "invalid literal for int() with base 10: 'two'" in out
    assert "quantity must be positive" in out
    assert "read_lines   activations=1   emits=16" in out
    assert "report       activations=1   emits=1" in out
    assert (tmp_path / ".routilux" / "jobs.db").exists()
    job_id = out.strip().splitlines()[-1].split()[-1]
    again = _run("--resume", job_id, cwd=tmp_path)
    assert again.splitlines()[0] == f"job {job_id}: completed"
    assert "14 orders, revenue 2936.21 USD" in again
