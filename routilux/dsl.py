"""The typed DSL: ``@routine`` functions, nodes, ``Outputs``/``Emit`` and slot policies.

This docstring is the routine contract (docs/semantics.md has the rules with examples).

* ``@routine`` reads a function's signature and type hints **once** and freezes a
  :class:`~routilux.spec.RoutineSpec`; nothing is inspected while jobs run.
* Slots come from parameters: ``x: T`` (queue), ``x: Latest[T]`` (override, sticky),
  ``x: Append[T]`` (the body gets ``list[T]`` once upstream is quiescent; add
  ``Annotated[Append[T], Batch(n)]`` to fire every ``n`` values) and
  ``x: Annotated[T, Reduce(fn)]`` (folded with ``fn(acc, value)`` until upstream is
  quiescent). A parameter with a default is optional.
* Events come from the return annotation (``result``; none for ``-> None``), a
  generator's item type (one ``result`` emit per ``yield``), or a parameter whose
  type is an :class:`Outputs` subclass (several named events, injected, not a slot).
  ``async def`` routines are awaited; their ``result`` has the awaited type.
* A parameter whose type is a :class:`State` subclass is the node's per-job state,
  injected (not a slot): the first activation in a job gets ``Cls()``, each next one
  what the previous left. It is kept in the job (``RoutineState.state``, as the
  Struct's fields), so it is snapshotted and crosses to process and cluster workers.
  A stateful routine runs one activation per job at a time (``concurrency=1``).
* Definition errors — ``*args``/``**kwargs``, names starting with ``_``, a slot named
  like an event or like a node attribute, an ``Outputs`` routine that returns a
  value — raise :class:`~routilux.errors.DefinitionError` at decoration time.
* Calling a routine inside ``with Flow(...)`` makes a node; ``name=`` picks its name.
"""

from __future__ import annotations

import collections.abc as cabc
import inspect
import sys
import threading
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Generic, ParamSpec, TypeVar

import msgspec

from .errors import DefinitionError, ValidationError
from .event import Event
from .node import NODE_ATTRIBUTES, NodeBase
from .slot import Slot
from .spec import EventSpec, Invoke, Policy, RoutineSpec, SlotSpec
from .typecheck import type_name

if TYPE_CHECKING:
    from .flow import Flow

