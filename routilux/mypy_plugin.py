"""mypy plugin: typed ports on routilux nodes, definition errors at ``@routine``.

Enable it in ``mypy.ini`` (``plugins = routilux.mypy_plugin``) or ``pyproject.toml``
(``[tool.mypy] plugins = ["routilux.mypy_plugin"]``). Without it, ``node.<port>`` is
``Any`` (``Node.__getattr__``); with it:

* ``node.<param>`` is ``Slot[T]``, ``T`` the parameter's type with the slot policy
  unwrapped (``Append[T]``, ``Latest[T]``, ``Annotated[T, Reduce(fn)]`` and
  ``Annotated[Append[T], Batch(n)]`` all give ``T``);
* ``node.result`` is ``Event[T]``: the return type, a generator's item type, or an
  ``async def``'s awaited type; ``node.<field>`` is ``Event[T]`` for each ``Emit[T]``
  field of an ``Outputs`` parameter (that parameter is not a slot);
* a name that is not a port is an error listing the real ports (code ``node-port``);
* ``@routine`` reports definition errors at the decorator line, each with its own code,
  mirroring the :class:`~routilux.errors.DefinitionError` raised at import time;
* ``@routine(concurrency=2)`` (the options form) is typed as a decorator.

Ports are computed from the ``Node[P, R]`` type arguments at each attribute access, not
stored in the plugin, so they are right when the defining module comes from mypy's
incremental cache. The routine's name (for messages) rides along in the instance's
``extra_attrs``, which mypy serialises with the type; when it is missing (a ``Node``
spelled in an annotation) messages say ``Node`` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mypy.errorcodes import ErrorCode
from mypy.nodes import (
    ARG_STAR,
    ARG_STAR2,
    Context,
    Decorator,
    FuncDef,
    MypyFile,
    StrExpr,
    TypeInfo,
    Var,
)
from mypy.plugin import (
    AttributeContext,
    CheckerPluginInterface,
    FunctionContext,
    MethodContext,
    Plugin,
)
from mypy.server.trigger import make_trigger, make_wildcard_trigger
from mypy.types import (
    AnyType,
    CallableType,
    Instance,
    LiteralType,
    NoneType,
    Parameters,
    ProperType,
    Type,
    TypeOfAny,
    UnionType,
    get_proper_type,
)

from .node import NODE_ATTRIBUTES

__all__ = [
    "NODE_PORT",
    "ROUTINE_NAME_CLASH",
    "ROUTINE_OUTPUTS_RETURN",
    "ROUTINE_PRIVATE_NAME",
    "ROUTINE_STAR_ARGS",
    "RoutiluxPlugin",
    "plugin",
]

NODE_PORT = ErrorCode("node-port", "A routilux node has no such slot or event", "routilux")
ROUTINE_STAR_ARGS = ErrorCode(
    "routine-star-args", "A routine declares *args or **kwargs", "routilux"
)
ROUTINE_PRIVATE_NAME = ErrorCode(
    "routine-private-name", "A routine parameter starts with '_'", "routilux"
)
ROUTINE_NAME_CLASH = ErrorCode(
    "routine-name-clash",
    "A routine port is named like an event, a node attribute, or a second Outputs",
    "routilux",
)
ROUTINE_OUTPUTS_RETURN = ErrorCode(
    "routine-outputs-return", "A routine with an Outputs parameter returns a value", "routilux"
)

_ROUTINE = "routilux.dsl.routine"
_ROUTINE_DEF = "routilux.dsl.RoutineDef"
_NODE = "routilux.dsl.Node"
_OUTPUTS = "routilux.dsl.Outputs"
_STATE = "routilux.dsl.State"
_EMIT = "routilux.dsl.Emit"
_APPEND = "routilux.dsl.Append"
_SLOT = "routilux.slot.Slot"
_EVENT = "routilux.event.Event"
# The key under which a RoutineDef/Node instance carries its routine's name.
_NAME_KEY = "__routilux_name__"

_SYNC_ITERABLES = frozenset({"typing.Iterator", "typing.Iterable", "typing.Generator"})
_ASYNC_ITERABLES = frozenset(
    {"typing.AsyncIterator", "typing.AsyncIterable", "typing.AsyncGenerator"}
)
_COROUTINE = "typing.Coroutine"


@dataclass
class _Ports:
    """The ports of a node type as mypy sees them."""

    slots: dict[str, Type] = field(default_factory=dict)
    events: dict[str, Type] = field(default_factory=dict)
    outputs: TypeInfo | None = None

    def describe(self) -> str:
        slots = ", ".join(self.slots) or "none"
        events = ", ".join(self.events) or "none"
        return f"slots: {slots}; events: {events}"


class RoutiluxPlugin(Plugin):
    """The plugin mypy loads for ``plugins = routilux.mypy_plugin``."""

    def get_function_hook(self, fullname: str) -> Callable[[FunctionContext], Type] | None:
        # The options form returns a callable named after `routine` (see _options_form), so
        # mypy routes the decorator application back here as well.
        if fullname == _ROUTINE:
            return lambda ctx: _routine_hook(ctx, None)
        if fullname.startswith(_ROUTINE + "[") and fullname.endswith("]"):
            return lambda ctx: _routine_hook(ctx, fullname[len(_ROUTINE) + 1 : -1])
        return None

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        if fullname == _ROUTINE_DEF + ".__call__":
            return _routine_def_call_hook
        return None

    def get_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        prefix, _, name = fullname.rpartition(".")
        if prefix == _NODE and not name.startswith("_"):
            return lambda ctx: _node_attribute_hook(ctx, name)
        return None


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point: the plugin class (mypy>=2,<3)."""
    return RoutiluxPlugin


