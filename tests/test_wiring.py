"""Wiring: ``>>``/``.to()`` check types at connection time, and ports and nodes must exist."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from routilux import Connection, Flow, RoutiluxError, ValidationError, WiringError, routine
from routilux.typecheck import is_assignable, type_name


class Base(msgspec.Struct):
    a: int


class Derived(Base):
    b: int = 0


@dataclass
class DBase:
    a: int


@dataclass
class DDerived(DBase):
    b: int = 0


class Unrelated:
    pass


def _source(tp: Any) -> Any:
    """A routine whose ``result`` event has type ``tp``."""

    def produce(x: int) -> Any:
        return x

    produce.__annotations__ = {"x": int, "return": tp}
    return routine(produce)


def _sink(tp: Any) -> Any:
    """A routine with one slot ``v`` of type ``tp``."""

    def consume(v: Any) -> None:
        pass

    consume.__annotations__ = {"v": tp, "return": None}
    return routine(consume)


def _connect(src_tp: Any, dst_tp: Any) -> Connection:
    with Flow("w"):
        p, c = _source(src_tp)(), _sink(dst_tp)()
        return p.result >> c.v


ACCEPTED = [
    (bool, int),
    (int, float),
    (int, complex),
    (float, complex),
    (bool, float),  # bool is an int, and int promotes to float
    (bool, complex),
    (list[int], list[int] | None),
    (list[bool], list[bool] | list[str]),
    (str, str),
    (Derived, Base),
    (DDerived, DBase),
    (int, Any),
    (Unrelated, Any),
    (Any, int),
    (int, object),
    (list[int], object),
    (list[int], list[int]),
    (list[int], list),
    (list, list[int]),
    (dict[str, int], dict[str, int]),
    (tuple[int, int], tuple[int, ...]),
    (tuple[bool, ...], tuple[int, ...]),
    (frozenset[bool], frozenset[int]),  # immutable containers are covariant
    (int, int | None),
    (int | None, str | int | None),
    (bool, int | str),
    (int | bool, int),
    (Derived | None, Base | None),
]

REJECTED = [
    (int | None, int, "int | None", "int"),
    (list[bool], list[int], "list[bool]", "list[int]"),
    (list[int], list[str], "list[int]", "list[str]"),
    (dict[str, bool], dict[str, int], "dict[str, bool]", "dict[str, int]"),
    (Unrelated, Base, "Unrelated", "Base"),
    (Base, Derived, "Base", "Derived"),
    (DBase, Base, "DBase", "Base"),
    (float, int, "float", "int"),
    (str, bytes, "str", "bytes"),
    (tuple[int, ...], tuple[int, int], "tuple[int, ...]", "tuple[int, int]"),
    (object, int, "object", "int"),
    (complex, float, "complex", "float"),
    (int | str, int, "int | str", "int"),
    (list[bool], list[int] | None, "list[bool]", "list[int] | None"),
]


@pytest.mark.parametrize(("src", "dst"), ACCEPTED, ids=[f"{s}->{d}" for s, d in ACCEPTED])
def test_accepted_connections(src: Any, dst: Any) -> None:
    conn = _connect(src, dst)
    assert isinstance(conn, Connection)
    assert repr(conn) == "<Connection produce.result >> consume.v>"
    assert is_assignable(src, dst)


@pytest.mark.parametrize(
    ("src", "dst", "src_name", "dst_name"), REJECTED, ids=[f"{r[2]}->{r[3]}" for r in REJECTED]
)
def test_rejected_connections(src: Any, dst: Any, src_name: str, dst_name: str) -> None:
    s, d = _escape(src_name), _escape(dst_name)
    with pytest.raises(
        WiringError,
        match=rf"^Cannot connect `produce.result` to `consume.v`: Event\[{s}\] does not fit "
        rf"Slot\[{d}\] \({s} is not assignable to {d}\)$",
    ):
        _connect(src, dst)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_bytes_into_str_names_both_ports_and_types() -> None:
    @routine
    def fetch(url: str) -> bytes:
        return url.encode()

    @routine
    def show(text: str) -> None:
        pass

    with Flow("f"):
        f, s = fetch(), show()
        with pytest.raises(
            WiringError,
            match=r"^Cannot connect `fetch.result` to `show.text`: Event\[bytes\] does not fit Slot\[str\] \(bytes is not assignable to str\)$",
        ):
            f.result >> s.text
        with pytest.raises(WiringError, match=r"^Cannot connect `fetch.result` to `show.text`"):
            f.result.to(s.text)


def test_wiring_error_is_a_type_error_and_a_routilux_error() -> None:
    assert issubclass(WiringError, TypeError)
    assert issubclass(WiringError, RoutiluxError)
    with pytest.raises(TypeError):
        _connect(bytes, str)


def test_failed_connection_is_not_added() -> None:
    with Flow("f") as flow:
        p, c = _source(bytes)(), _sink(str)()
        with pytest.raises(WiringError):
            p.result >> c.v
    assert flow.connections == []


def test_to_is_the_same_as_rshift() -> None:
    with Flow("f") as flow:
        p, c = _source(int)(), _sink(int)()
        conn = p.result.to(c.v)
    assert flow.connections == [conn]
    assert conn.source is p.result
    assert conn.target is c.v
    assert conn.transform is None


def test_map_with_annotated_function_takes_its_return_type() -> None:
    def to_text(v: int) -> str:
        return str(v)

    def to_bytes(v: int) -> bytes:
        return bytes(v)

    with Flow("f") as flow:
        p, c = _source(int)(), _sink(str)()
        conn = p.result.map(to_text) >> c.v
        with pytest.raises(
            WiringError,
            match=r"^Cannot connect `produce.result.map\(to_bytes\)` to `consume.v`: Event\[bytes\] does not fit Slot\[str\] \(bytes is not assignable to str\)$",
        ):
            p.result.map(to_bytes) >> c.v
    # The connection hangs off the root event and carries the transform.
    assert conn.source is p.result
    assert conn.transform is to_text
    assert repr(conn) == "<Connection produce.result >> consume.v (mapped)>"
    assert flow.connections == [conn]


def test_map_with_lambda_is_untyped() -> None:
    with Flow("f"):
        p, c = _source(bytes)(), _sink(str)()
        mapped = p.result.map(lambda b: b.decode())
        assert mapped.type is Any
        mapped >> c.v  # accepted: the lambda's type is unknown at runtime


def test_chained_maps_compose_in_order() -> None:
    def plus_one(v: int) -> int:
        return v + 1

    def text(v: int) -> str:
        return f"<{v}>"

    with Flow("f") as flow:
        p, c = _source(int)(), _sink(str)()
        mapped = p.result.map(plus_one).map(text)
        assert mapped.type is str
        assert mapped.qualname == "produce.result.map(plus_one).map(text)"
        mapped >> c.v
    (conn,) = flow.connections
    assert conn.transform is not None
    assert conn.transform(1) == "<2>"


def test_slot_on_the_left_is_an_error() -> None:
    with Flow("f"):
        p, c = _source(int)(), _sink(int)()
        with pytest.raises(
            WiringError,
            match=r"^Cannot connect from slot `consume.v`: a connection goes from an event to a slot, e.g. `producer.result >> consume.v`$",
        ):
            c.v >> p.x  # type: ignore[operator]


def test_event_on_the_right_is_an_error() -> None:
    with Flow("f"):
        p, q = _source(int)(), _source(int)(name="q")
        with pytest.raises(
            WiringError,
            match=r"^Cannot connect `produce.result` to event `q.result`: the right of `>>` must be a slot$",
        ):
            p.result >> q.result  # type: ignore[operator]


def test_non_port_on_the_right_is_an_error() -> None:
    with Flow("f"):
        p = _source(int)()
        with pytest.raises(
            WiringError,
            match=r"^Cannot connect `produce.result` to int 3: the right of `>>` must be a slot$",
        ):
            p.result >> 3  # type: ignore[operator]


def test_connecting_nodes_of_different_flows_is_an_error() -> None:
    with Flow("one"):
        p = _source(int)()
    with Flow("two"):
        c = _sink(int)()
    with pytest.raises(
        WiringError,
        match=r"^Cannot connect `produce.result` to `consume.v`: node `consume` belongs to flow 'two', not 'one'$",
    ):
        p.result >> c.v


def test_connecting_twice_is_an_error() -> None:
    with Flow("f"):
        p, c = _source(int)(), _sink(int)()
        p.result >> c.v
        with pytest.raises(
            WiringError,
            match=r"^Cannot connect `produce.result` to `consume.v`: they are already connected$",
        ):
            p.result >> c.v


def test_unknown_port_lists_slots_and_events() -> None:
    @routine
    def parse(raw: bytes, encoding: str = "utf-8") -> str:
        return raw.decode(encoding)

    with Flow("f"):
        p = parse()
    with pytest.raises(
        WiringError,
        match=r"^Routine `parse` has no slot or event `rw` \(slots: raw, encoding; events: result\)$",
    ):
        p.rw  # noqa: B018
    with pytest.raises(
        WiringError,
        match=r"^Routine `parse` has no slot `result` \(slots: raw, encoding; events: result\)$",
    ):
        p.get_slot("result")
    with pytest.raises(
        WiringError,
        match=r"^Routine `parse` has no event `raw` \(slots: raw, encoding; events: result\)$",
    ):
        p.get_event("raw")
    assert p.get_slot("raw") is p.raw
    assert p.get_event("result") is p.result


def test_unknown_port_on_routine_without_ports() -> None:
    @routine
    def nothing() -> None:
        pass

    with Flow("f"):
        n = nothing()
    with pytest.raises(
        WiringError,
        match=r"^Routine `nothing` has no slot or event `x` \(slots: none; events: none\)$",
    ):
        n.x  # noqa: B018


def test_node_names_default_suffixed_and_explicit() -> None:
    with Flow("f") as flow:
        a, b, c = _sink(int)(), _sink(int)(), _sink(int)()
        d = _sink(int)(name="custom")
    assert [n.node_name for n in (a, b, c, d)] == ["consume", "consume_2", "consume_3", "custom"]
    assert list(flow.nodes) == ["consume", "consume_2", "consume_3", "custom"]
    assert flow.node("custom") is d
    with pytest.raises(
        WiringError,
        match=r"^Flow 'f' has no node `nope` \(nodes: consume, consume_2, consume_3, custom\)$",
    ):
        flow.node("nope")


def test_duplicate_node_name_is_an_error() -> None:
    with Flow("f"):
        _sink(int)(name="x")
        with pytest.raises(
            ValidationError,
            match=r"^Flow 'f' already has a node named `x`; pick another name= \(taken: x\)$",
        ):
            _sink(int)(name="x")


def test_explicit_name_may_not_collide_with_a_default_name() -> None:
    with Flow("f"):
        _sink(int)()
        with pytest.raises(ValidationError, match=r"^Flow 'f' already has a node named `consume`"):
            _sink(int)(name="consume")


@pytest.mark.parametrize("bad", ["", "a.b"])
def test_invalid_node_name_is_an_error(bad: str) -> None:
    with (
        Flow("f"),
        pytest.raises(
            ValidationError,
            match=rf"^Node name {bad!r} is invalid: use a non-empty string without '\.'$",
        ),
    ):
        _sink(int)(name=bad)


def test_routine_called_outside_a_flow_is_an_error() -> None:
    @routine
    def lonely(x: int) -> None:
        pass

    with pytest.raises(
        ValidationError,
        match=r"^Routine `lonely` was called outside a flow: create nodes inside `with Flow\(\.\.\.\):`, or pass `flow=`$",
    ):
        lonely()


def test_flow_argument_adds_outside_a_with_block() -> None:
    flow = Flow("f")
    node = _sink(int)(flow=flow)
    assert flow.nodes == {"consume": node}
    assert node.flow is flow


def test_nested_flows_add_to_the_innermost() -> None:
    with Flow("outer") as outer:
        a = _sink(int)()
        with Flow("inner") as inner:
            b = _sink(int)()
        c = _sink(int)(name="c")
    assert list(outer.nodes.values()) == [a, c]
    assert list(inner.nodes.values()) == [b]
    assert Flow.current() is None


def test_flow_context_is_per_thread() -> None:
    import threading

    seen: list[Flow | None] = []
    with Flow("f"):
        t = threading.Thread(target=lambda: seen.append(Flow.current()))
        t.start()
        t.join()
    assert seen == [None]


def test_same_routine_nodes_are_independent() -> None:
    with Flow("f") as flow:
        p = _source(int)()
        c1, c2 = _sink(int)(), _sink(int)()
        p.result >> c1.v
        p.result >> c2.v
    assert [(c.source.qualname, c.target.qualname) for c in flow.connections] == [
        ("produce.result", "consume.v"),
        ("produce.result", "consume_2.v"),
    ]
    assert c1.v is not c2.v


def test_type_name_spells_types_as_written() -> None:
    assert type_name(int | None) == "int | None"
    assert type_name(list[int]) == "list[int]"
    assert type_name(tuple[int, ...]) == "tuple[int, ...]"
    assert type_name(dict[str, list[Base]]) == "dict[str, list[Base]]"
    assert type_name(Any) == "Any"
    assert type_name(None) == "None"


class Point(msgspec.Struct):
    x: int


@routine
def takes(
    text: str,
    ratio: float = 1.0,
    tags: list[str] | None = None,
    point: Point | None = None,
    anything: Any = None,
) -> None:
    pass


@pytest.mark.parametrize(
    ("port", "value"),
    [
        ("text", "s"),
        ("ratio", 2),  # int fits float
        ("ratio", True),  # bool is an int
        ("ratio", 2.5),
        ("tags", None),
        ("tags", ["a"]),
        ("point", Point(1)),
        ("anything", object()),
    ],
)
def test_run_inputs_that_fit_their_slot_are_accepted(port: str, value: object) -> None:
    with Flow("inputs-ok"):
        node = takes()
    assert node.get_slot(port)(value).value is value


@pytest.mark.parametrize(
    ("port", "value", "message"),
    [
        ("text", 42, r"^Cannot feed 42 \(int\) to `takes\.text`: it expects str$"),
        ("ratio", "2", r"^Cannot feed '2' \(str\) to `takes\.ratio`: it expects float$"),
        (
            "tags",
            "a",
            r"^Cannot feed 'a' \(str\) to `takes\.tags`: it expects list\[str\] \| None$",
        ),
        (
            "point",
            {"x": 1},
            r"^Cannot feed \{'x': 1\} \(dict\) to `takes\.point`: it expects Point \| None$",
        ),
    ],
)
def test_a_run_input_of_the_wrong_type_is_refused_before_anything_runs(
    port: str, value: object, message: str
) -> None:
    with Flow("inputs-bad"):
        node = takes()
    with pytest.raises(WiringError, match=message):
        node.get_slot(port)(value)
