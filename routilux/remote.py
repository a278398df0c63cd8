"""Running activations in other processes: one entry point, msgspec bytes both ways.

When a flow's executor is not a thread pool (a ``ProcessPoolExecutor``, the Ray
adapter of :mod:`routilux.executors`, Dask's ``client.get_executor(pure=False)``,
or any other ``concurrent.futures.Executor``), the dispatcher submits one
importable function, :func:`run_activation`, once per activation:

* **In**: msgspec bytes holding the routine reference (``module:qualname`` of a
  ``@routine``), the node name (for messages) and the activation's arguments.
  The worker imports the routine once per process, converts each argument back
  to its slot's declared type and runs the routine.
* **Out**: msgspec bytes holding the emitted ``(event, value)`` pairs in order,
  the activation's start time and duration, the worker's pid, or a failure
  (exception type, module, arguments, message and traceback text).

The dispatcher stays the only writer of JobState: a future's done-callback posts
the result to the dispatcher's inbox, and the dispatcher applies the emits in
order (each converted back to its event's declared type) and then releases the
node. Emits are applied only once an activation has completed, so the partial
output of a worker that died is discarded and the activation runs again: tasks
run at least once, state changes exactly once. The loop owns these re-runs (up
to ``Flow.worker_attempts`` times); the executor's own retries must be off.

User objects never go through pickle: they cross as msgspec values (builtins,
Structs, dataclasses, attrs, enums, datetime, UUID, Decimal, bytes). A value that
msgspec cannot encode fails the job when it is submitted (never retried), with a
:class:`~routilux.errors.SnapshotError` naming the node, the slot and the type.
"""

from __future__ import annotations

import importlib
import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor, Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import msgspec

from .errors import RoutiluxError, SnapshotError, ValidationError
from .job_state import PendingTask
from .spec import Policy, RoutineSpec

if TYPE_CHECKING:
    from .graph import CNode, CompiledFlow
    from .jobrun import JobRun, NodeRun, Task
    from .scheduler import Dispatcher

__all__ = ["WorkerLostError", "run_activation"]

#: Placements a routine may declare (``@routine(placement=...)``).
PLACEMENTS = ("executor", "local")

#: Exception type names that mean "the worker process died", not "the routine failed":
#: concurrent.futures' BrokenProcessPool (and its BrokenExecutor base), Ray's typed
#: worker and node losses, Dask's KilledWorker. Matched by name so that neither Ray nor
#: Dask is imported here.
_LOST_NAMES = frozenset(
    {
        "BrokenProcessPool",
        "BrokenExecutor",
        "WorkerCrashedError",
        "NodeDiedError",
        "LocalRayletDiedError",
        "KilledWorker",
    }
)

_CALL_MSG = 3  # scheduler._CALL: the inbox message that runs a function on the dispatcher


class WorkerLostError(RoutiluxError, RuntimeError):
    """An activation's worker process died on every attempt the flow allows."""


class RemoteTraceback(Exception):
    """The traceback text of an exception raised in a worker (set as its ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


class RemoteError(RoutiluxError, RuntimeError):
    """A routine's exception whose type does not exist, or cannot be rebuilt, here."""


# -- the wire format -----------------------------------------------------------------


class _Call(msgspec.Struct, array_like=True):
    ref: str
    node: str
    args: list[Any]
    state: dict[str, Any] | None = None


class _InCall(msgspec.Struct, array_like=True):
    ref: str
    node: str
    args: list[msgspec.Raw]
    state: dict[str, Any] | None = None


class _Failure(msgspec.Struct, array_like=True):
    type: str
    module: str
    message: str
    traceback: str
    args: list[Any] | None = None


class _Result(msgspec.Struct, array_like=True):
    emits: list[tuple[str, Any]]
    started: float
    duration: float
    pid: int
    failure: _Failure | None = None
    state: dict[str, Any] | None = None


class _InResult(msgspec.Struct, array_like=True):
    emits: list[tuple[str, msgspec.Raw]]
    started: float
    duration: float
    pid: int
    failure: _Failure | None = None
    state: dict[str, Any] | None = None


class _Holder:
    """Stands for the node in a worker: a stateful routine finds its state at ``.rs.state``."""

    __slots__ = ("rs", "state")

    def __init__(self, state: dict[str, Any]) -> None:
        self.rs = self
        self.state = state


_encode = msgspec.msgpack.Encoder().encode
_decode_call = msgspec.msgpack.Decoder(_InCall).decode
_decode_result = msgspec.msgpack.Decoder(_InResult).decode
_decode_any = msgspec.msgpack.Decoder().decode


