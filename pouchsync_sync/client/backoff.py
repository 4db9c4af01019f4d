"""Reconnect backoff policy: an immutable value whose delay computation is pure.

Like urllib3's ``Retry``: the policy only *decides* (how long to wait before attempt
``n``, whether attempts are exhausted); the client's connection thread does the waiting
with ``stop.wait(delay)``. Exponential growth with a cap and proportional jitter::

    base(n)  = min(max_delay, initial_delay * factor ** (n - 1))      n = 1, 2, ...
    delay(n) = base(n) * (1 - jitter * r)                              r in [0, 1)

so jitter only ever shortens a wait ("equal"-style jitter that keeps the cap a cap).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

__all__ = ["Backoff"]


@dataclasses.dataclass(frozen=True)
class Backoff:
    """When to retry a lost connection. Immutable and thread-safe.

    Example::

        import pouchsync_sync as ps

        policy = ps.Backoff(initial_delay=0.5, max_delay=10.0, max_attempts=None)
        print(policy.base_delay(1), policy.base_delay(3))   # 0.5 2.0 (jitter only shortens)
        client = ps.create_client(backoff=policy)           # or ps.create_client(max_delay=10.0)
        client.close()

    ``max_attempts=None`` retries forever; otherwise ``exhausted(n)`` is true once
    ``n`` failed attempts in a row have been made.
    """

    initial_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0
    max_attempts: int | None = None
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (self.initial_delay >= 0 and math.isfinite(self.initial_delay)):
            raise ValueError(f"initial_delay must be >= 0, got {self.initial_delay!r}")
        if not self.factor >= 1:
            raise ValueError(f"factor must be >= 1, got {self.factor!r}")
        if not self.max_delay >= 0:
            raise ValueError(f"max_delay must be >= 0, got {self.max_delay!r}")
        if self.max_attempts is not None and self.max_attempts < 0:
            raise ValueError(f"max_attempts must be >= 0 or None, got {self.max_attempts!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter!r}")

    def base_delay(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (1-based), without jitter."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt!r}")
        if self.initial_delay == 0:
            return 0.0
        # Compare in log space so huge attempt numbers never overflow.
        if self.factor > 1 and (attempt - 1) * math.log(self.factor) > math.log(
                max(self.max_delay, 1e-300) / self.initial_delay) + 1e-12:
            return float(self.max_delay)
        return float(min(self.max_delay, self.initial_delay * self.factor ** (attempt - 1)))

    def delay(self, attempt: int, random: Callable[[], float] | float = 0.0) -> float:
        """The jittered delay before retry ``attempt``; ``random`` gives r in [0, 1)."""
        r = random() if callable(random) else float(random)
        r = min(max(r, 0.0), 1.0)
        return self.base_delay(attempt) * (1.0 - self.jitter * r)

    def exhausted(self, attempts: int) -> bool:
        """True when ``attempts`` consecutive failures use up the allowed attempts."""
        return self.max_attempts is not None and attempts >= self.max_attempts

    def replace(self, **changes: object) -> Backoff:
        """A copy with some fields changed (the policy itself never changes)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
