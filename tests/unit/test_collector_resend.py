"""Resend requests at the store: when to ask (ResendTracker), what to ask for, what a terminal's
answer makes a permanent gap, and how accepting one lets acks go past it (real databases,
SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from edged.collector.rebuild import AcceptGapError
from edged.collector.report import collector_report
from edged.collector.resend import ResendTracker
from edged.collector.store import CollectorStore
from edged.wire import ResendAnswer
from tests.support.collectordb import CollectorDb
from tests.support.entries import make_chain

KEY = ("s1", "t1")


def test_a_gap_is_asked_for_once_then_again_after_the_timeout_a_bounded_number_of_times() -> None:
    tracker = ResendTracker(retry_s=10.0, attempts_max=3)
    tracker.saw(KEY, (1, 50), now=0.0)
    assert tracker.due(0.0) == [(KEY, (1, 50))]
    assert tracker.due(0.0) == []
    tracker.saw(KEY, (20, 50), now=1.0)  # progress within the gap asked for: the same gap
    assert tracker.due(5.0) == []
    assert tracker.wait_s(5.0) == pytest.approx(5.0)
    assert tracker.due(10.0) == [(KEY, (20, 50))]  # still there after the timeout: again
    assert tracker.due(20.0) == [(KEY, (20, 50))]
    assert tracker.unanswered(KEY)
    assert tracker.due(1000.0) == []  # bounded
    assert tracker.wait_s(1000.0) is None
    tracker.saw(KEY, (60, 70), now=1000.0)  # another gap: asked for at once
    assert tracker.due(1000.0) == [(KEY, (60, 70))]
    tracker.saw(KEY, None, now=1001.0)
    assert tracker.wait_s(1001.0) is None


def test_by_default_a_gap_is_asked_for_five_times_fifteen_seconds_apart() -> None:
    tracker = ResendTracker()
    tracker.saw(KEY, (3, 4), now=100.0)
    asked = [len(tracker.due(100.0 + 15.0 * i)) for i in range(7)]
    assert asked == [1, 1, 1, 1, 1, 0, 0]


@pytest.mark.parametrize(
    ("later", "same"),
    [
        ((10, 20), True),  # the gap unchanged
        ((12, 18), True),  # filled at both ends: within the gap asked for
        ((5, 18), False),  # begins before it: another gap, asked for at once
        ((12, 25), False),  # ends after it
    ],
)
def test_only_a_gap_within_the_one_asked_for_counts_as_the_same(
    later: tuple[int, int], same: bool
) -> None:
    tracker = ResendTracker(retry_s=10.0, attempts_max=2)
    tracker.saw(KEY, (10, 20), now=0.0)
    assert tracker.due(0.0) == [(KEY, (10, 20))]
    tracker.saw(KEY, later, now=1.0)
    assert tracker.wait_s(1.0) == pytest.approx(9.0 if same else 0.0)
    assert tracker.due(1.0) == ([] if same else [(KEY, later)])


def test_unanswered_only_once_the_last_allowed_request_is_sent() -> None:
    tracker = ResendTracker(retry_s=10.0, attempts_max=2)
    assert not tracker.unanswered(KEY)  # never asked
    tracker.saw(KEY, (1, 2), now=0.0)
    assert not tracker.unanswered(KEY)
    tracker.due(0.0)
    assert not tracker.unanswered(KEY)
    tracker.due(10.0)
    assert tracker.unanswered(KEY)
    assert tracker.wait_s(10.0) is None


def test_a_settled_gap_is_not_asked_for_again_until_another_gap_is_seen() -> None:
    tracker = ResendTracker(retry_s=10.0, attempts_max=3)
    tracker.settled(KEY)  # nothing asked yet: nothing to settle
    assert tracker.due(0.0) == []
    tracker.saw(KEY, (1, 9), now=0.0)
    tracker.due(0.0)
    tracker.settled(KEY)
    assert tracker.due(100.0) == []
    assert tracker.wait_s(100.0) is None
    tracker.saw(KEY, (11, 12), now=100.0)
    assert tracker.due(100.0) == [(KEY, (11, 12))]


def test_an_overdue_request_waits_zero_seconds() -> None:
    tracker = ResendTracker(retry_s=10.0, attempts_max=3)
    tracker.saw(KEY, (1, 9), now=0.0)
    assert tracker.wait_s(4.0) == 0.0


def test_a_purged_range_becomes_a_permanent_gap_that_an_admin_can_accept(db: CollectorDb) -> None:
    store = CollectorStore.open(db.target)
    try:
        chain = make_chain("s1", "t1", 12)
        store.store_batch("s1", "t1", chain[:5])
        assert store.store_batch("s1", "t1", chain[10:]) == 5  # gap 6..10
        plan = store.plan_resend(KEY, (6, 10))
        assert plan is not None and (plan.from_seq, plan.upto) == (6, 10)
        answer = ResendAnswer(v=1, from_=6, upto=10, retained_from=9, last_seq=12)
        store.record_answers([(KEY, answer)])
        plan = store.plan_resend(KEY, (6, 10))  # only what the terminal still has
        assert plan is not None and (plan.from_seq, plan.upto) == (9, 10)
        with pytest.raises(AcceptGapError, match="known permanent gaps: 6..8"):
            store.accept_gap(KEY, 6, 10, "bob")
        assert "up to seq 8 (was 5)" in store.accept_gap(KEY, 6, 8, "bob")
        assert store.store_batch("s1", "t1", chain[8:10]) == 12  # the rest arrives: all acked
    finally:
        store.close()
    report = collector_report(db.target)
    (terminal,) = report["terminals"]
    (gap,) = terminal["permanent_gaps"]
    assert (gap["from"], gap["to"], gap["accepted_by"]) == (6, 8, "bob")
    assert terminal["rebuild"]["remaining"] == 0
    assert terminal["chain_broken_at"] is None
    assert [p["kind"] for p in report["problems"]] == ["unavailable"]
