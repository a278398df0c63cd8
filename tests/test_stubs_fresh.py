"""The committed ``stubs/`` are exactly what ``python -m routilux.stubgen examples`` writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*.pyi"))}


@pytest.mark.typing
def test_committed_stubs_match_generated(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "routilux.stubgen", "examples", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    generated, committed = _tree(tmp_path), _tree(ROOT / "stubs")
    assert generated, "the examples define no routine: nothing to stub"
    stale = sorted(
        n for n in generated.keys() | committed.keys() if generated.get(n) != committed.get(n)
    )
    assert not stale, (
        f"stubs/ is stale for {', '.join(stale)}: run `python -m routilux.stubgen examples -o stubs`"
    )


@pytest.mark.typing
def test_check_flag_reports_a_stale_stub(tmp_path: Path) -> None:
    """``--check`` (for CI scripts) exits 1 and names the stale file."""
    (tmp_path / "quickstart.pyi").write_text("# edited by hand\n")
    proc = subprocess.run(
        [sys.executable, "-m", "routilux.stubgen", "examples", "-o", str(tmp_path), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"stale stubs (regenerate with python -m routilux.stubgen): {tmp_path / 'quickstart.pyi'}\n"
    )
    assert (tmp_path / "quickstart.pyi").read_text() == "# edited by hand\n"
