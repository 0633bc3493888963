"""Which failures are retried, and how long the backoff waits."""

from __future__ import annotations

import random

import pytest

from edgegate_common import errors
from edgegate_taskstore.core.retry import Backoff, Outcome, classify, overload_delay_s


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (errors.Unavailable("replica restarting"), Outcome.RETRY),
        (errors.DeadlineExceeded("slow"), Outcome.RETRY),
        (errors.ResourceExhausted("queue full"), Outcome.OVERLOADED),
        (errors.Internal("bug"), Outcome.RETRY),
        (errors.NoResponders("nobody serves it"), Outcome.WAIT_FOR_MODEL),
        (errors.InvalidArgument("bad tensor"), Outcome.GIVE_UP),
        (errors.NotFound("no model"), Outcome.GIVE_UP),
        (errors.PermissionDenied("no"), Outcome.GIVE_UP),
    ],
)
def test_errors_are_classified(error: errors.EdgegateError, outcome: Outcome) -> None:
    assert classify(error) is outcome


def test_backoff_grows_to_its_cap_with_full_jitter() -> None:
    backoff = Backoff(base_s=0.5, cap_s=4.0)
    rng = random.Random(7)
    for attempts, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 4.0)]:
        delays = [backoff.delay_s(attempts, rng=rng) for _ in range(200)]
        assert max(delays) <= ceiling
        assert max(delays) > ceiling * 0.8  # spread over the whole range
        assert min(delays) < ceiling * 0.2


def test_an_overloaded_model_is_offered_the_task_again_when_it_asked_spread_out() -> None:
    rng = random.Random(3)
    asked = errors.ResourceExhausted("busy", details={"retry_after_s": "2"})
    delays = [overload_delay_s(asked, rng=rng) for _ in range(200)]
    assert 2.0 <= min(delays) < 2.1 and 2.9 < max(delays) <= 3.0
    unsaid = [overload_delay_s(errors.ResourceExhausted("busy"), rng=rng) for _ in range(50)]
    assert all(1.0 <= d <= 1.5 for d in unsaid)  # the code's default wait
