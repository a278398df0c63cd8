"""JobState: everything one job is, as a tree of msgspec Structs.

A JobState is live while its job runs (the dispatcher is its only writer) and
plain data once encoded. ``to_bytes``/``from_bytes`` (msgpack) and
``to_json``/``from_json`` round-trip it; payload values are stored as the
msgspec-encodable values they are and converted back to each slot's declared
type when a job is resumed.
"""

from __future__ import annotations

import enum
import itertools
import os
import time
from typing import TYPE_CHECKING, Any

import msgspec

from ._classic_state import ClassicJobStateMixin, ExecutionRecord
from .errors import SnapshotError

if TYPE_CHECKING:
    from .jobrun import JobRun

__all__ = [
    "ErrorRecord",
    "JobState",
    "JobStatus",
    "PendingTask",
    "RoutineState",
    "SlotBuffer",
    "TaskRecord",
]

SCHEMA_VERSION = 1

_id_prefix = os.urandom(8).hex()
_id_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


def _reseed_ids() -> None:
    # A forked child must not repeat its parent's ids.
    global _id_prefix, _id_counter
    _id_prefix = os.urandom(8).hex()
    _id_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


os.register_at_fork(after_in_child=_reseed_ids)


def new_id() -> str:
    """A 32-hex-digit id, unique across processes (a random 64-bit process prefix and a counter).

    ``uuid4()`` reads the OS's random source on every call (about 5 µs); jobs are
    created faster than that.
    """
    return _id_prefix + next(_id_counter).to_bytes(8, "big").hex()  # ~2x an f-string's speed


class JobStatus(enum.StrEnum):
    """A job's lifecycle; compares equal to routilux 0.10's status strings."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the job can no longer change (completed, failed or cancelled)."""
        return self in _FINISHED


_FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class ErrorRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One failure: where, what, and the traceback text."""

    node: str | None
    type: str
    message: str
    traceback: str = ""
    attempt: int = 1
    at: float = 0.0


class TaskRecord(msgspec.Struct, array_like=True, gc=False):
    """One finished activation in the job's bounded history."""

    node: str
    started_at: float
    duration: float
    ok: bool = True


class RoutineState(msgspec.Struct, kw_only=True, gc=False):
    """Per-node statistics and user state within one job.

    Not tracked by the cyclic garbage collector (``gc=False``): a job makes one per
    node it runs, and half of what a short finished job leaves for the collector to
    scan was these. That is safe because nothing here can close a reference cycle:
    the counters and ``last_error`` are atomic, and ``state`` is snapshot data, which
    must encode (msgspec refuses a cycle), so it never refers back to the job.
    """

    status: str = "idle"
    activations: int = 0
    emits: int = 0
    errors: int = 0
    retries: int = 0
    busy_time: float = 0.0
    last_error: ErrorRecord | None = None
    state: dict[str, Any] = msgspec.field(default_factory=dict)


class PendingTask(msgspec.Struct, kw_only=True):
    """An activation formed but not run (kept across pause and restore)."""

    node: str
    args: list[Any]
    attempt: int = 1


class SlotBuffer(msgspec.Struct, kw_only=True):
    """Values delivered to a slot and not consumed yet."""

    node: str
    slot: str
    values: list[Any]
    fresh: bool = False


