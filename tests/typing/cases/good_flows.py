"""Flows that must type-check cleanly, with the plugin and with the generated stubs."""

from __future__ import annotations

from typing import Any, assert_type

from routilux import Event, Flow, RoutineStats, Slot
from routilux.connection import Connection
from routilux.slot import RunInput
from routilux.spec import RoutineSpec
from routines import (
    Animal,
    Doc,
    Dog,
    adopt,
    batches,
    chars,
    check,
    count,
    fetch,
    find,
    longest,
    parse,
    scale,
    show,
    tally,
    total,
    walk,
    words,
)

with Flow("good") as flow:
    f, p, c, w = fetch(), parse(), check(), words()
    assert_type(f.url, Slot[str])
    assert_type(f.result, Event[bytes])
    assert_type(p.raw, Slot[bytes])
    assert_type(p.encoding, Slot[str])
    assert_type(p.result, Event[Doc])
    assert_type(c.doc, Slot[Doc])
    assert_type(c.ok, Event[Doc])
    assert_type(c.rejected, Event[str])
    assert_type(w.result, Event[str])
    assert_type(f.result >> p.raw, Connection)
    f.result.to(p.raw)
    p.result >> c.doc
    c.ok >> w.doc

    # Generators, async def and async generators: the item / awaited type.
    n, ch = count(), chars()
    assert_type(n.result, Event[int])
    assert_type(ch.result, Event[str])
    w.result >> n.text
    w.result >> ch.text

    # Slot policies unwrap to the element type.
    t, b, s, lg = total(), batches(), scale(), longest()
    assert_type(t.values, Slot[int])
    assert_type(b.values, Slot[str])
    assert_type(s.factor, Slot[float])
    assert_type(lg.title, Slot[str])
    n.result >> t.values

    # A State parameter is injected per job, not a slot.
    ta = tally()
    assert_type(ta.x, Slot[int])
    assert_type(ta.result, Event[int])
    n.result >> ta.x
    ch.result >> b.values
    n.result >> s.value
    w.result >> lg.title

    # Covariance: an Event[bool] feeds a Slot[int]; a Dog feeds an Animal slot.
    a1, a2 = adopt(), adopt(name="second")
    assert_type(a1.result, Event[Dog])
    assert_type(a2.pet, Slot[Animal])
    a1.result >> a2.pet
    a1.result >> walk().dog

    # .map() is a typed transform on the edge.
    assert_type(p.result.map(lambda d: d.title), Event[str])
    p.result.map(lambda d: d.title) >> lg.title
    c.rejected.map(len) >> t.values

    # Optional output into an Optional-accepting mapping.
    fd = find()
    assert_type(fd.result, Event[Doc | None])
    fd.result.map(lambda d: d.title if d else "") >> show().text

    # Non-port node attributes keep their own types.
    assert_type(f.node_name, str)
    assert_type(f.get_slot("url"), Slot[Any])
    assert_type(f.get_event("result"), Event[Any])
    assert_type(f.spec, RoutineSpec)
    assert_type(f.flow, Flow)
    assert_type(f.stats(), RoutineStats)

assert_type(f.url("https://example.org"), RunInput)
flow.run(f.url("https://example.org"), timeout=5)
