"""``flow.validate()`` finds what cannot work before running; ``to_mermaid`` draws the flow."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Annotated

import pytest

from routilux import (
    Append,
    Batch,
    Emit,
    Flow,
    JobStatus,
    Latest,
    Outputs,
    Reduce,
    ValidationError,
    routine,
)


@routine
def numbers(n: int) -> Iterator[int]:
    yield from range(n)


@routine
def join(a: int, b: int) -> int:
    return a + b


@routine
def scale(x: int, factor: Latest[int]) -> int:
    return x * factor


@routine
def offset(x: int, by: int = 1) -> int:
    return x + by


@routine
def acc(x: int, prev: int) -> int:
    return x + prev


class Step(Outputs):
    again: Emit[int]
    done: Emit[int]


@routine
def countdown(n: int, out: Step) -> None:
    if n > 0:
        out.again(n - 1)
    else:
        out.done(n)


def test_valid_flow_has_no_problems() -> None:
    with Flow("ok") as flow:
        src, o = numbers(), offset()
        src.result >> o.x
    assert flow.problems() == []
    assert flow.problems(src.n(3)) == []
    flow.validate()
    flow.validate(src.n(3))


def test_required_slot_without_producer() -> None:
    with Flow("f") as flow:
        src, j = numbers(), join()
        src.result >> j.a
    expected = (
        "slot `join.b` is required but nothing feeds it (connect an event to it, give it a "
        "default, or pass `join.b(value)` to run)"
    )
    assert flow.problems() == [expected]
    with pytest.raises(
        ValidationError, match=r"^Flow 'f' is not valid:\n- slot `join.b` is required"
    ):
        flow.validate()
    # A run input for the slot makes it fed.
    assert flow.problems(src.n(1), j.b(5)) == []


def test_required_latest_slot_without_producer() -> None:
    with Flow("f") as flow:
        src, s = numbers(), scale()
        src.result >> s.x
    assert flow.problems() == [
        "slot `scale.factor` is required but nothing feeds it (connect an event to it, give "
        "it a default, or pass `scale.factor(value)` to run)"
    ]
    assert flow.problems(src.n(1), s.factor(2)) == []


def test_optional_slot_needs_no_producer() -> None:
    with Flow("f") as flow:
        src, o = numbers(), offset()
        src.result >> o.x
    assert flow.problems() == []


def test_entry_node_is_fed_by_run_inputs() -> None:
    with Flow("f") as flow:
        j = join()
    # Without inputs, a node nothing feeds is an entry: fine.
    assert flow.problems() == []
    # With inputs, every required slot of a node the run feeds must be fed.
    assert flow.problems(j.a(1)) == [
        "slot `join.b` is required but nothing feeds it (connect an event to it, give it a "
        "default, or pass `join.b(value)` to run)"
    ]
    assert flow.problems(j.a(1), j.b(2)) == []


def test_nodes_the_run_does_not_reach_are_not_checked() -> None:
    with Flow("f") as flow:
        src, o = numbers(), offset()
        src.result >> o.x
        j = join()  # an entry node this run does not use
    assert j.node_name == "join"
    assert flow.problems(src.n(2)) == []


def test_input_for_a_node_of_another_flow() -> None:
    with Flow("other"):
        stranger = offset()
    with Flow("f") as flow:
        numbers()
    assert flow.problems(stranger.x(1)) == [
        "run input `offset.x` names a node that is not in flow 'f' (nodes: numbers)"
    ]


def test_input_that_is_not_a_run_input() -> None:
    with Flow("f") as flow:
        numbers()
    assert flow.problems(3) == ["run input 3 is not `node.slot(value)`"]  # type: ignore[arg-type]


def test_run_rejects_invalid_inputs_before_starting() -> None:
    with Flow("other"):
        stranger = offset()
    with Flow("f") as flow:
        src, j = numbers(), join()
        src.result >> j.a
        src.result >> j.b
    with pytest.raises(
        ValidationError,
        match=r"^Cannot run flow 'f':\n- run input `offset.x` names a node that is not in flow 'f' \(nodes: numbers, join\)$",
    ):
        flow.run(stranger.x(1))
    with pytest.raises(ValidationError, match=r"^Cannot run flow 'f':\n"):
        flow.start(stranger.x(1))


def test_every_problem_is_listed_one_per_line() -> None:
    with Flow("other"):
        stranger = offset()
    with Flow("f") as flow:
        src, j, s = numbers(), join(), scale()
        src.result >> j.a
        src.result >> s.x
    with pytest.raises(ValidationError) as info:
        flow.validate(src.n(1), stranger.x(1))
    assert str(info.value).splitlines() == [
        "Flow 'f' is not valid:",
        "- run input `offset.x` names a node that is not in flow 'f' (nodes: numbers, join, scale)",
        "- slot `join.b` is required but nothing feeds it (connect an event to it, give it a "
        "default, or pass `join.b(value)` to run)",
        "- slot `scale.factor` is required but nothing feeds it (connect an event to it, give "
        "it a default, or pass `scale.factor(value)` to run)",
    ]
    assert isinstance(info.value, ValueError)


def test_self_loop_is_entered_by_a_run_input() -> None:
    with Flow("loop") as flow:
        c = countdown()
        c.again >> c.n
    assert flow.problems() == []
    assert flow.problems(c.n(3)) == []
    assert flow.run(c.n(3)).outputs == {"countdown.done": [0]}


def test_cycle_whose_nodes_all_wait_on_the_cycle_has_no_way_in() -> None:
    # acc needs `prev`, which only acc itself produces: the first activation never forms.
    with Flow("f") as flow:
        src, a = numbers(), acc()
        src.result >> a.x
        a.result >> a.prev
    problem = (
        "cycle acc has no way in: each of its nodes waits on a required slot fed only from "
        "inside the cycle (acc.prev); feed one of them from outside the cycle or pass it as "
        "a run input"
    )
    assert flow.problems() == [problem]
    assert flow.problems(src.n(3)) == [problem]
    with pytest.raises(ValidationError, match=r"^Cannot run flow 'f':\n- cycle acc has no way in"):
        flow.run(src.n(3))
    # Seeding `prev` with a run input opens the cycle: a running sum.
    assert flow.problems(src.n(3), a.prev(100)) == []
    state = flow.run(src.n(3), a.prev(100))
    assert state.status is JobStatus.COMPLETED
    assert state.routine_states["acc"].activations == 3
    # The last sum is left in `prev` (no fourth x came).
    assert [(b.node, b.slot, b.values) for b in state.buffers] == [("acc", "prev", [103])]


def test_cycle_of_two_nodes_without_way_in() -> None:
    with Flow("f") as flow:
        src, a, b = numbers(), acc(), join()
        src.result >> a.x
        src.result >> b.a
        a.result >> b.b
        b.result >> a.prev
    assert flow.problems() == [
        "cycle acc, join has no way in: each of its nodes waits on a required slot fed only "
        "from inside the cycle (acc.prev, join.b); feed one of them from outside the cycle or "
        "pass it as a run input"
    ]


def test_cycle_the_run_does_not_reach_is_not_reported() -> None:
    with Flow("f") as flow:
        src, a, o = numbers(), acc(), offset()
        src.result >> a.x
        a.result >> a.prev
        o2 = offset()
        o.result >> o2.x
    assert flow.problems(o.x(1)) == []
    assert flow.run(o.x(1)).outputs == {"offset_2.result": [3]}


def test_cycle_with_an_optional_slot_can_start() -> None:
    with Flow("f") as flow:
        src, o = numbers(), offset()
        src.result >> o.x
        o.result.map(lambda v: 0) >> o.by  # type: ignore[misc]
    assert flow.problems() == []


# -- mermaid ------------------------------------------------------------------------


@routine
def chunks(values: Annotated[Append[int], Batch(3)], tag: str = "c") -> list[int]:
    return list(values)


@routine
def collect(values: Append[str]) -> int:
    return len(values)


@routine
def folded(x: Annotated[int, Reduce(operator.add)]) -> int:
    return x


def test_mermaid_shows_nodes_ports_types_and_edges() -> None:
    def text(v: int) -> str:
        return str(v)

    with Flow("m") as flow:
        src, s, c, k, f = numbers(), scale(), chunks(), collect(), folded()
        src.result >> s.x
        src.result >> c.values
        src.result.map(text) >> k.values
        s.result >> f.x
    assert flow.to_mermaid() == (
        "flowchart LR\n"
        '    n0["<b>numbers</b><br/>▸ n: int<br/>result: int ▸"]\n'
        '    n1["<b>scale</b><br/>▸ x: int<br/>▸ factor: Latest[int]<br/>result: int ▸"]\n'
        '    n2["<b>chunks</b><br/>▸ values: Append[int], Batch(3)<br/>▸ tag: str = '
        "'c'<br/>result: list[int] ▸\"]\n"
        '    n3["<b>collect</b><br/>▸ values: Append[str]<br/>result: int ▸"]\n'
        '    n4["<b>folded</b><br/>▸ x: Reduce[int]<br/>result: int ▸"]\n'
        '    n0 -- "result → x" --> n1\n'
        '    n0 -- "result → values" --> n2\n'
        '    n0 -- "result → values (map)" --> n3\n'
        '    n1 -- "result → x" --> n4\n'
    )


def test_mermaid_escapes_what_mermaid_would_misread() -> None:
    @routine
    def odd(x: dict[str, int] | None) -> None:
        pass

    with Flow("m") as flow:
        odd(name='say"hi')
    assert flow.to_mermaid() == (
        'flowchart LR\n    n0["<b>say#quot;hi</b><br/>▸ x: dict[str, int] | None"]\n'
    )


def test_mermaid_of_outputs_routine_lists_every_event() -> None:
    with Flow("m") as flow:
        c = countdown()
        c.again >> c.n
    assert flow.to_mermaid() == (
        "flowchart LR\n"
        '    n0["<b>countdown</b><br/>▸ n: int<br/>again: int ▸<br/>done: int ▸"]\n'
        '    n0 -- "again → n" --> n0\n'
    )


def test_mermaid_of_empty_flow() -> None:
    assert Flow("e").to_mermaid() == "flowchart LR\n"
