"""What ``import routilux`` loads: heavy modules stay out until a program uses them.

A CLI that imports routilux pays for every module the import pulls in at each start.
The job stores (``sqlite3``), the classic 0.10 ``Routine`` class, ``asyncio``, the
thread-pool machinery and ``dataclasses`` are loaded on first use only; these tests
guard that in fresh interpreters (the test process itself has imported everything).
No timing is asserted here: ``python -m benchmarks --only import`` measures it.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest

import routilux
from routilux import dsl
from routilux.error_handler import Continue, Retry, Skip, Stop

ROOT = Path(__file__).resolve().parent.parent

#: Modules `import routilux` must not load (each costs milliseconds, or pulls in more).
HEAVY = (
    "asyncio",
    "concurrent.futures",
    "dataclasses",
    "multiprocessing",
    "routilux.executors",
    "routilux.remote",
    "routilux.routine",
    "routilux.serialization_utils",
    "routilux.stores",
    "sqlite3",
    "tempfile",
)

FIRST_USE = """
from routilux import Flow, routine

@routine
def parse(text: str) -> int:
    return len(text)

@routine
def double(n: int) -> int:
    return 2 * n

with Flow("first", max_workers=1) as flow:
    p, d = parse(), double()
    p.result >> d.n
state = flow.run(p.text("hello"))
assert state.outputs == {"double.result": [10]}, state.outputs
"""


def _fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter and return its stdout (failing on an error)."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _loaded_after(code: str, modules: tuple[str, ...] = HEAVY) -> str:
    return _fresh(f"{code}\nimport sys\nprint(sorted(m for m in {modules!r} if m in sys.modules))")


def test_import_routilux_leaves_heavy_modules_unloaded() -> None:
    assert _loaded_after("import routilux") == "[]"


def test_building_and_running_a_flow_leaves_them_unloaded_too() -> None:
    # The laziness is not only moved cost: a program that defines routines and runs a
    # job never needs the stores, the classic door or asyncio. (A flow's dispatcher
    # imports concurrent.futures: its exit hook must be registered after the pool's.)
    modules = tuple(m for m in HEAVY if m != "concurrent.futures")
    assert _loaded_after(FIRST_USE, modules) == "[]"


def test_a_lazy_name_loads_its_module_on_first_access() -> None:
    out = _fresh(
        """
        import sys
        import routilux
        print("sqlite3" in sys.modules, routilux.SQLiteStore.__module__, "sqlite3" in sys.modules)
        """
    )
    assert out == "False routilux.stores True"


@pytest.mark.parametrize("name", sorted(routilux._LAZY))
def test_lazy_name_is_the_real_class(name: str) -> None:
    module = importlib.import_module(f"routilux.{routilux._LAZY[name]}")
    namespace: dict[str, object] = {}
    exec(f"from routilux import {name}", namespace)
    assert namespace[name] is getattr(module, name)
    assert getattr(routilux, name) is getattr(module, name)
    assert name in routilux.__all__
    assert name in dir(routilux)


def test_dir_lists_every_public_name() -> None:
    assert set(routilux.__all__) <= set(dir(routilux))


def test_unknown_attribute_raises_attribute_error_naming_module_and_name() -> None:
    with pytest.raises(AttributeError, match=r"^module 'routilux' has no attribute 'Flwo'$") as ei:
        routilux.Flwo  # noqa: B018
    # name and obj let the interpreter print "Did you mean: 'Flow'?" under the traceback.
    assert ei.value.name == "Flwo"
    assert ei.value.obj is routilux
    assert not hasattr(routilux, "Flwo")


def test_unknown_name_in_from_import_raises_import_error() -> None:
    with pytest.raises(ImportError, match=r"^cannot import name 'Flwo' from 'routilux' "):
        exec("from routilux import Flwo", {})


@pytest.mark.parametrize(
    "first",
    ["routilux.Routine", "__import__('routilux.routine').routine", "routilux.ExecutionContext"],
)
def test_routine_stays_the_decorator_when_the_classic_module_loads_later(first: str) -> None:
    # Loading the submodule routilux.routine after the package binds it as the package
    # attribute `routine` unless the package guards the decorator's name.
    out = _fresh(
        f"""
        import routilux
        from routilux import dsl
        {first}
        from routilux.routine import Routine
        from routilux import routine
        print(routine is dsl.routine, routilux.routine is dsl.routine, routilux.Routine is Routine)
        """
    )
    assert out == "True True True"


def test_error_policies_are_frozen_value_objects() -> None:
    # They are msgspec Structs (made far faster than dataclasses at import).
    assert Retry(2, delay=0.5) == Retry(2, delay=0.5)
    assert hash(Retry(2)) == hash(Retry(2))
    assert Retry(2) != Retry(3)
    assert Stop() == Stop()
    assert Stop() != Continue()
    assert Skip() != Stop()
    assert repr(Retry()) == (
        "Retry(max_attempts=3, delay=0.0, backoff=1.0, on=(<class 'Exception'>,), then=Stop())"
    )
    with pytest.raises(AttributeError):
        Retry().delay = 1.0  # type: ignore[misc]
    assert msgspec.structs.replace(Retry(), delay=2.0).delay == 2.0
    with pytest.raises(ValueError, match=r"^Retry.max_attempts must be >= 1, got 0$"):
        Retry(0)


def test_routine_spec_indexes_are_derived_not_fields() -> None:
    @dsl.routine
    def add(a: int, b: int = 0) -> int:
        return a + b

    spec = add.spec
    assert spec.slot_index == {"a": 0, "b": 1}
    assert list(spec.event_index) == ["result"]
    assert "slot_index" not in repr(spec)
    assert "slot_index" not in msgspec.structs.fields(spec).__repr__()
    assert msgspec.structs.replace(spec, name="other").slot_index == {"a": 0, "b": 1}
    with pytest.raises(AttributeError):
        spec.name = "x"  # type: ignore[misc]
