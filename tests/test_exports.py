"""The public façade: every exported name imports and is documented; importing does no work."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import pytest

import routilux
from routilux import dsl


def test_all_is_sorted_and_unique() -> None:
    assert sorted(set(routilux.__all__)) == sorted(routilux.__all__)


@pytest.mark.parametrize("name", routilux.__all__)
def test_exported_name_imports_and_is_documented(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from routilux import {name}", namespace)
    obj = namespace[name]
    assert obj is getattr(routilux, name)
    assert not isinstance(obj, types.ModuleType), f"routilux.{name} is a module"
    doc = getattr(obj, "__doc__", None)
    assert doc, f"routilux.{name} has no docstring"
    assert doc.strip()
    if not isinstance(obj, type) and not isinstance(obj, types.FunctionType):
        # An alias object (e.g. Latest) must carry its own doc, not its class's.
        assert doc != type(obj).__doc__, f"routilux.{name} only has its type's docstring"


def test_routine_is_the_decorator() -> None:
    # `routilux.routine` is also the classic module's name; the package attribute must
    # stay the decorator whichever is imported first.
    import routilux.routine as classic_module  # noqa: F401

    assert routilux.routine is dsl.routine
    assert callable(routilux.routine)


def test_importing_starts_no_threads_and_configures_no_logging() -> None:
    code = textwrap.dedent(
        """
        import logging, threading
        before = {t.ident for t in threading.enumerate()}
        root_handlers = list(logging.getLogger().handlers)
        import routilux
        import routilux.routine
        after = {t.ident for t in threading.enumerate()}
        assert after == before, [t.name for t in threading.enumerate()]
        assert logging.getLogger().handlers == root_handlers
        assert logging.getLogger("routilux").handlers == []
        print("ok", len(routilux.__all__))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"ok {len(routilux.__all__)}"


def test_py_typed_marker_is_shipped() -> None:
    from pathlib import Path

    assert (Path(routilux.__file__).parent / "py.typed").is_file()


def test_version() -> None:
    assert isinstance(routilux.__version__, str)
    assert routilux.__version__
