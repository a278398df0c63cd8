"""Wrong flows: every bad line carries the diagnostics mypy must report on it.

``# E: msg`` is expected in both modes (plugin, and generated stubs without the plugin);
``# E[plugin]: msg`` / ``# E[stubs]: msg`` in one mode only.
"""

from __future__ import annotations

from routilux import Flow
from routines import (
    chars,
    batches,
    check,
    count,
    fetch,
    find,
    parse,
    scale,
    shelter,
    show,
    tally,
    total,
    walk,
    words,
)

with Flow("bad") as flow:
    f, p, c, w = fetch(), parse(), check(), words()

    # Wrong payload type: bytes into a str slot.
    f.result >> p.encoding  # E: Unsupported operand types for >> ("Event[bytes]" and "Slot[str]")  [operator]
    f.result.to(p.encoding)  # E: Argument 1 to "to" of "Event" has incompatible type "Slot[str]"; expected "Slot[bytes]"  [arg-type]

    # Optional into non-Optional.
    fd = find()
    fd.result >> c.doc  # E: Unsupported operand types for >> ("Event[Doc | None]" and "Slot[Doc]")  [operator]

    # Unknown port.
    p.rw >> c.doc  # E[plugin]: Routine "parse" has no slot or event "rw" (slots: raw, encoding; events: result)  [node-port]  # E[stubs]: "ParseNode" has no attribute "rw"; maybe "raw"?  [attr-defined]

    # Messages name the node: its `name=`, else the routine's (`@routine(name="lookup")`).
    find(name="finder").oops  # E[plugin]: Routine "finder" has no slot or event "oops" (slots: key; events: result)  [node-port]  # E[stubs]: "FindNode" has no attribute "oops"  [attr-defined]
    fd.ok  # E[plugin]: Routine "lookup" has no slot or event "ok" (slots: key; events: result)  [node-port]  # E[stubs]: "FindNode" has no attribute "ok"  [attr-defined]

    # Slot on the left of >>.
    p.raw >> f.url  # E: Unsupported left operand type for >> ("Slot[bytes]")  [operator]

    # A multi-event routine has no `result`; a `-> None` routine neither.
    c.result >> w.doc  # E[plugin]: Routine "check" has no slot or event "result" (slots: doc; events: ok, rejected)  [node-port]  # E[stubs]: "CheckNode" has no attribute "result"  [attr-defined]
    tally().memo  # E[plugin]: Routine "tally" has no slot or event "memo" (slots: x; events: result)  [node-port]  # E[stubs]: "TallyNode" has no attribute "memo"  [attr-defined]
    show().result  # E[plugin]: Routine "show" has no slot or event "result" (slots: text; events: none)  [node-port]  # E[stubs]: "ShowNode" has no attribute "result"  [attr-defined]

    # Generator and async item types.
    w.result >> total().values  # E: Unsupported operand types for >> ("Event[str]" and "Slot[int]")  [operator]
    count().result >> show().text  # E: Unsupported operand types for >> ("Event[int]" and "Slot[str]")  [operator]
    chars().result >> scale().value  # E: Unsupported operand types for >> ("Event[str]" and "Slot[int]")  [operator]

    # Append[int] is a Slot[int] (one value per delivery), not a Slot[list[int]].
    t = total()
    batches().result >> t.values  # E: Unsupported operand types for >> ("Event[list[str]]" and "Slot[int]")  [operator]

    # .map() gives the mapped type.
    p.result.map(lambda d: d.title) >> t.values  # E: Unsupported operand types for >> ("Event[str]" and "Slot[int]")  [operator]
    p.result.map(lambda d: len(d.title)) >> show().text  # E: Unsupported operand types for >> ("Event[int]" and "Slot[str]")  [operator]

    # A base-class payload into a subclass slot (the reverse passes: see good_flows).
    shelter().result >> walk().dog  # E: Unsupported operand types for >> ("Event[Animal]" and "Slot[Dog]")  [operator]

# Wrong run input.
flow.run(f.url(42))  # E: Argument 1 to "__call__" of "Slot" has incompatible type "int"; expected "str"  [arg-type]
flow.run(p.raw("text"))  # E: Argument 1 to "__call__" of "Slot" has incompatible type "str"; expected "bytes"  [arg-type]
