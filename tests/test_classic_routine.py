"""The classic ``Routine`` class (routilux 0.10 API): ports, handler shapes, config, context."""

from __future__ import annotations

import inspect
import threading
from typing import Any

import pytest

from routilux import (
    Event,
    ExecutionContext,
    Flow,
    JobState,
    Routine,
    RoutineStats,
    Slot,
    StateError,
    routine,
)
from routilux.spec import Policy


def make_flow(workers: int, flow_id: str = "classic") -> Flow:
    if workers == 1:
        return Flow(flow_id)  # 0.10's default: sequential
    return Flow(flow_id, execution_strategy="concurrent", max_workers=workers)


class Source(Routine):
    """Emits ``payload`` (from the trigger) on ``out``, ``count`` times."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger", handler=self.go)
        self.define_event("out")

    def go(self, payload: dict[str, Any], count: int = 1) -> None:
        for _ in range(count):
            self.emit("out", **payload)


class Recorder(Routine):
    """Records what its ``input`` handler receives, per job (in the job's shared log)."""

    def __init__(self, handler_factory: Any = None, merge_strategy: Any = "override") -> None:
        super().__init__()
        handler = handler_factory(self) if handler_factory else self.record
        self.define_slot("input", handler=handler, merge_strategy=merge_strategy)

    def record(self, data: Any) -> None:
        ctx = self.get_execution_context()
        assert ctx is not None
        ctx.job_state.append_to_shared_log({"got": data})


def got(state: JobState) -> list[Any]:
    return [e["got"] for e in state.get_shared_log() if "got" in e]


def run_pipeline(
    workers: int, recorder: Routine, payload: dict[str, Any], count: int = 1
) -> JobState:
    flow = make_flow(workers)
    flow.add_routine(Source(), "src")
    flow.add_routine(recorder, "rec")
    flow.connect("src", "out", "rec", "input")
    state = flow.execute("src", {"payload": payload, "count": count})
    assert JobState.wait_for_completion(flow, state, timeout=10)
    assert state.status == "completed", state.error
    return state


# -- ports -------------------------------------------------------------------------------


def test_define_slot_and_event_return_ports_with_their_0_10_attributes() -> None:
    def handler(data: Any) -> None: ...

    r = Routine()
    slot = r.define_slot("input", handler=handler, merge_strategy="append")
    event = r.define_event("output", ["result", "status"])
    assert isinstance(slot, Slot)
    assert isinstance(event, Event)
    assert (slot.name, slot.routine, slot.handler, slot.merge_strategy) == (
        "input",
        r,
        handler,
        "append",
    )
    assert (event.name, event.routine, event.output_params) == ("output", r, ["result", "status"])
    assert r.get_slot("input") is slot
    assert r.get_event("output") is event


def test_get_slot_and_get_event_return_none_for_unknown_names() -> None:
    r = Routine()
    assert r.get_slot("nope") is None
    assert r.get_event("nope") is None


def test_duplicate_port_names_are_value_errors_naming_the_ports() -> None:
    r = Routine()
    r.define_slot("input")
    r.define_event("output")
    with pytest.raises(
        ValueError,
        match=r"^Routine `0x[0-9a-f]+` already has a slot `input` \(slots: input; events: output\)$",
    ):
        r.define_slot("input")
    with pytest.raises(
        ValueError,
        match=r"^Routine `0x[0-9a-f]+` already has an event `output` \(slots: input; events: output\)$",
    ):
        r.define_event("output")


def test_unknown_merge_strategy_is_rejected_listing_the_valid_ones() -> None:
    r = Routine()
    with pytest.raises(
        ValueError,
        match=r"^Routine `0x[0-9a-f]+` slot `input`: unknown merge_strategy 'sum' \(valid: 'override', 'append', or a callable \(old, new\) -> merged\)$",
    ):
        r.define_slot("input", merge_strategy="sum")


def test_spec_lowers_merge_strategies_to_queue_and_merge_policies() -> None:
    r = Routine()
    r.define_slot("a")
    r.define_slot("b", merge_strategy="append")
    r.define_slot("c", merge_strategy=lambda old, new: {**old, **new})
    spec = r.spec
    assert spec.kind == "classic"
    assert [s.policy for s in spec.slots] == [Policy.QUEUE, Policy.MERGE, Policy.MERGE]
    # Several slots: each optional, so a delivery to any one of them fires the routine.
    assert not any(s.required for s in spec.slots)
    single = Routine()
    single.define_slot("only")
    assert single.spec.slots[0].required


# -- handler calling shapes ----------------------------------------------------------------


SHAPES = [
    # (handler factory, payload, what the handler records)
    ("kwargs", lambda r: lambda **kw: r.record(kw), {"x": 1, "y": 2}, {"x": 1, "y": 2}),
    ("data", lambda r: lambda data: r.record(data), {"x": 1}, {"x": 1}),
    ("single match", lambda r: lambda x: r.record(x), {"x": 1, "y": 2}, 1),
    ("single no match", lambda r: lambda value: r.record(value), {"x": 1}, {"x": 1}),
    (
        "several by name",
        lambda r: lambda x, y=0, z=9: r.record((x, y, z)),
        {"x": 1, "y": 2},
        (1, 2, 9),
    ),
    ("several none match", lambda r: lambda a, b=None: r.record(a), {"x": 1}, {"x": 1}),
]


@pytest.mark.parametrize(
    ("factory", "payload", "expected"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES]
)
def test_handlers_receive_data_the_way_0_10_passed_it(
    workers: int, factory: Any, payload: dict[str, Any], expected: Any
) -> None:
    state = run_pipeline(workers, Recorder(factory), payload)
    assert got(state) == [expected]


def test_the_calling_shape_is_decided_when_the_slot_is_defined(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = make_flow(workers)
    flow.add_routine(Source(), "src")
    flow.add_routine(Recorder(lambda r: lambda x: r.record(x)), "rec")
    flow.connect("src", "out", "rec", "input")

    def no_inspection(*args: object, **kwargs: object) -> None:
        raise AssertionError("inspect.signature called while the job runs")

    monkeypatch.setattr(inspect, "signature", no_inspection)
    state = flow.execute("src", {"payload": {"x": 5}, "count": 3})
    assert JobState.wait_for_completion(flow, state, timeout=10)
    assert state.status == "completed", state.error
    assert got(state) == [5, 5, 5]


def test_bound_method_handlers_get_unpacked_kwargs(workers: int) -> None:
    class Kw(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.handle)

        def handle(self, name: str = "", **rest: Any) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            ctx.job_state.append_to_shared_log({"got": (name, rest)})

    state = run_pipeline(workers, Kw(), {"name": "n", "k": 1})
    assert got(state) == [("n", {"k": 1})]


def test_a_slot_without_handler_accepts_data_and_does_nothing(workers: int) -> None:
    r = Routine()
    r.define_slot("input")
    state = run_pipeline(workers, r, {"x": 1})
    assert state.routine_states["rec"].activations == 1


# -- emit ---------------------------------------------------------------------------------


def test_emit_outside_a_running_handler_is_a_state_error() -> None:
    r = Routine()
    r.define_event("out")
    with pytest.raises(
        StateError,
        match=r"^Routine `0x[0-9a-f]+` emitted `out` outside its own handlers: emit from a slot handler of this routine while a job runs \(flow.execute\)$",
    ):
        r.emit("out", x=1)


def test_emit_of_an_unknown_event_is_a_value_error_listing_the_events() -> None:
    r = Routine()
    r.define_event("out")
    with pytest.raises(
        ValueError, match=r"^Routine `0x[0-9a-f]+` has no event `nope` \(events: out\)$"
    ):
        r.emit("nope")


def test_emit_accepts_the_running_flow_explicitly_and_strips_job_state(workers: int) -> None:
    class Explicit(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("out")

        def go(self, **kw: Any) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            self.emit("out", flow=ctx.flow, job_state=ctx.job_state, x=1)

    flow = make_flow(workers)
    flow.add_routine(Explicit(), "src")
    flow.add_routine(Recorder(), "rec")
    flow.connect("src", "out", "rec", "input")
    state = flow.execute("src")
    assert JobState.wait_for_completion(flow, state, timeout=10)
    assert got(state) == [{"x": 1}]


def test_emit_returns_before_downstream_handlers_run(workers: int) -> None:
    order: list[str] = []

    class Emitter(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("out")

        def go(self, **kw: Any) -> None:
            self.emit("out", x=1)
            order.append("after emit")

    class Late(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=lambda **kw: order.append("handler"))

    flow = make_flow(workers)
    flow.add_routine(Emitter(), "a")
    flow.add_routine(Late(), "b")
    flow.connect("a", "out", "b", "input")
    if workers > 1:
        # In pool mode the downstream task may start on another worker at once; only
        # the inline mode has a deterministic order.
        state = flow.execute("a")
        assert JobState.wait_for_completion(flow, state, timeout=10)
        assert sorted(order) == ["after emit", "handler"]
        return
    state = flow.execute("a")
    assert JobState.wait_for_completion(flow, state, timeout=10)
    assert order == ["after emit", "handler"]


# -- config, context, stats ----------------------------------------------------------------


def test_set_config_get_config_and_config_copy() -> None:
    r = Routine()
    r.set_config(name="p1", retries=3)
    assert r.get_config("name") == "p1"
    assert r.get_config("missing", default=7) == 7
    cfg = r.config()
    cfg["name"] = "changed"
    assert r.get_config("name") == "p1"


def test_set_config_rejects_values_that_cannot_be_serialized() -> None:
    r = Routine()
    with pytest.raises(
        ValueError,
        match=r"^Routine `0x[0-9a-f]+`: config value for 'fn' must be serializable, got function$",
    ):
        r.set_config(fn=lambda: None)


def test_set_config_while_the_routine_runs_fails_the_activation(workers: int) -> None:
    class Mutating(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=lambda **kw: self.set_config(n=1))

    flow = make_flow(workers)
    flow.add_routine(Mutating(), "m")
    state = flow.execute("m")
    assert JobState.wait_for_completion(flow, state, timeout=10)
    assert state.status == "failed"
    assert state.error is not None
    assert state.error.type == "StateError"
    assert state.error.message.startswith("Routine `m`: cannot change config while it runs")


def test_execution_context_inside_a_handler_and_none_outside(workers: int) -> None:
    seen: list[Any] = []

    class Ctx(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)

        def go(self, **kw: Any) -> None:
            ctx = self.get_execution_context()
            seen.append(ctx)
            seen.append((self.job_state, self.job_id))

    r = Ctx()
    assert r.get_execution_context() is None
    assert r.job_state is None
    flow = make_flow(workers)
    flow.add_routine(r, "ctx")
    state = flow.execute("ctx")
    assert JobState.wait_for_completion(flow, state, timeout=10)
    ctx, (js, jid) = seen
    assert isinstance(ctx, ExecutionContext)
    flow_, job_state, routine_id = ctx
    assert (flow_, job_state, routine_id) == (flow, state, "ctx")
    assert (js, jid) == (state, state.job_id)


def test_stats_per_job_and_over_finished_jobs(workers: int) -> None:
    rec = Recorder()
    assert rec.stats() == RoutineStats()
    flow = make_flow(workers)
    flow.add_routine(Source(), "src")
    flow.add_routine(rec, "rec")
    flow.connect("src", "out", "rec", "input")
    states = [flow.execute("src", {"payload": {"x": i}, "count": 2}) for i in range(2)]
    for s in states:
        assert JobState.wait_for_completion(flow, s, timeout=10)
    assert rec.stats(states[0]).activations == 2
    total = rec.stats()
    assert (total.activations, total.jobs, total.errors) == (4, 2, 0)


def test_defining_a_slot_after_adding_the_routine_recompiles_the_flow(workers: int) -> None:
    late = Routine()
    flow = make_flow(workers)
    flow.add_routine(Source(), "src")
    flow.add_routine(late, "late")
    assert flow.validate() is None  # compiles the flow as it is now
    seen: list[Any] = []
    late.define_slot("input", handler=lambda x: seen.append(x))
    flow.connect("src", "out", "late", "input")
    state = flow.execute("src", {"payload": {"x": 3}})
    assert JobState.wait_for_completion(flow, state, timeout=10)
    assert seen == [3]


def test_a_routine_instance_belongs_to_one_flow() -> None:
    r = Routine()
    Flow("a").add_routine(r, "r")
    with pytest.raises(
        ValueError,
        match=r"^Routine `r` already belongs to flow 'a'; a routine instance is one node of one flow \(create another instance for flow 'b'\)$",
    ):
        Flow("b").add_routine(r, "r")


def test_a_classic_routine_and_a_typed_routine_share_one_flow(workers: int) -> None:
    @routine
    def double(payload: dict[str, Any]) -> int:
        return int(payload["x"]) * 2

    flow = make_flow(workers)
    with flow:
        d = double(name="double")
    flow.add_routine(Source(), "src")
    flow.connect("src", "out", "double", "payload")
    state = flow.execute("src", {"payload": {"x": 21}})
    assert JobState.wait_for_completion(flow, state, timeout=10)
    assert state.output("double.result") == [42]
    assert d.stats(state).activations == 1


def test_routines_run_concurrently_across_jobs_without_sharing_slot_data() -> None:
    # Three jobs reach the same append slot at once; each job sees only its own values.
    barrier = threading.Barrier(3, timeout=10)

    class Gate(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("out")

        def go(self, x: int) -> None:
            barrier.wait()  # all three jobs are inside this handler at the same time
            self.emit("out", x=x)
            self.emit("out", x=x + 100)

    rec = Recorder(merge_strategy="append")
    flow = make_flow(4)
    flow.add_routine(Gate(), "gate")
    flow.add_routine(rec, "rec")
    flow.connect("gate", "out", "rec", "input")
    states = {x: flow.execute("gate", {"x": x}) for x in (1, 2, 3)}
    for x, s in states.items():
        assert JobState.wait_for_completion(flow, s, timeout=10)
        assert s.status == "completed"
        assert got(s) == [{"x": [x]}, {"x": [x, x + 100]}]


def test_a_routine_with_several_slots_runs_only_the_handler_of_each_delivery(workers: int) -> None:
    class Two(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("to_a")
            self.define_event("to_b")

        def go(self, **kw: Any) -> None:
            self.emit("to_a", v=1)
            self.emit("to_b", v=2)
            self.emit("to_a", v=3)

    class Both(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("a", handler=lambda v: self.log("a", v))
            self.define_slot("b", handler=lambda v: self.log("b", v), merge_strategy="append")

        def log(self, slot: str, v: Any) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            ctx.job_state.append_to_shared_log({"got": (slot, v)})

    flow = make_flow(workers)
    flow.add_routine(Two(), "two")
    flow.add_routine(Both(), "both")
    flow.connect("two", "to_a", "both", "a")
    flow.connect("two", "to_b", "both", "b")
    state = flow.execute("two")
    assert JobState.wait_for_completion(flow, state, timeout=10)
    # Each delivery runs its own slot's handler once; a slot with no new delivery is
    # not run again with its old data.
    assert sorted(got(state)) == [("a", 1), ("a", 3), ("b", [2])]


def test_queued_merge_values_survive_a_snapshot_and_resume(workers: int) -> None:
    class Agg(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.handle, merge_strategy="append")

        def handle(self, n: list[int]) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            ctx.job_state.append_to_shared_log({"got": list(n)})
            if len(n) == 1:
                ctx.flow.pause(ctx.job_state, reason="snapshot me")

    class Three(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("out")

        def go(self, **kw: Any) -> None:
            for n in range(3):
                self.emit("out", n=n)

    def build() -> Flow:
        flow = make_flow(workers)
        flow.add_routine(Three(), "three")
        flow.add_routine(Agg(), "agg")
        flow.connect("three", "out", "agg", "input")
        return flow

    flow = build()
    state = flow.execute("three")
    assert JobState.wait_for_completion(flow, state, timeout=10)
    assert state.status == "paused"
    restored = JobState.from_bytes(state.to_bytes())
    other = build()
    resumed = other.resume(restored)
    assert JobState.wait_for_completion(other, resumed, timeout=10)
    assert resumed.status == "completed"
    assert got(resumed) == [[0], [0, 1], [0, 1, 2]]
