"""routilux: a typed, event-driven workflow engine.

Write routines as typed functions, wire them with ``a.result >> b.x``, and run
jobs whose state can be snapshotted, stored and resumed. Importing routilux does
no work: no threads, no logging setup.

The job stores (``SQLiteStore`` and friends, which need ``sqlite3``) and the classic
0.10 ``Routine`` class are imported on first use of their names (PEP 562), so a
program that only builds and runs flows does not pay for them at start-up.
"""

import sys as _sys
import types as _types
from importlib import import_module as _import_module
from typing import TYPE_CHECKING, Any

from ._classic_state import ExecutionRecord as ExecutionRecord
from .connection import Connection as Connection
from .dsl import Append as Append
from .dsl import Batch as Batch
from .dsl import Emit as Emit
from .dsl import Latest as Latest
from .dsl import Node as Node
from .dsl import Outputs as Outputs
from .dsl import Reduce as Reduce
from .dsl import RoutineDef as RoutineDef
from .dsl import State as State
from .dsl import routine as routine
from .error_handler import Continue as Continue
from .error_handler import ErrorHandler as ErrorHandler
from .error_handler import ErrorStrategy as ErrorStrategy
from .error_handler import Retry as Retry
from .error_handler import Skip as Skip
from .error_handler import Stop as Stop
from .errors import DefinitionError as DefinitionError
from .errors import JobTimeoutError as JobTimeoutError
from .errors import RoutiluxError as RoutiluxError
from .errors import SnapshotError as SnapshotError
from .errors import StateError as StateError
from .errors import ValidationError as ValidationError
from .errors import WiringError as WiringError
from .event import Event as Event
from .flow import Flow as Flow
from .job_state import JobState as JobState
from .job_state import JobStatus as ExecutionStatus
from .job_state import JobStatus as JobStatus
from .node import RoutineStats as RoutineStats
from .scheduler import Job as Job
from .slot import Slot as Slot

if TYPE_CHECKING:
    # The names of _LAZY, with their real types for type checkers.
    from .routine import ExecutionContext as ExecutionContext
    from .routine import Routine as Routine
    from .routine import RoutineStatus as RoutineStatus
    from .stores import FileStore as FileStore
    from .stores import JobInfo as JobInfo
    from .stores import JobStore as JobStore
    from .stores import MemoryStore as MemoryStore
    from .stores import SQLiteStore as SQLiteStore

__version__ = "0.11.0.dev0"

#: Public names imported on first access: name -> submodule that defines it.
_LAZY: dict[str, str] = {
    "ExecutionContext": "routine",
    "FileStore": "stores",
    "JobInfo": "stores",
    "JobStore": "stores",
    "MemoryStore": "stores",
    "Routine": "routine",
    "RoutineStatus": "routine",
    "SQLiteStore": "stores",
}

if not TYPE_CHECKING:  # a module __getattr__ would make mypy accept any attribute name

    def __getattr__(name: str) -> Any:
        submodule = _LAZY.get(name)
        if submodule is None:
            msg = f"module {__name__!r} has no attribute {name!r}"
            raise AttributeError(msg, name=name, obj=_sys.modules[__name__])
        value = getattr(_import_module(f"{__name__}.{submodule}"), name)
        globals()[name] = value  # later reads are plain module attribute reads
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _Package(_types.ModuleType):
    """The package's module type: keeps ``routilux.routine`` the decorator.

    Importing the classic module ``routilux.routine`` (lazily for ``routilux.Routine``,
    or by a 0.10 program's ``from routilux.routine import Routine``) makes the import
    system bind the submodule as the package attribute ``routine``, over the decorator.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "routine" and value is _sys.modules.get(f"{__name__}.routine"):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package

__all__ = [
    "Append",
    "Batch",
    "Connection",
    "Continue",
    "DefinitionError",
    "Emit",
    "ErrorHandler",
    "ErrorStrategy",
    "Event",
    "ExecutionContext",
    "ExecutionRecord",
    "ExecutionStatus",
    "FileStore",
    "Flow",
    "Job",
    "JobInfo",
    "JobState",
    "JobStatus",
    "JobStore",
    "JobTimeoutError",
    "Latest",
    "MemoryStore",
    "Node",
    "Outputs",
    "Reduce",
    "Retry",
    "RoutiluxError",
    "Routine",
    "RoutineDef",
    "RoutineStats",
    "RoutineStatus",
    "SQLiteStore",
    "Skip",
    "Slot",
    "SnapshotError",
    "State",
    "StateError",
    "Stop",
    "ValidationError",
    "WiringError",
    "routine",
]