def _typed_decoder(tp: Any) -> Callable[[msgspec.Raw], Any]:
    """Decode one value as ``tp``; a value that does not fit comes back plainly decoded.

    On threads values reach a routine unvalidated, so a value that does not match its
    declared type is handed over as decoded rather than failing here.
    """
    if tp is Any or tp is object:
        return _decode_any
    try:
        typed = msgspec.msgpack.Decoder(tp).decode
    except TypeError:  # a type msgspec does not know (a plain class): untyped
        return _decode_any

    def decode(raw: msgspec.Raw) -> Any:
        try:
            return typed(raw)
        except msgspec.ValidationError:
            return _decode_any(raw)

    return decode


# -- the worker side -----------------------------------------------------------------


class _Compiled:
    """A routine resolved in a worker: its call and one decoder per slot."""

    __slots__ = ("append", "decoders", "invoke")

    def __init__(self, spec: RoutineSpec) -> None:
        self.invoke = spec.invoke
        from .jobrun import _arg_type

        self.decoders = tuple(_typed_decoder(_arg_type(s)) for s in spec.slots)
        self.append = tuple(s.policy is Policy.APPEND for s in spec.slots)


_routines: dict[str, _Compiled] = {}


def resolve(ref: str) -> RoutineSpec:
    """The spec of the ``@routine`` at ``module:qualname``.

    Raises:
        ImportError: the module does not import.
        AttributeError: the module has no such attribute.
        TypeError: the attribute is not a ``@routine``.
    """
    from .dsl import RoutineDef

    module, _, qualname = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, RoutineDef):
        msg = f"`{ref}` is a {type(obj).__name__}, not a @routine"
        raise TypeError(msg)
    spec: RoutineSpec = obj.spec
    return spec


def run_activation(blob: bytes) -> bytes:
    """Run one activation described by ``blob`` and describe its outcome (the worker entry point).

    Args:
        blob: A msgspec-encoded call: routine reference, node name, arguments.

    Returns:
        A msgspec-encoded result: the emits in order, the start time and duration, the
        worker's pid, or the failure. This function does not raise for a routine's
        exception; only the loss of the worker itself fails its future.
    """
    started = time.time()
    p0 = time.perf_counter()
    emits: list[tuple[str, Any]] = []
    failure: _Failure | None = None
    call: _InCall | None = None
    holder: _Holder | None = None
    try:
        call = _decode_call(blob)
        compiled = _routines.get(call.ref)
        if compiled is None:
            compiled = _routines[call.ref] = _Compiled(resolve(call.ref))
        args = tuple(
            dec(raw) if not app else _append(dec(raw))
            for dec, app, raw in zip(compiled.decoders, compiled.append, call.args, strict=True)
        )
        add = emits.append

        def emit(event: str, value: Any) -> None:
            add((event, value))

        if call.state is None:
            compiled.invoke(args, emit)
        else:
            # A stateful routine reads and writes its state through the task context.
            from .jobrun import _ctx

            holder = _Holder(call.state)
            _ctx.cur = (None, holder, emit)
            try:
                compiled.invoke(args, emit)
            finally:
                _ctx.cur = None
    except BaseException as exc:
        failure = _failure(exc)
    duration = time.perf_counter() - p0
    pid = os.getpid()
    state = holder.state if holder is not None and failure is None else None
    try:
        return _encode(_Result(emits, started, duration, pid, failure, state))
    except (TypeError, msgspec.EncodeError) as exc:
        node = call.node if call is not None else "?"
        err = SnapshotError(_emit_encode_message(node, emits, exc))
        return _encode(_Result([], started, duration, pid, _failure(err)))


def _append(values: Any) -> Any:
    from .dsl import Append

    return Append(values) if isinstance(values, list) else values


def _failure(exc: BaseException) -> _Failure:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    args: list[Any] | None = list(exc.args)
    try:
        _encode(args)
    except (TypeError, msgspec.EncodeError):
        args = None
    cls = type(exc)
    return _Failure(cls.__qualname__, cls.__module__, str(exc), tb, args)


def _emit_encode_message(node: str, emits: list[tuple[str, Any]], exc: BaseException) -> str:
    for event, value in emits:
        try:
            _encode(value)
        except (TypeError, msgspec.EncodeError):
            return (
                f"Routine `{node}` emitted a `{type(value).__qualname__}` on `{event}`, which "
                f"msgspec cannot encode ({exc}); emit builtins, Structs, dataclasses or attrs "
                'classes, or run the routine in this process with @routine(placement="local")'
            )
    return f"Routine `{node}`: its result cannot be encoded ({exc})"


# -- the dispatcher side -------------------------------------------------------------


