"""routilux 0.10's JobState API (``serialize``, ``save``/``load``, ``wait_for_completion`` …).

``JobState`` inherits this mixin (a plain class: msgspec Structs accept mixins
without fields). Everything here reads or writes the same Struct fields the
engine uses; nothing is kept on the side:

* ``get_routine_state(id)`` is a plain dict built from ``routine_states[id]``: the
  user's state (``update_routine_state``) plus ``status`` (and ``error`` after a
  failure), so ``state["status"] == "completed"`` reads as it did in 0.10.
* ``record_execution`` appends an :class:`ExecutionRecord` to
  ``execution_history`` (bounded by ``history_limit``); the classic
  ``Routine.emit`` records every emit there, as 0.10 did.
* ``wait_for_completion`` waits on the job's completion signal: it returns as soon
  as the job stops running (0.10 polled and spent 250 ms in stability checks).
* ``save``/``load`` write and read JSON atomically (temp file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import msgspec

if TYPE_CHECKING:
    from .flow import Flow
    from .job_state import JobState

__all__ = ["ClassicJobStateMixin", "ExecutionRecord"]


class ExecutionRecord(msgspec.Struct, kw_only=True):
    """One entry of a job's classic execution history (routilux 0.10's record).

    Attributes:
        routine_id: The routine (node) the record is about.
        event_name: The event emitted, or an action such as ``"start"``.
        data: The emitted data, or details of the action.
        timestamp: When it happened (epoch seconds).
    """

    routine_id: str
    event_name: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    timestamp: float = msgspec.field(default_factory=time.time)

    def __repr__(self) -> str:
        return f"ExecutionRecord[{self.routine_id}.{self.event_name}@{self.timestamp:.6f}]"


class ClassicJobStateMixin:
    """The 0.10 ``JobState`` methods."""

    __slots__ = ()

    # -- routine state -----------------------------------------------------------

    def get_routine_state(self, routine_id: str) -> dict[str, Any] | None:
        """The state of routine ``routine_id`` in this job, or ``None`` if it has none yet.

        Returns:
            A copy: the dict last given to :meth:`update_routine_state`, plus ``status``
            (``"completed"`` once the routine ran, ``"failed"``, ``"error_continued"``,
            ``"skipped"`` or ``"retrying"`` after a failure, by its error policy) and,
            after a failure, ``error`` (the message).
        """
        st = cast("JobState", self)
        rs = st.routine_states.get(routine_id)
        if rs is None:
            return None
        pristine = rs.status == "idle" and not rs.activations and not rs.errors and not rs.state
        if pristine:
            return None
        out = dict(rs.state)
        if "status" not in out:
            status = rs.status
            if status == "idle":
                status = "completed" if rs.activations else "pending"
            out["status"] = status
        if rs.last_error is not None and "error" not in out:
            out["error"] = rs.last_error.message
        return out

    def update_routine_state(self, routine_id: str, state: dict[str, Any]) -> None:
        """Replace routine ``routine_id``'s user state with a copy of ``state``.

        A ``"status"`` key also becomes the routine's status.
        """
        st = cast("JobState", self)
        from .job_state import RoutineState

        rs = st.routine_states.get(routine_id)
        if rs is None:
            rs = st.routine_states[routine_id] = RoutineState()
        rs.state = dict(state)
        status = state.get("status")
        if isinstance(status, str):
            rs.status = status

    # -- execution history -------------------------------------------------------

    def record_execution(self, routine_id: str, event_name: str, data: dict[str, Any]) -> None:
        """Append a record to ``execution_history`` (older records drop past ``history_limit``)."""
        st = cast("JobState", self)
        hist = st.execution_history
        hist.append(ExecutionRecord(routine_id=routine_id, event_name=event_name, data=data))
        cap = max(st.history_limit, 0)
        # Trim in batches so a long job does not shift the list on every record.
        if len(hist) > cap + 64 or (cap < 64 and len(hist) > cap):
            del hist[: len(hist) - cap]

    def get_execution_history(self, routine_id: str | None = None) -> list[ExecutionRecord]:
        """The execution records, oldest first, optionally only those of ``routine_id``."""
        st = cast("JobState", self)
        hist = list(st.execution_history)
        if routine_id is not None:
            hist = [r for r in hist if r.routine_id == routine_id]
        return sorted(hist, key=lambda r: r.timestamp)

    # -- shared data -------------------------------------------------------------

    def update_shared_data(self, key: str, value: Any) -> None:
        """Set job-wide data ``key`` (visible to every routine of this job)."""
        st = cast("JobState", self)
        st.shared_data[key] = value

    def get_shared_data(self, key: str, default: Any = None) -> Any:
        """Job-wide data ``key``, or ``default``."""
        st = cast("JobState", self)
        return st.shared_data.get(key, default)

    def append_to_shared_log(self, entry: object) -> None:
        """Append ``entry`` (a dict) to the job's shared log, stamped with ``timestamp``.

        Raises:
            TypeError: ``entry`` is not a dict.
        """
        st = cast("JobState", self)
        if not isinstance(entry, dict):
            msg = f"append_to_shared_log expects a dict entry, got {type(entry).__name__}"
            raise TypeError(msg)
        if "timestamp" not in entry:
            entry = {**entry, "timestamp": time.time()}
        st.shared_log.append(entry)

    def get_shared_log(self, filter_func: Callable[[Any], bool] | None = None) -> list[Any]:
        """A copy of the shared log, optionally only the entries ``filter_func`` accepts."""
        st = cast("JobState", self)
        log = list(st.shared_log)
        if filter_func is None:
            return log
        return [e for e in log if filter_func(e)]

    # -- serialization -----------------------------------------------------------

    @property
    def updated_at(self) -> float:
        """The latest timestamp known for the job (0.10 kept one; we derive it)."""
        st = cast("JobState", self)
        times = [st.created_at, st.started_at or 0.0, st.finished_at or 0.0]
        if st.execution_history:
            times.append(st.execution_history[-1].timestamp)
        return max(times)

    def serialize(self) -> dict[str, Any]:
        """A consistent snapshot as a JSON-compatible dict (``"_type": "JobState"``).

        Raises:
            SnapshotError: a payload cannot be encoded; the message says where.
        """
        st = cast("JobState", self)
        data: dict[str, Any] = msgspec.json.decode(st.to_json())
        data["_type"] = "JobState"
        return data

    def deserialize(self, data: dict[str, Any]) -> None:
        """Load every field from ``data`` (a dict made by :meth:`serialize`) into this state.

        Raises:
            SnapshotError: ``data`` is not a JobState snapshot.
            StateError: this state belongs to a running job.
        """
        st = cast("JobState", self)
        from .errors import StateError

        if st.live is not None:
            msg = f"Cannot deserialize into job {st.job_id}: it is running"
            raise StateError(msg)
        body = {k: v for k, v in data.items() if k != "_type"}
        new = type(st).from_json(msgspec.json.encode(body))
        for name in st.__struct_fields__:
            setattr(self, name, getattr(new, name))

    def save(self, filepath: str | os.PathLike[str]) -> None:
        """Write a consistent JSON snapshot to ``filepath`` atomically.

        The snapshot goes to a temporary file in the same directory, is flushed to
        disk, then renamed over ``filepath``: a reader sees the old file or the new
        one, never half of one. Missing directories are created.

        Raises:
            SnapshotError: a payload cannot be encoded.
            OSError: the file cannot be written.
        """
        st = cast("JobState", self)
        path = os.fspath(filepath)
        blob = st.to_json()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        import tempfile  # only save() needs it

        fd, tmp = tempfile.mkstemp(prefix=".jobstate-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, filepath: str | os.PathLike[str]) -> JobState:
        """Read a state written by :meth:`save` (or a JSON snapshot from ``to_json``).

        Raises:
            FileNotFoundError: there is no such file.
            SnapshotError: the file is not a JobState snapshot.
        """
        from .job_state import JobState

        path = os.fspath(filepath)
        if not os.path.exists(path):
            msg = f"JobState file not found: {path}"
            raise FileNotFoundError(msg)
        with open(path, "rb") as f:
            blob = f.read()
        return JobState.from_json(blob)

    # -- waiting -----------------------------------------------------------------

    @staticmethod
    def wait_for_completion(
        flow: Flow,
        job_state: JobState,
        timeout: float | None = None,
        stability_checks: int = 5,
        check_interval: float = 0.1,
        stability_delay: float = 0.05,
        progress_callback: Callable[[int, int, str], None] | None = None,
    ) -> bool:
        """Block until the job of ``job_state`` stops running (finished or paused).

        Signalled, not polled: it returns as soon as the job is done. The
        ``stability_checks``, ``check_interval``, ``stability_delay`` and
        ``progress_callback`` parameters of 0.10 are accepted and unused.

        Args:
            flow: The flow the job runs on (0.10 signature).
            job_state: The job's state, as returned by ``flow.execute``.
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            ``True`` if the job stopped running within ``timeout``, ``False`` otherwise.
        """
        del flow, stability_checks, check_interval, stability_delay, progress_callback
        run = job_state.live
        if run is None:
            return True
        return run.done.wait(timeout)