class JobState(msgspec.Struct, ClassicJobStateMixin, kw_only=True, dict=True):
    """The state of one job. Live while the job runs; plain data once encoded.

    Attributes:
        schema_version: The snapshot schema this state was written with.
        flow_id: The flow the job runs on.
        job_id: The job's id, unique per store.
        status: See :class:`JobStatus`.
        created_at: When the job was created (epoch seconds).
        started_at: When it first started running.
        finished_at: When it reached a finished status.
        error: The error that failed the job, if any.
        routine_states: Per-node statistics and user state, by node name.
        pending: Activations formed but not run (filled on pause, restore and snapshot).
        buffers: Unconsumed slot values (filled on pause, restore and snapshot).
        outputs: Values emitted on events with no outgoing connection, by ``"node.event"``.
        outputs_dropped: How many values each output key dropped past ``output_limit``.
        history: The most recent task records, at most ``history_limit``.
        history_dropped: How many older task records were dropped.
        history_limit: The history bound for this job.
        output_limit: The per-key bound of ``outputs``.
        errors: Every failure recorded in this job (bounded like the history).
        shared_data: Job-wide data (classic ``update_shared_data``).
        shared_log: Job-wide log entries (classic ``append_to_shared_log``).
        fingerprint: The flow's shape (nodes, ports, types) the job was started on.
        execution_history: Classic (0.10) execution records: entry, emits, actions
            (bounded by ``history_limit``).
    """

    schema_version: int = SCHEMA_VERSION
    flow_id: str
    job_id: str
    status: JobStatus = JobStatus.PENDING
    created_at: float = msgspec.field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    error: ErrorRecord | None = None
    routine_states: dict[str, RoutineState] = msgspec.field(default_factory=dict)
    pending: list[PendingTask] = msgspec.field(default_factory=list)
    buffers: list[SlotBuffer] = msgspec.field(default_factory=list)
    outputs: dict[str, list[Any]] = msgspec.field(default_factory=dict)
    outputs_dropped: dict[str, int] = msgspec.field(default_factory=dict)
    history: list[TaskRecord] = msgspec.field(default_factory=list)
    history_dropped: int = 0
    history_limit: int = 1000
    output_limit: int = 10_000
    errors: list[ErrorRecord] = msgspec.field(default_factory=list)
    shared_data: dict[str, Any] = msgspec.field(default_factory=dict)
    shared_log: list[Any] = msgspec.field(default_factory=list)
    fingerprint: dict[str, Any] = msgspec.field(default_factory=dict)
    execution_history: list[ExecutionRecord] = msgspec.field(default_factory=list)

    # -- queries -----------------------------------------------------------------

    def is_complete(self) -> bool:
        """Whether the job has finished (completed, failed or cancelled)."""
        return self.status.finished

    def output(self, key: str) -> list[Any]:
        """The values collected on terminal output ``"node.event"``.

        Raises:
            KeyError: naming the keys that do have outputs.
        """
        try:
            return self.outputs[key]
        except KeyError:
            known = ", ".join(sorted(self.outputs)) or "none"
            msg = f"Job {self.job_id} has no output {key!r} (outputs: {known})"
            raise KeyError(msg) from None

    @property
    def live(self) -> JobRun | None:
        """The running job behind this state, or ``None`` for plain data."""
        run: JobRun | None = getattr(self, "_run", None)
        return run

    # -- snapshots ---------------------------------------------------------------

    def snapshot(self) -> JobState:
        """A consistent, detached copy: pending work and slot buffers included."""
        run = self.live
        if run is not None:
            return run.snapshot()
        return msgspec.structs.replace(self)

    def to_bytes(self) -> bytes:
        """Encode a consistent snapshot as msgpack.

        Raises:
            SnapshotError: a payload cannot be encoded; the message names job, node, slot, type.
        """
        snap = self.snapshot()
        try:
            return _MSGPACK.encode(snap)
        except (TypeError, msgspec.EncodeError) as exc:
            raise _locate_unencodable(snap, exc) from exc

    def to_json(self) -> bytes:
        """Encode a consistent snapshot as JSON (for people and tools)."""
        snap = self.snapshot()
        try:
            return _JSON.encode(snap)
        except (TypeError, msgspec.EncodeError) as exc:
            raise _locate_unencodable(snap, exc) from exc

    @classmethod
    def from_bytes(cls, data: bytes) -> JobState:
        """Decode a msgpack snapshot written by :meth:`to_bytes`.

        Raises:
            SnapshotError: the bytes are not a JobState snapshot.
        """
        try:
            return _MSGPACK_DEC.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            msg = f"Cannot decode a JobState snapshot ({len(data)} bytes): {exc}"
            raise SnapshotError(msg) from exc

    @classmethod
    def from_json(cls, data: bytes | str) -> JobState:
        """Decode a JSON snapshot written by :meth:`to_json`."""
        try:
            return _JSON_DEC.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            msg = f"Cannot decode a JobState JSON snapshot: {exc}"
            raise SnapshotError(msg) from exc


def _enc_hook(obj: Any) -> Any:
    # Sets and frozensets are common payloads msgspec encodes natively; anything that
    # reaches this hook has no faithful encoding, and we never fall back to repr/pickle.
    msg = f"Encoding objects of type {type(obj).__qualname__} is unsupported"
    raise TypeError(msg)


_MSGPACK = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_JSON = msgspec.json.Encoder(enc_hook=_enc_hook)
_MSGPACK_DEC = msgspec.msgpack.Decoder(JobState)
_JSON_DEC = msgspec.json.Decoder(JobState)


def _unencodable(value: Any) -> str | None:
    try:
        _MSGPACK.encode(value)
    except (TypeError, msgspec.EncodeError):
        return _offender(value)
    return None


def _offender(value: Any) -> str:
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            if _unencodable(item) is not None:
                return _offender(item)
    if isinstance(value, dict):
        for item in value.values():
            if _unencodable(item) is not None:
                return _offender(item)
    return f"{type(value).__module__}.{type(value).__qualname__}"


def unencodable_error(
    what: str, places: list[tuple[str, Any]], exc: BaseException
) -> SnapshotError:
    """The error for an encode failure: the first of ``places`` holding an unencodable value.

    Args:
        what: The failed action and its job, e.g. ``"snapshot job 1f…"``.
        places: ``(where, value)`` pairs to search, in the order to report them.
        exc: msgspec's own error, used when no place is to blame.
    """
    for place, value in places:
        bad = _unencodable(value)
        if bad is not None:
            msg = (
                f"Cannot {what}: {place} holds a value of type {bad}, "
                "which msgspec cannot encode (use builtins, Structs, dataclasses, enums, "
                "datetime, UUID, Decimal or bytes)"
            )
            return SnapshotError(msg)
    return SnapshotError(f"Cannot {what}: {exc}")


def _locate_unencodable(snap: JobState, exc: BaseException) -> SnapshotError:
    where: list[tuple[str, Any]] = []
    where.extend((f"node `{p.node}`, pending activation", a) for p in snap.pending for a in p.args)
    where.extend((f"node `{b.node}`, slot `{b.slot}`", v) for b in snap.buffers for v in b.values)
    where.extend((f"output `{k}`", v) for k, vs in snap.outputs.items() for v in vs)
    where.extend((f"node `{n}`, routine state", rs.state) for n, rs in snap.routine_states.items())
    where.append(("shared data", snap.shared_data))
    where.append(("shared log", snap.shared_log))
    return unencodable_error(f"snapshot job {snap.job_id}", where, exc)
