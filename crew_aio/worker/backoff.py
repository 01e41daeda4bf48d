"""Exponential backoff with jitter, for release retries, acquire retries and reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field

__all__ = ["Backoff", "sleep_unless"]

# one generator for every Backoff: seeding a new random.Random costs ~23 us, and a Backoff is
# made per release and per heartbeat
_RNG = random.Random()


@dataclass(slots=True)
class Backoff:
    """Delays grow ``initial * factor**n`` up to ``cap``; each is drawn from [d/2, d]
    ("equal jitter": never zero, so a crowd of workers does not retry in lockstep)."""

    initial: float = 0.1
    cap: float = 5.0
    factor: float = 2.0
    attempts: int = field(default=0)
    rng: random.Random = field(default=_RNG)

    def next(self) -> float:
        ceiling = min(self.cap, self.initial * self.factor**self.attempts)
        self.attempts += 1
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempts = 0


async def sleep_unless(seconds: float, event: asyncio.Event) -> None:
    """Sleep ``seconds``, or less if ``event`` gets set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