__all__ = [
    "Append",
    "Batch",
    "Emit",
    "Latest",
    "Node",
    "Outputs",
    "Reduce",
    "RoutineDef",
    "State",
    "routine",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


# -- slot policy markers -------------------------------------------------------------


class Append(list[T]):
    """``x: Append[T]``: the body receives every value delivered (a ``list[T]``).

    The slot is ready when no upstream node can still deliver to it in this job;
    ``Annotated[Append[T], Batch(n)]`` also fires each time ``n`` values are buffered.
    """


class _LatestMarker:
    def __repr__(self) -> str:
        return "Latest"


_LATEST = _LatestMarker()

#: ``x: Latest[T]``: the newest value replaces an unconsumed one and stays for later runs.
Latest = Annotated[T, _LATEST]
Latest.__doc__ = """``x: Latest[T]``: an override slot (routilux's "override" merge strategy).

A new value replaces an unconsumed one, and the value stays (sticky) for later
activations: a config input for a stream.
"""


class Reduce(msgspec.Struct, frozen=True):
    """``x: Annotated[T, Reduce(fn)]``: fold deliveries with ``fn(acc, value)``.

    Args:
        fn: The fold. Without ``initial`` the first value starts the accumulator.
        initial: The starting accumulator.
    """

    fn: Callable[[Any, Any], Any]
    initial: Any = SlotSpec.NO_DEFAULT


class Batch(msgspec.Struct, frozen=True):
    """``Annotated[Append[T], Batch(n)]``: fire as soon as ``n`` values are buffered."""

    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            msg = f"Batch size must be a positive int, got {self.size!r}"
            raise DefinitionError(msg)


# -- multi-event outputs -------------------------------------------------------------


class Emit(Generic[T]):
    """A named event on an :class:`Outputs` class; call it to emit a value."""

    __slots__ = ("_emit", "_name")

    def __init__(self, name: str, emit: Callable[[str, Any], None]) -> None:
        self._name = name
        self._emit = emit

    def __call__(self, value: T) -> None:
        """Emit ``value`` on this event (returns at once; delivery is scheduled)."""
        self._emit(self._name, value)


class _EmitField:
    """Class attribute standing for an ``Emit[T]`` field; binds on instance access."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Outputs | None, owner: type[Outputs]) -> Any:
        if obj is None:
            return self
        return Emit(self.name, obj._emit)


class Outputs:
    """Base class for several named events: declare fields as ``name: Emit[T]``.

    A routine parameter annotated with an ``Outputs`` subclass is injected (not a
    slot); each field becomes an event of the node.
    """

    __slots__ = ("_emit",)
    _emit: Callable[[str, Any], None]
    __events__: typing.ClassVar[tuple[EventSpec, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        try:
            hints = typing.get_type_hints(cls)
        except NameError as exc:
            msg = f"Cannot resolve the annotations of Outputs class `{cls.__qualname__}`: {exc}"
            raise DefinitionError(msg) from exc
        events: list[EventSpec] = []
        for name, hint in hints.items():
            if typing.get_origin(hint) is not Emit and hint is not Emit:
                continue
            if name.startswith("_"):
                msg = f"Outputs class `{cls.__qualname__}` field `{name}`: event names cannot start with '_'"
                raise DefinitionError(msg)
            args = typing.get_args(hint)
            events.append(EventSpec(name, args[0] if args else Any))
            setattr(cls, name, _EmitField(name))
        cls.__events__ = tuple(events)

    @classmethod
    def _bind(cls, emit: Callable[[str, Any], None]) -> Outputs:
        out = cls.__new__(cls)
        out._emit = emit
        return out


# -- per-job routine state ---------------------------------------------------------


class State(msgspec.Struct, kw_only=True):
    """Base class of a routine's per-job state: a msgspec Struct whose fields all have defaults.

    A routine parameter annotated with a ``State`` subclass receives the node's state in
    the current job (``Cls()`` at first); changes made by an activation that returns
    normally are kept for the next one. Fields must be msgspec-encodable.
    """


_state_now = threading.local()


def _stateful(inner: Invoke, cls: type[State]) -> Invoke:
    """Wrap ``inner`` so it loads the node's state before the call and stores it after."""
    from .jobrun import current_task

    def invoke(args: tuple[Any, ...], emit: Callable[[str, Any], None]) -> None:
        cur = current_task()
        if cur is None:
            msg = f"State of `{cls.__qualname__}` is only available inside a running job"
            raise RuntimeError(msg)
        # One activation of a stateful node per job runs at a time (concurrency=1), so
        # the running activation owns the node's state until it returns.
        rs = cur[1].rs
        state = msgspec.convert(rs.state, cls) if rs.state else cls()
        prev = getattr(_state_now, "value", None)
        _state_now.value = state
        try:
            inner(args, emit)
        finally:
            _state_now.value = prev
        rs.state = msgspec.to_builtins(state)

    return invoke


# -- routines and nodes --------------------------------------------------------------


class RoutineDef(Generic[P, R]):
    """A node type made by ``@routine``: call it inside ``with Flow(...)`` to add a node.

    Attributes:
        spec: The frozen description the engine runs.
        fn: The decorated function, unchanged (call it directly in unit tests).
    """

    def __init__(self, fn: Callable[P, R], spec: RoutineSpec) -> None:
        self.fn = fn
        self.spec = spec
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", spec.name)
        self.__qualname__ = getattr(fn, "__qualname__", spec.name)
        self.__module__ = getattr(fn, "__module__", __name__)

    def __call__(self, *, name: str | None = None, flow: Flow | None = None) -> Node[P, R]:
        """Add a node of this type to ``flow`` (default: the innermost ``with Flow``).

        Args:
            name: The node's name, unique in the flow (default: the routine's name,
                suffixed ``_2``, ``_3``… on reuse).
            flow: The flow to add to, when not inside a ``with Flow(...)`` block.

        Raises:
            ValidationError: there is no flow to add the node to, or the name is taken.
        """
        from .flow import Flow

        target = flow if flow is not None else Flow.current()
        if target is None:
            msg = (
                f"Routine `{self.spec.name}` was called outside a flow: create nodes inside "
                f"`with Flow(...):`, or pass `flow=`"
            )
            raise ValidationError(msg)
        node: Node[P, R] = Node(self.spec)
        target._add_node(node, name)
        return node

    def __repr__(self) -> str:
        return f"<routine {self.spec.ref or self.spec.name} ({self.spec.describe_ports()})>"


class Node(NodeBase, Generic[P, R]):
    """A node made from a ``@routine``: its ports are attributes named as the routine's.

    ``node.<param>`` is a ``Slot``; ``node.result`` and ``node.<Outputs field>`` are
    ``Event``s. The mypy plugin gives each port its precise type.
    """

    if TYPE_CHECKING:
        result: Event[R]

        def __getattr__(self, name: str) -> Any: ...

    def __init__(self, spec: RoutineSpec) -> None:
        self._spec = spec
        self._slots: dict[str, Slot[Any]] = {}
        self._events: dict[str, Event[Any]] = {}

    def _bind(self, flow: Flow, name: str) -> None:
        self.flow = flow
        self.node_name = name
        for s in self._spec.slots:
            self._slots[s.name] = self.__dict__[s.name] = Slot(self, s.name, s.type)
        for e in self._spec.events:
            self._events[e.name] = self.__dict__[e.name] = Event(self, e.name, e.type)

    @property
    def spec(self) -> RoutineSpec:
        return self._spec

    def _slot_map(self) -> dict[str, Slot[Any]]:
        return self._slots

    def _event_map(self) -> dict[str, Event[Any]]:
        return self._events

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            if name.startswith("_"):
                raise AttributeError(name)
            msg = (
                f"Routine `{self.__dict__.get('node_name', self._spec.name)}` has no slot or "
                f"event `{name}` ({self._spec.describe_ports()})"
            )
            from .errors import WiringError

            raise WiringError(msg)

    def __repr__(self) -> str:
        return f"<Node {getattr(self, 'node_name', '?')}: {self._spec.name}>"


def routine(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    concurrency: int = 1,
    on_error: Any = None,
    timeout: float | None = None,
    placement: str = "executor",
) -> RoutineDef[P, R]:
    """Turn a function into a node type; see the module docstring for the contract.

    Use bare (``@routine``) or with options (``@routine(concurrency=4)``).

    Args:
        fn: The function (``def``, generator, ``async def`` or async generator).
        name: The routine's name (default: the function's name).
        concurrency: Activations of one job that may run at once on one node.
        on_error: The error policy for this routine (default: the flow's).
        timeout: Per-activation timeout in seconds.
        placement: ``"executor"`` (default: wherever the flow's executor runs tasks) or
            ``"local"`` (always in the dispatcher's process, on a thread; for routines that
            hold process-local resources or take values msgspec cannot encode).

    Raises:
        DefinitionError: the signature cannot be a node type; the message names the
            routine and the parameter.
    """
    frame = sys._getframe(1)
    localns = dict(frame.f_locals) if frame.f_code.co_name != "<module>" else None

    def decorate(f: Callable[P, R]) -> RoutineDef[P, R]:
        spec = build_spec(
            f,
            name=name,
            concurrency=concurrency,
            on_error=on_error,
            timeout=timeout,
            placement=placement,
            localns=localns,
        )
        return RoutineDef(f, spec)

    if fn is None:
        return decorate  # type: ignore[return-value]  # the plugin types the options form
    return decorate(fn)


# -- spec derivation (definition time only) ------------------------------------------


def build_spec(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    concurrency: int = 1,
    on_error: Any = None,
    timeout: float | None = None,
    placement: str = "executor",
    localns: dict[str, Any] | None = None,
) -> RoutineSpec:
    """Derive a :class:`RoutineSpec` from a function (once, at decoration time)."""
    if not callable(fn) or not hasattr(fn, "__code__"):
        msg = f"@routine expects a function, got {type(fn).__name__} {fn!r}"
        raise DefinitionError(msg)
    rname = name or fn.__name__
    where = f"Routine `{rname}`"
    if not isinstance(concurrency, int) or concurrency < 1:
        msg = f"{where}: concurrency must be a positive int, got {concurrency!r}"
        raise DefinitionError(msg)
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        msg = f"{where}: timeout must be a positive number of seconds, got {timeout!r}"
        raise DefinitionError(msg)
    if placement not in ("executor", "local"):
        msg = f'{where}: placement must be "executor" or "local", got {placement!r}'
        raise DefinitionError(msg)
    try:
        hints = typing.get_type_hints(fn, localns=localns, include_extras=True)
    except NameError as exc:
        msg = f"{where}: cannot resolve an annotation ({exc}); define the type before the routine"
        raise DefinitionError(msg) from exc
    sig = inspect.signature(fn)

    is_gen = inspect.isgeneratorfunction(fn)
    is_async_gen = inspect.isasyncgenfunction(fn)
    is_async = inspect.iscoroutinefunction(fn)
    kind = (
        "generator"
        if is_gen
        else "async_generator"
        if is_async_gen
        else "async"
        if is_async
        else "function"
    )

    slots: list[SlotSpec] = []
    shape: list[tuple[str, str]] = []  # (role, name): role is "slot", "out" or "kw"
    outputs_cls: type[Outputs] | None = None
    state_cls: type[State] | None = None
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL or p.kind is p.VAR_KEYWORD:
            star = "*" if p.kind is p.VAR_POSITIONAL else "**"
            msg = (
                f"{where}: parameter `{star}{p.name}` cannot be a slot; "
                "declare each input as a named parameter"
            )
            raise DefinitionError(msg)
        if p.name.startswith("_"):
            msg = f"{where}: parameter `{p.name}` starts with '_'; slot names must be public"
            raise DefinitionError(msg)
        hint = hints.get(p.name, Any)
        if isinstance(hint, type) and issubclass(hint, Outputs):
            if outputs_cls is not None:
                msg = f"{where}: parameter `{p.name}` is a second Outputs parameter; use one"
                raise DefinitionError(msg)
            outputs_cls = hint
            shape.append(("out" if p.kind is not p.KEYWORD_ONLY else "kwout", p.name))
            continue
        if isinstance(hint, type) and issubclass(hint, State):
            if state_cls is not None:
                msg = f"{where}: parameter `{p.name}` is a second State parameter; use one"
                raise DefinitionError(msg)
            if concurrency != 1:
                msg = f"{where}: a routine with State runs one activation per job at a time; remove concurrency={concurrency}"
                raise DefinitionError(msg)
            try:
                hint()
            except TypeError as exc:
                msg = f"{where}: State class `{hint.__qualname__}` needs a default for every field ({exc})"
                raise DefinitionError(msg) from exc
            state_cls = hint
            shape.append(("state" if p.kind is not p.KEYWORD_ONLY else "kwstate", p.name))
            continue
        if p.name in NODE_ATTRIBUTES:
            msg = (
                f"{where}: parameter `{p.name}` clashes with the node attribute "
                f"`{p.name}`; rename it"
            )
            raise DefinitionError(msg)
        default = SlotSpec.NO_DEFAULT if p.default is p.empty else p.default
        slots.append(_slot_spec(where, p.name, hint, default))
        shape.append(("slot" if p.kind is not p.KEYWORD_ONLY else "kw", p.name))

    events: list[EventSpec] = []
    ret = hints.get("return", Any)
    if outputs_cls is not None:
        returns_value = ret is not type(None) and ret is not None and "return" in hints
        if not is_gen and not is_async_gen and returns_value:
            msg = (
                f"{where}: a routine with an Outputs parameter must return None "
                f"(it emits through `{_out_name(shape)}`); got -> {type_name(ret)}"
            )
            raise DefinitionError(msg)
        events.extend(outputs_cls.__events__)
    if is_gen or is_async_gen:
        if any(e.name == "result" for e in events):
            msg = (
                f"{where}: event `result` is declared twice (the generator's items and "
                "Outputs field `result`); rename the field"
            )
            raise DefinitionError(msg)
        events.insert(0, EventSpec("result", _item_type(ret, is_async_gen)))
    elif outputs_cls is None and ret is not type(None) and ret is not None:
        events.append(EventSpec("result", ret))

    event_names = {e.name for e in events}
    for s in slots:
        if s.name in event_names:
            msg = (
                f"{where}: parameter `{s.name}` has the name of an event; a port name "
                "is either a slot or an event"
            )
            raise DefinitionError(msg)
    for e in events:
        if e.name in NODE_ATTRIBUTES:
            msg = f"{where}: event `{e.name}` clashes with the node attribute `{e.name}`; rename it"
            raise DefinitionError(msg)

    invoke = _compile_invoke(fn, kind, shape, outputs_cls, has_result="result" in event_names)
    if state_cls is not None:
        invoke = _stateful(invoke, state_cls)
    return RoutineSpec(
        name=rname,
        slots=tuple(slots),
        events=tuple(events),
        invoke=invoke,
        kind=kind,
        concurrency=concurrency,
        on_error=on_error,
        timeout=timeout,
        placement=placement,
        ref=f"{fn.__module__}:{fn.__qualname__}",
        doc=inspect.getdoc(fn) or "",
        target=fn,
        state=state_cls,
        # A function's one emit is its return value, made as the activation's last step.
        tail_emit=kind in ("function", "async")
        and "result" in event_names
        and not any(role in ("out", "kwout") for role, _ in shape),
        direct=fn
        if kind == "function"
        and "result" in event_names
        and state_cls is None
        and all(role == "slot" for role, _ in shape)
        else None,
    )


def _out_name(shape: list[tuple[str, str]]) -> str:
    return next(n for role, n in shape if role in ("out", "kwout"))


def _slot_spec(where: str, name: str, hint: Any, default: Any) -> SlotSpec:
    policy = Policy.QUEUE
    batch: int | None = None
    merge: Callable[[Any, Any], Any] | None = None
    initial: Any = SlotSpec.NO_DEFAULT
    annotation = hint
    tp = hint
    while typing.get_origin(tp) is Annotated:
        for meta in tp.__metadata__:
            if meta is _LATEST:
                policy = Policy.LATEST
            elif isinstance(meta, Reduce):
                policy, merge, initial = Policy.REDUCE, meta.fn, meta.initial
            elif isinstance(meta, Batch):
                batch = meta.size
        tp = tp.__origin__
    if typing.get_origin(tp) is Append or tp is Append:
        if policy is not Policy.QUEUE:
            msg = f"{where}: parameter `{name}` combines Append with {policy.value}; pick one"
            raise DefinitionError(msg)
        policy = Policy.APPEND
        args = typing.get_args(tp)
        tp = args[0] if args else Any
    if batch is not None and policy is not Policy.APPEND:
        msg = f"{where}: parameter `{name}` has Batch(...) without Append[T]; write Annotated[Append[T], Batch(n)]"
        raise DefinitionError(msg)
    return SlotSpec(
        name=name,
        type=tp,
        policy=policy,
        default=default,
        batch=batch,
        merge=merge,
        initial=initial,
        annotation=annotation,
    )


def _item_type(ret: Any, is_async: bool) -> Any:
    origin = typing.get_origin(ret)
    sync_origins = (cabc.Iterator, cabc.Iterable, cabc.Generator)
    async_origins = (cabc.AsyncIterator, cabc.AsyncIterable, cabc.AsyncGenerator)
    if origin in (async_origins if is_async else sync_origins):
        args = typing.get_args(ret)
        return args[0] if args else Any
    return Any


class _ThreadLoop:
    """The event loop of one thread; closed when the thread ends (its thread-local dies)."""

    __slots__ = ("loop",)

    def __init__(self) -> None:
        import asyncio  # asyncio costs ~40 ms to import; only async routines need it

        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        # At interpreter exit the main thread's loop dies after asyncio's modules: nothing
        # to release then, and closing would touch torn-down module globals.
        if not sys.is_finalizing():
            self.loop.close()


_loops = threading.local()


def _run_coroutine(coro: cabc.Coroutine[Any, Any, Any]) -> Any:
    import asyncio  # see _ThreadLoop: imported on first use

    # One event loop per worker thread, reused across activations: asyncio.run() would
    # build and tear down a loop per task.
    if asyncio._get_running_loop() is not None:
        return _run_on_helper_thread(coro)
    holder: _ThreadLoop | None = getattr(_loops, "holder", None)
    if holder is None:
        holder = _loops.holder = _ThreadLoop()
    return holder.loop.run_until_complete(coro)


def _run_on_helper_thread(coro: cabc.Coroutine[Any, Any, Any]) -> Any:
    # This thread already runs an event loop (``flow.run`` called from async code runs
    # inline tasks on the caller's thread), and a loop cannot be nested: run the
    # coroutine to completion on a short-lived thread of its own.
    box: list[tuple[bool, Any]] = []

    import asyncio  # see _ThreadLoop: imported on first use

    def target() -> None:
        try:
            box.append((True, asyncio.run(coro)))
        except BaseException as exc:
            box.append((False, exc))

    helper = threading.Thread(target=target, name="routilux-async", daemon=True)
    helper.start()
    helper.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value


async def _drain_async(agen: cabc.AsyncIterator[Any], emit: Callable[[str, Any], None]) -> None:
    async for item in agen:
        emit("result", item)


def _compile_invoke(
    fn: Callable[..., Any],
    kind: str,
    shape: list[tuple[str, str]],
    outputs_cls: type[Outputs] | None,
    *,
    has_result: bool,
) -> Invoke:
    simple = all(role == "slot" for role, _ in shape)
    call: Callable[[tuple[Any, ...], Callable[[str, Any], None]], Any]
    if simple:

        def call(args: tuple[Any, ...], emit: Callable[[str, Any], None]) -> Any:
            return fn(*args)

    else:
        roles = tuple(shape)
        out_cls = outputs_cls

        def call(args: tuple[Any, ...], emit: Callable[[str, Any], None]) -> Any:
            pos: list[Any] = []
            kw: dict[str, Any] = {}
            it = iter(args)
            for role, pname in roles:
                if role == "slot":
                    pos.append(next(it))
                elif role == "kw":
                    kw[pname] = next(it)
                elif role == "out":
                    pos.append(out_cls._bind(emit))  # type: ignore[union-attr]
                elif role == "state":
                    pos.append(_state_now.value)
                elif role == "kwstate":
                    kw[pname] = _state_now.value
                else:
                    kw[pname] = out_cls._bind(emit)  # type: ignore[union-attr]
            return fn(*pos, **kw)

    if kind == "function":
        if has_result and simple:

            def fn_result_simple(args: tuple[Any, ...], emit: Callable[[str, Any], None]) -> None:
                emit("result", fn(*args))

            return fn_result_simple
        if has_result:

            def fn_result(args: tuple[Any, ...], emit: Callable[[str, Any], None]) -> None:
                emit("result", call(args, emit))

            return fn_result

        if simple:

            def fn_plain_simple(args: tuple[Any, ...], emit: Callable[[str, Any], None]) -> None:
                fn(*args)

            return fn_plain_simple

        def fn_plain(args: tuple[Any, ...], emit: Callable[[str, Any], None]) -> None:
            call(args, emit)

        return fn_plain
    if kind == "generator":

        def gen(args: tuple[Any, ...], emit: Callable[[str, Any], None]) -> None:
            for item in call(args, emit):
                emit("result", item)

        return gen
    if kind == "async":
        if has_result:

            def async_result(args: tuple[Any, ...], emit: Callable[[str, Any], None]) -> None:
                emit("result", _run_coroutine(call(args, emit)))

            return async_result

        def async_plain(args: tuple[Any, ...], emit: Callable[[str, Any], None]) -> None:
            _run_coroutine(call(args, emit))

        return async_plain

    def async_gen(args: tuple[Any, ...], emit: Callable[[str, Any], None]) -> None:
        _run_coroutine(_drain_async(call(args, emit), emit))

    return async_gen
