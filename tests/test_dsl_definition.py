"""``@routine`` derives a spec once, at decoration time, and rejects bad definitions there."""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import pytest

from routilux import (
    Append,
    Batch,
    DefinitionError,
    Emit,
    Flow,
    Latest,
    Outputs,
    Reduce,
    RoutineDef,
    routine,
)
from routilux.spec import Policy, SlotSpec


class Doc(msgspec.Struct):
    title: str


@dataclass
class Row:
    n: int


class Checked(Outputs):
    ok: Emit[Doc]
    rejected: Emit[str]


# -- what a definition derives -------------------------------------------------------


def test_slots_and_result_event_from_signature() -> None:
    @routine
    def parse(raw: bytes, encoding: str = "utf-8") -> Doc:
        """Parse raw bytes."""
        return Doc(raw.decode(encoding))

    assert isinstance(parse, RoutineDef)
    spec = parse.spec
    assert spec.name == "parse"
    assert spec.kind == "function"
    assert [(s.name, s.type, s.policy, s.required) for s in spec.slots] == [
        ("raw", bytes, Policy.QUEUE, True),
        ("encoding", str, Policy.QUEUE, False),
    ]
    assert spec.slots[1].default == "utf-8"
    assert [(e.name, e.type) for e in spec.events] == [("result", Doc)]
    assert spec.doc == "Parse raw bytes."
    assert parse.__doc__ == "Parse raw bytes."
    assert spec.ref.endswith(":test_slots_and_result_event_from_signature.<locals>.parse")
    # The function stays callable as written, for unit tests of the body.
    assert parse.fn(b"hi") == Doc("hi")
    assert parse.__wrapped__ is parse.fn
    assert parse.__name__ == "parse"


def test_none_return_has_no_event() -> None:
    @routine
    def sink(x: int) -> None:
        pass

    assert sink.spec.events == ()


def test_unannotated_parameters_and_return_are_any() -> None:
    @routine
    def loose(x, y=1):  # type: ignore[no-untyped-def]
        return x

    assert [(s.name, s.type) for s in loose.spec.slots] == [("x", Any), ("y", Any)]
    assert [(e.name, e.type) for e in loose.spec.events] == [("result", Any)]


def test_slot_policies() -> None:
    @routine
    def every(
        q: int,
        late: Latest[str],
        coll: Append[Doc],
        batch: Annotated[Append[int], Batch(5)],
        folded: Annotated[int, Reduce(operator.add)],
        seeded: Annotated[int, Reduce(operator.mul, initial=1)],
    ) -> None:
        pass

    slots = {s.name: s for s in every.spec.slots}
    assert {n: s.policy for n, s in slots.items()} == {
        "q": Policy.QUEUE,
        "late": Policy.LATEST,
        "coll": Policy.APPEND,
        "batch": Policy.APPEND,
        "folded": Policy.REDUCE,
        "seeded": Policy.REDUCE,
    }
    assert {n: s.type for n, s in slots.items()} == {
        "q": int,
        "late": str,
        "coll": Doc,
        "batch": int,
        "folded": int,
        "seeded": int,
    }
    assert slots["batch"].batch == 5
    assert slots["coll"].batch is None
    assert slots["folded"].merge is operator.add
    assert slots["folded"].initial is SlotSpec.NO_DEFAULT
    assert slots["seeded"].initial == 1


def test_generator_item_type_is_the_result_type() -> None:
    @routine
    def words(doc: Doc) -> Iterator[str]:
        yield from doc.title.split()

    assert words.spec.kind == "generator"
    assert [(e.name, e.type) for e in words.spec.events] == [("result", str)]


