from __future__ import annotations

import random

import pytest

from edged.backoff import Backoff


def test_delays_grow_stay_in_bounds_and_cap() -> None:
    b = Backoff(0.5, 30.0, random.Random(1))
    delays = [b.next_delay_s() for _ in range(20)]
    assert all(0.5 <= d <= 30.0 for d in delays)
    # the n-th delay lies in the upper half of min_s * 2**(n+1), capped at max_s
    for n, d in enumerate(delays):
        cap = min(30.0, 0.5 * 2 ** (n + 1))
        assert max(0.5, cap / 2) <= d <= cap
    assert all(d >= 15.0 for d in delays[6:])  # capped region: upper half of 30 s


def test_jitter_spreads_terminals() -> None:
    firsts = {
        round(Backoff(1.0, 60.0, random.Random(seed)).next_delay_s(), 6) for seed in range(50)
    }
    assert len(firsts) > 40
    fifths = []
    for seed in range(50):
        b = Backoff(1.0, 60.0, random.Random(seed))
        for _ in range(4):
            b.next_delay_s()
        fifths.append(b.next_delay_s())
    assert min(fifths) >= 16.0
    assert max(fifths) <= 32.0
    assert max(fifths) - min(fifths) > 2.0


def test_same_seed_same_sequence() -> None:
    a = Backoff(0.5, 30.0, random.Random(7))
    b = Backoff(0.5, 30.0, random.Random(7))
    assert [a.next_delay_s() for _ in range(10)] == [b.next_delay_s() for _ in range(10)]


def test_reset_returns_to_min() -> None:
    b = Backoff(0.5, 30.0, random.Random(3))
    for _ in range(10):
        b.next_delay_s()
    assert b.cap_s() == 30.0
    b.reset()
    assert b.failures == 0
    assert b.cap_s() == 1.0
    assert 0.5 <= b.next_delay_s() <= 1.0


def test_min_equals_max_is_constant() -> None:
    b = Backoff(2.0, 2.0, random.Random(0))
    assert [b.next_delay_s() for _ in range(5)] == [2.0] * 5


def test_very_long_outage_does_not_overflow() -> None:
    b = Backoff(0.5, 30.0, random.Random(0))
    for _ in range(5000):
        d = b.next_delay_s()
    assert 15.0 <= d <= 30.0


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_bad_bounds_rejected(lo: float, hi: float) -> None:
    with pytest.raises(ValueError, match="min_s"):
        Backoff(lo, hi)
