"""routilux 0.10's JobState API (``serialize``, ``save``/``load``, ``wait_for_completion`` …).

``JobState`` inherits this mixin (a plain class: msgspec Structs accept mixins
without fields).
"""

from __future__ import annotations


class ClassicJobStateMixin:
    """The 0.10 ``JobState`` methods."""

    __slots__ = ()
