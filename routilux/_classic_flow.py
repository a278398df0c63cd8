"""routilux 0.10's Flow API (``add_routine``, ``connect``, ``execute`` …) over the one engine.

``Flow`` inherits this mixin; every method here lowers to the typed engine's
``_add_node``/``_connect``/``start``.
"""

from __future__ import annotations


class ClassicFlowMixin:
    """The 0.10 ``Flow`` methods."""

    __slots__ = ()