# -- @routine ------------------------------------------------------------------------


def _routine_hook(ctx: FunctionContext, decorator_name: str | None) -> Type:
    ret = get_proper_type(ctx.default_return_type)
    option_name = _literal_str_arg(ctx, "name") or decorator_name
    fn_args = ctx.args[0] if ctx.args else []
    if not fn_args:
        return _options_form(ctx, option_name)
    fn_type = get_proper_type(ctx.arg_types[0][0])
    if not isinstance(fn_type, CallableType) or not isinstance(ret, Instance):
        return ctx.default_return_type
    where = fn_args[0]
    func = ctx.context.func if isinstance(ctx.context, Decorator) else None
    name = option_name or fn_type.name or "?"
    _check_definition(ctx.api, fn_type, func, name, where)
    return _with_name(ctx.api, ret, name)


def _literal_str_arg(ctx: FunctionContext, param: str) -> str | None:
    if param not in ctx.callee_arg_names:
        return None
    args = ctx.args[ctx.callee_arg_names.index(param)]
    if args and isinstance(args[0], StrExpr):
        return args[0].value
    return None


def _options_form(ctx: FunctionContext, option_name: str | None) -> Type:
    """``routine(concurrency=2)``: a generic decorator ``(Callable[P, R]) -> RoutineDef[P, R]``."""
    modules: dict[str, MypyFile] = getattr(ctx.api, "modules", {})
    dsl = modules.get(_ROUTINE.rpartition(".")[0])
    sym = dsl.names.get("routine") if dsl is not None else None
    func = sym.node if sym is not None else None
    sig = get_proper_type(func.type) if isinstance(func, FuncDef) and func.type else None
    if not isinstance(sig, CallableType):
        return ctx.default_return_type
    fn_param = get_proper_type(sig.arg_types[0])
    if isinstance(fn_param, UnionType):
        items = [t for t in fn_param.items if not isinstance(get_proper_type(t), NoneType)]
        fn_param = get_proper_type(items[0])
    # The decorator is named after `routine` so that mypy routes its application back to
    # get_function_hook; a `name=` option travels in the name.
    name = _ROUTINE if option_name is None else f"{_ROUTINE}[{option_name}]"
    return sig.copy_modified(
        arg_types=[fn_param],
        arg_kinds=[sig.arg_kinds[0]],
        arg_names=[None],
        name=name,
    )


