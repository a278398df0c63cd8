"""What happens when an activation raises: ``Stop`` (default), ``Continue``, ``Skip``, ``Retry``.

Every failure is recorded in the job's state (node, attempt, exception type,
message, traceback text) whatever the policy; the policy only decides what the
job does next. Retries wait on the dispatcher's timer, never blocking other tasks.
"""

from __future__ import annotations

import enum
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import msgspec

__all__ = [
    "Continue",
    "Decision",
    "ErrorHandler",
    "ErrorPolicy",
    "ErrorStrategy",
    "Retry",
    "Skip",
    "Stop",
]


class Decision(NamedTuple):
    """A policy's answer for one failure."""

    action: Literal["stop", "continue", "skip", "retry"]
    delay: float = 0.0


@runtime_checkable
class ErrorPolicy(Protocol):
    """Decides what to do after an activation raised ``exc`` on attempt ``attempt`` (1-based)."""

    def decide(self, exc: BaseException, attempt: int) -> Decision: ...


# The policies are frozen msgspec Structs, not dataclasses, for import time (see
# routilux/spec.py); derive a changed copy with ``msgspec.structs.replace``.


class Stop(msgspec.Struct, frozen=True):
    """Fail the job (the default): status ``failed``, the error recorded, queued work kept as pending."""

    def decide(self, exc: BaseException, attempt: int) -> Decision:
        return Decision("stop")


class Continue(msgspec.Struct, frozen=True):
    """Record the error and let the job go on (the routine counts as failed for this activation)."""

    def decide(self, exc: BaseException, attempt: int) -> Decision:
        return Decision("continue")


class Skip(msgspec.Struct, frozen=True):
    """Record the error, mark the activation skipped, and let the job go on."""

    def decide(self, exc: BaseException, attempt: int) -> Decision:
        return Decision("skip")


class Retry(msgspec.Struct, frozen=True):
    """Run the activation again, up to ``max_attempts`` in all, then apply ``then``.

    Args:
        max_attempts: Attempts in all, the first included.
        delay: Seconds before the first retry.
        backoff: Multiplier applied to the delay after each retry.
        on: Exception types worth retrying; others go straight to ``then``.
        then: The policy once attempts run out (default ``Stop()``).
    """

    max_attempts: int = 3
    delay: float = 0.0
    backoff: float = 1.0
    on: tuple[type[BaseException], ...] = (Exception,)
    then: Any = msgspec.field(default_factory=Stop)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            msg = f"Retry.max_attempts must be >= 1, got {self.max_attempts}"
            raise ValueError(msg)
        if self.delay < 0 or self.backoff <= 0:
            msg = f"Retry needs delay >= 0 and backoff > 0, got delay={self.delay}, backoff={self.backoff}"
            raise ValueError(msg)

    def decide(self, exc: BaseException, attempt: int) -> Decision:
        if attempt < self.max_attempts and isinstance(exc, self.on):
            decision: Decision = Decision("retry", self.delay * self.backoff ** (attempt - 1))
            return decision
        then: ErrorPolicy = self.then
        return then.decide(exc, attempt)


class ErrorStrategy(enum.StrEnum):
    """routilux 0.10's strategy names."""

    STOP = "stop"
    CONTINUE = "continue"
    RETRY = "retry"
    SKIP = "skip"


class ErrorHandler:
    """routilux 0.10's error handler, as a policy.

    Args:
        strategy: One of :class:`ErrorStrategy` (or its string value).
        max_retries: Retries after the first attempt (RETRY only).
        retry_delay: Seconds before the first retry.
        backoff_multiplier: Multiplier applied to the delay after each retry.
        retryable_exceptions: Exception types worth retrying.
        is_critical: A critical routine's exhausted retries fail the job even when a
            flow-level handler would continue.
        retry_backoff: routilux 0.10's name for ``backoff_multiplier`` (wins when given).
    """

    def __init__(
        self,
        strategy: ErrorStrategy | str = ErrorStrategy.STOP,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        backoff_multiplier: float = 2.0,
        retryable_exceptions: tuple[type[BaseException], ...] | None = None,
        is_critical: bool = False,
        *,
        retry_backoff: float | None = None,
    ) -> None:
        if retry_backoff is not None:
            backoff_multiplier = retry_backoff
        try:
            self.strategy = ErrorStrategy(strategy)
        except ValueError:
            valid = ", ".join(s.value for s in ErrorStrategy)
            msg = f"Unknown error strategy {strategy!r} (valid: {valid})"
            raise ValueError(msg) from None
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.backoff_multiplier = backoff_multiplier
        self.retryable_exceptions = retryable_exceptions or (Exception,)
        self.is_critical = is_critical
        self.retry_count = 0

    def decide(self, exc: BaseException, attempt: int) -> Decision:
        if self.strategy is ErrorStrategy.CONTINUE:
            return Decision("continue")
        if self.strategy is ErrorStrategy.SKIP:
            return Decision("skip")
        if self.strategy is ErrorStrategy.RETRY:
            if attempt <= self.max_retries and isinstance(exc, self.retryable_exceptions):
                self.retry_count += 1
                return Decision(
                    "retry", self.retry_delay * self.backoff_multiplier ** (attempt - 1)
                )
            return Decision("stop")
        return Decision("stop")

    @property
    def retry_backoff(self) -> float:
        """routilux 0.10's name for ``backoff_multiplier``."""
        return self.backoff_multiplier

    def reset(self) -> None:
        """Forget the retry count (0.10 API)."""
        self.retry_count = 0

    def __repr__(self) -> str:
        return f"ErrorHandler(strategy={self.strategy.value!r}, max_retries={self.max_retries})"


STOP = Stop()
