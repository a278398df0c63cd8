"""Exceptions raised by routilux.

Every exception derives from :class:`RoutiluxError` and from the builtin it
refines, so ``except TypeError`` around wiring code keeps working.
"""

from __future__ import annotations

__all__ = [
    "DefinitionError",
    "JobTimeoutError",
    "RoutiluxError",
    "SnapshotError",
    "StateError",
    "ValidationError",
    "WiringError",
]


class RoutiluxError(Exception):
    """Base class of every error routilux raises."""


class DefinitionError(RoutiluxError, TypeError):
    """A routine's definition cannot become a node type (raised at decoration time)."""


class WiringError(RoutiluxError, TypeError):
    """Two ports cannot be connected, or a port or node does not exist."""


class ValidationError(RoutiluxError, ValueError):
    """A flow's graph, or the inputs given to a run, cannot work as wired."""


class StateError(RoutiluxError, RuntimeError):
    """A control operation does not apply to the job's current status."""


class JobTimeoutError(RoutiluxError, TimeoutError):
    """A job, or a wait on one, ran past its timeout."""


class SnapshotError(RoutiluxError, ValueError):
    """A job state cannot be encoded, decoded or matched to its flow."""
