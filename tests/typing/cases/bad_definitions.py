"""Definition errors: reported at the ``@routine`` line, each with its own code.

Every routine here also raises DefinitionError at import time; mypy reports it first.
"""

from __future__ import annotations

from collections.abc import Iterator

from routilux import Emit, Flow, Outputs, routine


class Sent(Outputs):
    sent: Emit[str]
    failed: Emit[int]


@routine  # E: Routine "gather": parameter "*items" cannot be a slot; declare each input as a named parameter  [routine-star-args]
def gather(*items: int) -> int:
    return sum(items)


@routine(concurrency=2)  # E: Routine "config": parameter "**options" cannot be a slot; declare each input as a named parameter  [routine-star-args]
def config(**options: str) -> str:
    return ",".join(options)


@routine  # E: Routine "hidden": parameter "_secret" starts with "_"; slot names must be public  [routine-private-name]
def hidden(_secret: str) -> str:
    return _secret


@routine  # E: Routine "send": parameter "sent" has the name of an event; a port name is either a slot or an event  [routine-name-clash]
def send(sent: str, out: Sent) -> None:
    out.sent(sent)


@routine  # E: Routine "echo": parameter "result" has the name of an event; a port name is either a slot or an event  [routine-name-clash]
def echo(result: str) -> str:
    return result


@routine(name="mailer")  # E: Routine "mailer": a routine with an Outputs parameter must return None (it emits through "out"); got -> bool  [routine-outputs-return]
def mail(text: str, out: Sent) -> bool:
    out.sent(text)
    return True


@routine  # E: Routine "relay": parameter "flow" clashes with the node attribute "flow"; rename it  [routine-name-clash]
def relay(flow: str) -> str:
    return flow


# A generator with Outputs may emit both `result` items and named events.
@routine
def split(text: str, out: Sent) -> Iterator[str]:
    out.sent(text)
    yield from text.split()


# The options form is a decorator: the routine keeps its types.
@routine(concurrency=4, timeout=1.0)
def shout(text: str) -> str:
    return text.upper()


with Flow("defs"):
    s, sh = split(), shout()
    s.result >> sh.text
    sh.result >> s.text
    s.failed >> sh.text  # E: Unsupported operand types for >> ("Event[int]" and "Slot[str]")  [operator]