def _check_definition(
    api: CheckerPluginInterface,
    fn: CallableType,
    func: FuncDef | None,
    name: str,
    where: Context,
) -> None:
    """Report what :func:`routilux.dsl.build_spec` would raise, at the decorator line."""
    r = f'Routine "{name}"'
    outputs: TypeInfo | None = None
    out_param = ""
    slots: list[str] = []
    for kind, pname, ptype in zip(fn.arg_kinds, fn.arg_names, fn.arg_types, strict=True):
        if kind in (ARG_STAR, ARG_STAR2):
            star = "*" if kind == ARG_STAR else "**"
            api.fail(
                f'{r}: parameter "{star}{pname}" cannot be a slot; '
                "declare each input as a named parameter",
                where,
                code=ROUTINE_STAR_ARGS,
            )
            continue
        if pname is None:
            continue
        if pname.startswith("_"):
            api.fail(
                f'{r}: parameter "{pname}" starts with "_"; slot names must be public',
                where,
                code=ROUTINE_PRIVATE_NAME,
            )
            continue
        info = _outputs_info(ptype)
        if info is not None:
            if outputs is not None:
                api.fail(
                    f'{r}: parameter "{pname}" is a second Outputs parameter; use one',
                    where,
                    code=ROUTINE_NAME_CLASH,
                )
            else:
                outputs, out_param = info, pname
            continue
        if pname in NODE_ATTRIBUTES:
            api.fail(
                f'{r}: parameter "{pname}" clashes with the node attribute "{pname}"; rename it',
                where,
                code=ROUTINE_NAME_CLASH,
            )
            continue
        slots.append(pname)

    ret = get_proper_type(fn.ret_type)
    # Under a decorator mypy hands us the FuncDef; for `routine(fn)` called directly, go
    # by the declared return type, as the attribute hook does.
    if func is not None:
        is_gen = func.is_generator or func.is_async_generator
        is_coroutine = func.is_coroutine
    else:
        is_gen = _iter_item(ret) is not None
        is_coroutine = _awaited(ret) is not ret
    value = _awaited(ret) if is_coroutine else ret
    events: list[str] = []
    if outputs is not None:
        if not is_gen and not isinstance(get_proper_type(value), NoneType):
            api.fail(
                f"{r}: a routine with an Outputs parameter must return None "
                f'(it emits through "{out_param}"); got -> {_show(value)}',
                where,
                code=ROUTINE_OUTPUTS_RETURN,
            )
        events.extend(_emit_fields(outputs))
    if is_gen or not isinstance(get_proper_type(value), NoneType):
        events.insert(0, "result")
    for s in slots:
        if s in events:
            api.fail(
                f'{r}: parameter "{s}" has the name of an event; a port name is either '
                "a slot or an event",
                where,
                code=ROUTINE_NAME_CLASH,
            )
    for e in events:
        if e in NODE_ATTRIBUTES:
            api.fail(
                f'{r}: event "{e}" clashes with the node attribute "{e}"; rename it',
                where,
                code=ROUTINE_NAME_CLASH,
            )


def _show(t: Type) -> str:
    return str(t).replace("builtins.", "")


def _with_name(api: CheckerPluginInterface, inst: Instance, name: str) -> Instance:
    str_type = api.named_generic_type("builtins.str", [])
    return inst.copy_with_extra_attr(_NAME_KEY, LiteralType(name, str_type))


def _name_of(inst: Instance) -> str | None:
    if inst.extra_attrs is None:
        return None
    lit = get_proper_type(inst.extra_attrs.attrs.get(_NAME_KEY))
    if isinstance(lit, LiteralType) and isinstance(lit.value, str):
        return lit.value
    return None


def _routine_def_call_hook(ctx: MethodContext) -> Type:
    ret = get_proper_type(ctx.default_return_type)
    owner = get_proper_type(ctx.type)
    if not isinstance(ret, Instance) or not isinstance(owner, Instance):
        return ctx.default_return_type
    name = None
    if "name" in ctx.callee_arg_names:
        args = ctx.args[ctx.callee_arg_names.index("name")]
        if args and isinstance(args[0], StrExpr):
            name = args[0].value
    name = name or _name_of(owner)
    return _with_name(ctx.api, ret, name) if name else ret


# -- node ports ----------------------------------------------------------------------


def _node_attribute_hook(ctx: AttributeContext, name: str) -> Type:
    inst = get_proper_type(ctx.type)
    if not isinstance(inst, Instance) or ctx.is_lvalue:
        return ctx.default_attr_type
    node = _as_node(inst)
    if node is None:
        return ctx.default_attr_type
    if name != "result" and any(name in info.names for info in node.type.mro[:-1]):
        return ctx.default_attr_type
    ports = _ports(node)
    if ports is None:
        return ctx.default_attr_type
    if ports.outputs is not None:
        _depend_on(ctx.api, ports.outputs)
    if name in ports.slots:
        return _instance(ctx.api, _SLOT, ports.slots[name], ctx.default_attr_type)
    if name in ports.events:
        return _instance(ctx.api, _EVENT, ports.events[name], ctx.default_attr_type)
    who = f'Routine "{_name_of(inst)}"' if _name_of(inst) else "Node"
    ctx.api.fail(
        f'{who} has no slot or event "{name}" ({ports.describe()})',
        ctx.context,
        code=NODE_PORT,
    )
    return AnyType(TypeOfAny.from_error)


