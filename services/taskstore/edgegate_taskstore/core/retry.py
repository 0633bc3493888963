"""What to do when an attempt fails: retry later, give up, or wait for the model.

Pure decisions for the worker: the error's kind says whether another attempt
can help, and the delay before it grows exponentially with full jitter, so
that many tasks failing together (a restarting inference replica) do not
all come back at the same instant.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from edgegate_common.errors import (
    REQUEST_ERRORS,
    Code,
    EdgegateError,
    NoResponders,
    retry_after_s,
)


class Outcome(enum.Enum):
    RETRY = "retry"  # transient: another attempt may succeed
    GIVE_UP = "give_up"  # permanent: the same request fails the same way
    WAIT_FOR_MODEL = "wait_for_model"  # nobody serves the model now; not an attempt
    OVERLOADED = "overloaded"  # the model refused it for now; back when it says, not an attempt


def classify(error: EdgegateError) -> Outcome:
    if isinstance(error, NoResponders):
        return Outcome.WAIT_FOR_MODEL
    if error.code is Code.RESOURCE_EXHAUSTED:
        return Outcome.OVERLOADED
    return Outcome.GIVE_UP if error.code in REQUEST_ERRORS else Outcome.RETRY


def overload_delay_s(error: EdgegateError, *, rng: random.Random | None = None) -> float:
    """When to offer an overloaded model the task again: the wait it asked for, stretched
    by up to half at random so that the tasks it refused together do not return together."""
    wait_s = retry_after_s(error) or 1.0
    return wait_s * (rng or random).uniform(1.0, 1.5)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before attempt n+1: uniform in [0, min(cap, base * 2**(n-1))] ("full jitter")."""

    base_s: float = 1.0
    cap_s: float = 60.0

    def delay_s(self, attempts: int, *, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1))
        return (rng or random).uniform(0, ceiling)
