"""Loads ``tests/fixtures/durable_flows.py`` (the module child processes run too)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
SCRIPT = FIXTURES / "durable_flows.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("durable_flows", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["durable_flows"] = module
    spec.loader.exec_module(module)
    return module


flows: Any = sys.modules.get("durable_flows") or _load()


def child_json(*args: object) -> dict[str, Any]:
    """Run ``durable_flows.py ARGS`` in a fresh interpreter; return its last stdout line as JSON."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