def _instance(api: CheckerPluginInterface, fullname: str, arg: Type, default: Type) -> Type:
    # named_generic_type walks `routilux.slot` through the package's names, where the
    # submodule is not bound; look the class up in its own module instead.
    modules: dict[str, MypyFile] = getattr(api, "modules", {})
    module, _, name = fullname.rpartition(".")
    tree = modules.get(module)
    sym = tree.names.get(name) if tree is not None else None
    if sym is None or not isinstance(sym.node, TypeInfo):
        return default
    return Instance(sym.node, [arg])


def _as_node(inst: Instance) -> Instance | None:
    if inst.type.fullname == _NODE:
        return inst
    for base in inst.type.mro:
        if base.fullname == _NODE:
            from mypy.maptype import map_instance_to_supertype

            return map_instance_to_supertype(inst, base)
    return None


def _ports(node: Instance) -> _Ports | None:
    """The ports of ``Node[P, R]``, or ``None`` when ``P`` has no parameter names."""
    if len(node.args) != 2:
        return None
    params = get_proper_type(node.args[0])
    if not isinstance(params, Parameters | CallableType) or params.is_ellipsis_args:
        return None
    ports = _Ports()
    for kind, pname, ptype in zip(
        params.arg_kinds, params.arg_names, params.arg_types, strict=True
    ):
        if kind in (ARG_STAR, ARG_STAR2):
            continue
        if pname is None:
            return None
        info = _outputs_info(ptype)
        if info is not None:
            ports.outputs = ports.outputs or info
            continue
        if _is_state(ptype):
            continue  # injected per-job state, not a slot
        ports.slots[pname] = _slot_item(ptype)
    ret = get_proper_type(node.args[1])
    item = _iter_item(ret)
    if item is not None:
        ports.events["result"] = item
    else:
        value = get_proper_type(_awaited(ret))
        if ports.outputs is None and not isinstance(value, NoneType):
            ports.events["result"] = value
    if ports.outputs is not None:
        ports.events.update(_emit_fields(ports.outputs))
    return ports


def _is_state(t: Type) -> bool:
    """Whether ``t`` is a ``routilux.State`` subclass (a routine's injected state)."""
    p = get_proper_type(t)
    return isinstance(p, Instance) and p.type.has_base(_STATE) and p.type.fullname != _STATE


def _outputs_info(t: Type) -> TypeInfo | None:
    p = get_proper_type(t)
    if isinstance(p, Instance) and p.type.has_base(_OUTPUTS) and p.type.fullname != _OUTPUTS:
        return p.type
    return None


def _emit_fields(info: TypeInfo) -> dict[str, Type]:
    fields: dict[str, Type] = {}
    for base in reversed(info.mro):
        for fname, sym in base.names.items():
            node = sym.node
            if not isinstance(node, Var) or node.type is None or fname.startswith("_"):
                continue
            emit = get_proper_type(node.type)
            if isinstance(emit, Instance) and emit.type.fullname == _EMIT:
                fields[fname] = emit.args[0] if emit.args else AnyType(TypeOfAny.unannotated)
    return fields


def _slot_item(t: Type) -> Type:
    p = get_proper_type(t)
    if isinstance(p, Instance) and p.type.fullname == _APPEND:
        return p.args[0] if p.args else AnyType(TypeOfAny.unannotated)
    return t


def _iter_item(t: ProperType) -> Type | None:
    name = t.type.fullname if isinstance(t, Instance) and t.args else ""
    if isinstance(t, Instance) and (name in _SYNC_ITERABLES or name in _ASYNC_ITERABLES):
        return t.args[0]
    return None


def _awaited(t: Type) -> Type:
    p = get_proper_type(t)
    if isinstance(p, Instance) and p.type.fullname == _COROUTINE and len(p.args) == 3:
        return p.args[2]
    return t


def _depend_on(api: CheckerPluginInterface, info: TypeInfo) -> None:
    """Make dmypy recheck this target when the ``Outputs`` class ``info`` changes."""
    tree: MypyFile | None = getattr(api, "tree", None)
    scope = getattr(api, "tscope", None)
    if tree is None or scope is None:
        return
    target = scope.current_target()
    for trigger in (make_trigger(info.fullname), make_wildcard_trigger(info.fullname)):
        tree.plugin_deps.setdefault(trigger, set()).add(target)
