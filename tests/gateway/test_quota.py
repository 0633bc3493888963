"""Quota documents and token-bucket arithmetic (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgegate_gateway.core.quota import Bucket, Limit, Quota


def test_a_quota_document_is_read_and_checked() -> None:
    quota = Quota.from_json(b'{"rate_per_s": 50, "burst": 100, "key_rate_per_s": 5}')
    assert quota.tenant == Limit(rate_per_s=50, burst=100)
    assert quota.per_key == Limit(rate_per_s=5, burst=5)  # burst defaults to one second's worth
    for bad, says in [
        (b"[]", "JSON object"),
        (b"{oops", "not valid JSON"),
        (b'{"rate_per_s": ' + b"[" * 5000 + b"]" * 5000 + b"}", "deeper than 32"),
        (b"{}", "needs rate_per_s"),
        (b'{"rate_per_s": 0}', "positive"),
        (b'{"rate_per_s": true}', "positive"),
        (b'{"rate_per_s": 5, "burst": 0.5}', "at least 1"),
    ]:
        with pytest.raises(ValueError, match=says):
            Quota.from_json(bad)


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    limit = Limit(rate_per_s=2, burst=4)
    bucket = Bucket.full(limit, now_s=100)
    granted, bucket = bucket.take(limit, 100, up_to=10)
    assert granted == 4
    assert bucket.take(limit, 100, up_to=1)[0] == 0
    assert bucket.wait_s(limit, 100) == pytest.approx(0.5)
    assert bucket.take(limit, 101, up_to=10)[0] == 2
    assert bucket.refilled(limit, 1000).tokens == 4


@given(
    rate=st.floats(0.5, 50),
    burst=st.integers(1, 20),
    steps=st.lists(st.tuples(st.floats(0, 2), st.integers(1, 5)), max_size=60),
)
def test_no_sequence_of_takes_exceeds_rate_times_time_plus_burst(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    limit = Limit(rate_per_s=rate, burst=burst)
    now = 0.0
    bucket = Bucket.full(limit, now)
    total = 0
    for gap_s, want in steps:
        now += gap_s
        granted, bucket = bucket.take(limit, now, up_to=want)
        total += granted
        assert total <= burst + rate * now + 1e-9