def test_async_routines() -> None:
    @routine
    async def fetch(url: str) -> bytes:
        return url.encode()

    @routine
    async def ticks(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    assert fetch.spec.kind == "async"
    assert [(e.name, e.type) for e in fetch.spec.events] == [("result", bytes)]
    assert ticks.spec.kind == "async_generator"
    assert [(e.name, e.type) for e in ticks.spec.events] == [("result", int)]


def test_outputs_parameter_gives_named_events_and_is_not_a_slot() -> None:
    @routine
    def check(doc: Doc, out: Checked) -> None:
        out.ok(doc)

    assert [s.name for s in check.spec.slots] == ["doc"]
    assert [(e.name, e.type) for e in check.spec.events] == [("ok", Doc), ("rejected", str)]


def test_outputs_parameter_may_be_keyword_only() -> None:
    @routine
    def check(doc: Doc, *, out: Checked) -> None:
        out.rejected(doc.title)

    with Flow() as flow:
        c = check()
    state = flow.run(c.doc(Doc("t")))
    assert state.outputs == {"check.rejected": ["t"]}


def test_generator_with_outputs_has_result_and_named_events() -> None:
    @routine
    def split(doc: Doc, out: Checked) -> Iterator[str]:
        out.ok(doc)
        yield from doc.title.split()

    assert [e.name for e in split.spec.events] == ["result", "ok", "rejected"]
    with Flow() as flow:
        s = split()
    state = flow.run(s.doc(Doc("a b")))
    assert state.outputs == {"split.result": ["a", "b"], "split.ok": [Doc("a b")]}


def test_options_form() -> None:
    @routine(name="renamed", concurrency=3, timeout=2.5)
    def f(x: int) -> int:
        return x

    assert (f.spec.name, f.spec.concurrency, f.spec.timeout) == ("renamed", 3, 2.5)
    with Flow() as flow:
        node = f()
    assert node.node_name == "renamed"
    assert "renamed" in flow.nodes


def test_keyword_only_and_positional_only_slots() -> None:
    @routine
    def mix(a: int, /, b: int, *, c: int = 3) -> int:
        return a * 100 + b * 10 + c

    assert [s.name for s in mix.spec.slots] == ["a", "b", "c"]
    with Flow() as flow:
        m = mix()
    assert flow.run(m.a(1), m.b(2)).outputs == {"mix.result": [123]}


def test_local_types_resolve_with_postponed_annotations() -> None:
    class Local(msgspec.Struct):
        v: int

    @routine
    def uses(x: Local) -> Local:
        return x

    assert uses.spec.slots[0].type is Local
    assert uses.spec.events[0].type is Local


def test_repr_lists_ports() -> None:
    @routine
    def parse(raw: bytes, encoding: str = "utf-8") -> Doc:
        return Doc(raw.decode(encoding))

    assert repr(parse).startswith("<routine ")
    assert repr(parse).endswith("parse (slots: raw, encoding; events: result)>")


# -- definition errors: raised by the decorator, naming routine and parameter --------


def test_var_positional_is_an_error() -> None:
    with pytest.raises(
        DefinitionError,
        match=r"^Routine `f`: parameter `\*args` cannot be a slot; declare each input as a named parameter$",
    ):

        @routine
        def f(x: int, *args: int) -> None: ...


def test_var_keyword_is_an_error() -> None:
    with pytest.raises(
        DefinitionError,
        match=r"^Routine `g`: parameter `\*\*kw` cannot be a slot; declare each input as a named parameter$",
    ):

        @routine
        def g(x: int, **kw: int) -> None: ...


def test_underscore_name_is_an_error() -> None:
    with pytest.raises(
        DefinitionError,
        match=r"^Routine `h`: parameter `_hidden` starts with '_'; slot names must be public$",
    ):

        @routine
        def h(x: int, _hidden: int = 0) -> None: ...


def test_slot_named_like_the_result_event_is_an_error() -> None:
    with pytest.raises(
        DefinitionError,
        match=r"^Routine `echo`: parameter `result` has the name of an event; a port name is either a slot or an event$",
    ):

        @routine
        def echo(result: int) -> int:
            return result


def test_slot_named_like_an_outputs_event_is_an_error() -> None:
    with pytest.raises(
        DefinitionError,
        match=r"^Routine `check`: parameter `ok` has the name of an event; a port name is either a slot or an event$",
    ):

        @routine
        def check(ok: Doc, out: Checked) -> None: ...


def test_outputs_routine_returning_a_value_is_an_error() -> None:
    with pytest.raises(
        DefinitionError,
        match=r"^Routine `check`: a routine with an Outputs parameter must return None \(it emits through `out`\); got -> bool$",
    ):

        @routine
        def check(doc: Doc, out: Checked) -> bool:
            return True


def test_outputs_routine_without_return_annotation_is_fine() -> None:
    @routine
    def check(doc: Doc, out: Checked):  # type: ignore[no-untyped-def]
        out.ok(doc)

    assert [e.name for e in check.spec.events] == ["ok", "rejected"]


@pytest.mark.parametrize("attr", ["flow", "stats", "spec", "node_name", "get_slot", "get_event"])
def test_parameter_named_like_a_node_attribute_is_an_error(attr: str) -> None:
    ns: dict[str, Any] = {"routine": routine}
    with pytest.raises(
        DefinitionError,
        match=rf"^Routine `f`: parameter `{attr}` clashes with the node attribute `{attr}`; rename it$",
    ):
        exec(f"@routine\ndef f({attr}: int) -> None: ...", ns)


def test_outputs_event_named_like_a_node_attribute_is_an_error() -> None:
    class Bad(Outputs):
        stats: Emit[int]

    with pytest.raises(
        DefinitionError,
        match=r"^Routine `f`: event `stats` clashes with the node attribute `stats`; rename it$",
    ):

        @routine
        def f(x: int, out: Bad) -> None: ...


def test_outputs_field_starting_with_underscore_is_an_error() -> None:
    with pytest.raises(
        DefinitionError,
        match=r"^Outputs class `.*Hidden` field `_secret`: event names cannot start with '_'$",
    ):

        class Hidden(Outputs):
            _secret: Emit[int]


def test_two_outputs_parameters_is_an_error() -> None:
    with pytest.raises(
        DefinitionError,
        match=r"^Routine `f`: parameter `more` is a second Outputs parameter; use one$",
    ):

        @routine
        def f(x: int, out: Checked, more: Checked) -> None: ...


def test_generator_with_outputs_field_named_result_is_an_error() -> None:
    class Clash(Outputs):
        result: Emit[int]

    with pytest.raises(
        DefinitionError,
        match=r"^Routine `f`: event `result` is declared twice \(the generator's items and Outputs field `result`\); rename the field$",
    ):

        @routine
        def f(x: int, out: Clash) -> Iterator[int]:
            yield x


def test_append_combined_with_latest_is_an_error() -> None:
    with pytest.raises(
        DefinitionError, match=r"^Routine `f`: parameter `x` combines Append with latest; pick one$"
    ):

        @routine
        def f(x: Latest[Append[int]]) -> None: ...


def test_batch_without_append_is_an_error() -> None:
    with pytest.raises(
        DefinitionError,
        match=r"^Routine `f`: parameter `x` has Batch\(\.\.\.\) without Append\[T\]; write Annotated\[Append\[T\], Batch\(n\)\]$",
    ):

        @routine
        def f(x: Annotated[int, Batch(2)]) -> None: ...


@pytest.mark.parametrize("size", [0, -1, 1.5])
def test_batch_size_must_be_positive_int(size: Any) -> None:
    with pytest.raises(
        DefinitionError, match=rf"^Batch size must be a positive int, got {size!r}$"
    ):
        Batch(size)


@pytest.mark.parametrize("value", [0, -2, 1.0])
def test_concurrency_must_be_positive_int(value: Any) -> None:
    with pytest.raises(
        DefinitionError,
        match=rf"^Routine `f`: concurrency must be a positive int, got {value!r}$",
    ):

        @routine(concurrency=value)
        def f(x: int) -> None: ...


@pytest.mark.parametrize("value", [0, -1.5, "3"])
def test_timeout_must_be_positive_number(value: Any) -> None:
    with pytest.raises(
        DefinitionError,
        match=rf"^Routine `f`: timeout must be a positive number of seconds, got {value!r}$",
    ):

        @routine(timeout=value)
        def f(x: int) -> None: ...


def test_unresolvable_annotation_is_an_error() -> None:
    with pytest.raises(
        DefinitionError,
        match=r"^Routine `f`: cannot resolve an annotation \(name 'Missing' is not defined\); define the type before the routine$",
    ):

        @routine
        def f(x: Missing) -> None: ...  # type: ignore[name-defined]  # noqa: F821


def test_non_function_is_an_error() -> None:
    with pytest.raises(DefinitionError, match=r"^@routine expects a function, got int 3$"):
        routine(3)  # type: ignore[call-overload]


def test_definition_errors_are_type_errors() -> None:
    assert issubclass(DefinitionError, TypeError)


def test_row_dataclass_slot_type() -> None:
    @routine
    def take(row: Row) -> int:
        return row.n

    assert take.spec.slots[0].type is Row


def test_every_public_node_attribute_is_reserved_from_port_names() -> None:
    # A port named like a node attribute would shadow it (or be shadowed): each public
    # attribute of a node must be in the reserved set the decorator checks.
    from routilux.node import NODE_ATTRIBUTES

    @routine
    def parse(raw: bytes, out: Checked) -> None:
        pass

    with Flow("f"):
        node = parse()
    ports = {"raw", "ok", "rejected"}
    public = {a for a in dir(node) if not a.startswith("_")}
    assert ports <= public
    assert public - ports <= NODE_ATTRIBUTES
