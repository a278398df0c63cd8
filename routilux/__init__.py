"""routilux: a typed, event-driven workflow engine.

Write routines as typed functions, wire them with ``a.result >> b.x``, and run
jobs whose state can be snapshotted, stored and resumed. Importing routilux does
no work: no threads, no logging setup.
"""

from . import dsl as _dsl
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
from .routine import ExecutionContext as ExecutionContext
from .routine import Routine as Routine
from .routine import RoutineStatus as RoutineStatus
from .scheduler import Job as Job
from .slot import Slot as Slot
from .stores import FileStore as FileStore
from .stores import JobInfo as JobInfo
from .stores import JobStore as JobStore
from .stores import MemoryStore as MemoryStore
from .stores import SQLiteStore as SQLiteStore

# Importing the classic module `routilux.routine` above bound the package attribute
# `routine` to that module; the public name is the decorator.
routine = _dsl.routine  # noqa: F811  # rebinds what the module import shadowed

__version__ = "0.11.0.dev0"

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