def is_worker_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (from an executor's future) means the worker died."""
    return any(c.__name__ in _LOST_NAMES for c in type(exc).__mro__)


def rebuild_exception(f: _Failure) -> BaseException:
    """The routine's exception, rebuilt from its description, with the worker traceback as cause."""
    exc: BaseException
    try:
        cls: Any = importlib.import_module(f.module)
        for part in f.type.split("."):
            cls = getattr(cls, part)
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(f.type)
        # Built without __init__ (whose signature is the user's): args are what str() reads.
        exc = cls.__new__(cls)
        exc.args = tuple(f.args) if f.args is not None else (f.message,)
        if str(exc) != f.message:
            exc.args = (f.message,)
    except Exception:
        exc = RemoteError(f"{f.module}.{f.type}: {f.message}")
    exc.__cause__ = RemoteTraceback(f.traceback)
    return exc


def _executor_name(executor: Executor) -> str:
    return type(executor).__name__


class RemoteRunner:
    """The dispatcher's side of the remote path: encode, submit, re-run lost work, apply."""

    def __init__(self, dispatcher: Dispatcher, executor: Executor, attempts: int) -> None:
        self.dispatcher = dispatcher
        self.executor = executor
        self.attempts = attempts
        self.inbox = dispatcher.inbox
        self._checked: dict[int, CompiledFlow] = {}
        # Keyed by id(CNode), the CNode kept in the value so that its id is not reused.
        self._event_decoders: dict[int, tuple[CNode, dict[str, Callable[[msgspec.Raw], Any]]]] = {}

    # -- before a run (any thread) -------------------------------------------------------

    def check(self, compiled: CompiledFlow) -> None:
        """Fail before anything is submitted if a worker could not import one of the routines.

        Raises:
            ValidationError: naming every such routine and the fix.
        """
        if self._checked.get(id(compiled)) is compiled:
            return
        name = _executor_name(self.executor)
        problems = [p for cn in compiled.nodes if (p := _import_problem(cn, name)) is not None]
        if problems:
            msg = f"Cannot run flow {self.dispatcher.flow.flow_id!r} on {name}:\n" + "\n".join(
                f"- {p}" for p in problems
            )
            raise ValidationError(msg)
        self._checked[id(compiled)] = compiled

    # -- submit (dispatcher thread) --------------------------------------------------------

    def submit(self, job: JobRun, task: Task, token: int) -> None:
        nr, args, _ = task
        cn = nr.cn
        if cn.spec.placement == "local":
            disp = self.dispatcher
            disp._executor_for(True).submit(disp._work, job, task, token)
            return
        state = nr.rs.state if cn.spec.state is not None else None
        try:
            blob = _encode(_Call(cn.spec.ref, nr.name, list(args), state))
        except (TypeError, msgspec.EncodeError) as exc:
            err = SnapshotError(_args_encode_message(cn, args, exc))
            err.__cause__ = exc
            self._fail_job(job, task, token, err, keep=False)
            return
        self._send(job, task, token, blob, 1)

    def _send(self, job: JobRun, task: Task, token: int, blob: bytes, attempt: int) -> None:
        try:
            fut = self.executor.submit(run_activation, blob)
        except Exception as exc:
            self._finished(job, task, token, blob, attempt, None, exc)
            return
        put = self.inbox.put

        def done(f: Future[bytes]) -> None:
            # Runs on the executor's thread: read the outcome, hand it to the dispatcher.
            out: bytes | None = None
            exc: BaseException | None
            if f.cancelled():
                exc = CancelledError()
            else:
                exc = f.exception()
                out = f.result() if exc is None else None
            put(
                (
                    _CALL_MSG,
                    lambda: self._finished(job, task, token, blob, attempt, out, exc),
                )
            )

        fut.add_done_callback(done)

    # -- completion (dispatcher thread) ----------------------------------------------------

    def _finished(
        self,
        job: JobRun,
        task: Task,
        token: int,
        blob: bytes,
        attempt: int,
        out: bytes | None,
        exc: BaseException | None,
    ) -> None:
        if token not in job.running:
            return  # abandoned after a timeout; its late result is dropped
        disp = self.dispatcher
        nr = task[0]
        if exc is not None:
            if is_worker_lost(exc):
                if not job.live_emits:
                    # Cancelled or already failing: its output would be dropped anyway.
                    job.running.pop(token)
                    disp.running -= 1
                    job.release(nr)
                    return
                if attempt < self.attempts:
                    self._send(job, task, token, blob, attempt + 1)
                    return
                hint = ""
                if isinstance(self.executor, ProcessPoolExecutor):
                    hint = (
                        "; a ProcessPoolExecutor takes no more tasks once a worker has died: "
                        "use routilux.executors.ProcessPool, which replaces itself"
                    )
                lost = WorkerLostError(
                    f"Worker lost while running `{nr.name}`: {attempt} attempt"
                    f"{'s' if attempt != 1 else ''} of {self.attempts} ended with the worker "
                    f"process gone ({type(exc).__name__}: {exc}){hint}"
                )
                lost.__cause__ = exc
                self._fail_job(job, task, token, lost, keep=True)
                return
            job.running.pop(token)
            disp.running -= 1
            nr.rs.activations += 1
            disp._failed(job, task, exc)
            return
        assert out is not None
        res = _decode_result(out)
        job.running.pop(token)
        disp.running -= 1
        rs = nr.rs
        rs.activations += 1
        rs.busy_time += res.duration
        if res.state is not None:
            rs.state = res.state
        job.record_task(nr, res.started - job.wall0, res.duration, res.failure is None)
        # Emits made before a routine raised are applied too, as on threads (where they
        # are delivered as they happen); only a lost worker's output is discarded.
        try:
            for event, raw in res.emits:
                nr._emit_inline(event, self._event_decoder(nr, event)(raw))
        except Exception as err:
            disp._failed(job, task, err)
            return
        if res.failure is not None:
            disp._failed(job, task, rebuild_exception(res.failure))
            return
        job.release(nr)
        if job.journal is not None:
            job.journal.task_end(task)

    def _event_decoder(self, nr: NodeRun, event: str) -> Callable[[msgspec.Raw], Any]:
        cn = nr.cn
        entry = self._event_decoders.get(id(cn))
        if entry is None:
            entry = self._event_decoders[id(cn)] = (cn, {})
        decoders = entry[1]
        dec = decoders.get(event)
        if dec is None:
            spec = cn.spec.event_index.get(event)
            dec = decoders[event] = _typed_decoder(spec.type if spec else Any)
        return dec

    def _fail_job(
        self, job: JobRun, task: Task, token: int, exc: BaseException, *, keep: bool
    ) -> None:
        """Fail ``job`` outright (no error policy): the failure is not the routine's doing."""
        if job.running.pop(token, None) is None:
            return
        disp = self.dispatcher
        nr, args, attempt = task
        disp.running -= 1
        record = disp._record_error(job, nr, exc, attempt)
        nr.rs.status = "failed"
        if not job.finished and job.live_emits:
            if keep:
                job.state.pending.append(
                    PendingTask(node=nr.name, args=list(args), attempt=attempt)
                )
            disp._stop(job, record)
        job.release(nr)


def _args_encode_message(cn: CNode, args: tuple[Any, ...], exc: BaseException) -> str:
    where = f"Cannot send an activation of `{cn.name}` to the executor"
    for spec, value in zip(cn.slot_specs, args, strict=True):
        try:
            _encode(value)
        except (TypeError, msgspec.EncodeError) as err:
            return (
                f"{where}: the value for slot `{spec.name}` is a `{type(value).__qualname__}`, "
                f"which msgspec cannot encode ({err}); send builtins, Structs, dataclasses or "
                'attrs classes, or run the routine in this process with @routine(placement="local")'
            )
    return f"{where}: {exc}"


def _import_problem(cn: CNode, executor: str) -> str | None:
    spec = cn.spec
    if spec.placement == "local":
        return None
    who = f"routine `{spec.name}`" + (f" (node `{cn.name}`)" if cn.name != spec.name else "")
    local = '@routine(placement="local") to run it in this process'
    if spec.kind == "classic":
        return (
            f"{who} is a classic Routine: its handlers are bound to an object in this process, "
            f"so {executor} workers cannot run it; write it as a @routine function, or run "
            "the flow on threads (no executor, or a ThreadPoolExecutor)"
        )
    module, _, qualname = spec.ref.partition(":")
    if module == "__main__":
        return (
            f"{who} is defined in `__main__`, which {executor} workers cannot import; move it "
            f"to an importable module, or mark it {local}"
        )
    if qualname.endswith("<lambda>"):
        return (
            f"{who} is a lambda, which {executor} workers cannot import; write it as a "
            f"module-level def, or mark it {local}"
        )
    if "<locals>" in qualname:
        return (
            f"{who} (`{spec.ref}`) is defined inside a function, so {executor} workers cannot "
            f"import it; define it at module level, or mark it {local}"
        )
    try:
        found = resolve(spec.ref)
    except Exception as exc:
        return (
            f"{who}: `{spec.ref}` does not import here ({type(exc).__name__}: {exc}), so "
            f"{executor} workers cannot import it either; make `{qualname}` a module-level "
            f"@routine of `{module}`, or mark it {local}"
        )
    if found.target is not spec.target:
        return (
            f"{who}: `{spec.ref}` names a different routine, so {executor} workers would run "
            f"the wrong code; give it its own module-level name, or mark it {local}"
        )
    return None
