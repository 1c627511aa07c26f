from __future__ import annotations

from edged.uplink.link import LinkState, StateTracker


def test_starts_connecting_and_turns_online_only_when_stable() -> None:
    t = StateTracker(online_after_s=2.0)
    assert t.state is LinkState.CONNECTING
    assert not t.up
    assert t.connected(100.0) is None  # up, but not yet stable
    assert t.up
    assert t.state is LinkState.CONNECTING
    assert t.stable_at() == 102.0
    assert t.poll(101.9) is None
    assert t.poll(102.0) is LinkState.ONLINE
    assert t.stable_at() is None
    assert t.poll(200.0) is None  # no repeated change


def test_first_attempt_failing_reports_offline() -> None:
    t = StateTracker(online_after_s=2.0)
    assert t.down(1.0) is LinkState.OFFLINE
    assert t.down(2.0) is None  # repeated failures change nothing


def test_loss_is_reported_at_once() -> None:
    t = StateTracker(online_after_s=2.0)
    t.connected(0.0)
    t.poll(5.0)
    assert t.down(6.0) is LinkState.OFFLINE
    assert not t.up


def test_flapping_link_never_reports_online_again() -> None:
    t = StateTracker(online_after_s=2.0)
    t.connected(0.0)
    assert t.poll(2.0) is LinkState.ONLINE
    assert t.down(3.0) is LinkState.OFFLINE
    changes = []
    now = 3.0
    for _ in range(20):  # up for 1.5 s, down for 0.5 s, again and again
        changes.append(t.connected(now))
        changes.append(t.poll(now + 1.5))
        changes.append(t.down(now + 1.5))
        now += 2.0
    assert [c for c in changes if c is not None] == []
    assert t.state is LinkState.OFFLINE


def test_back_online_after_a_stable_connection() -> None:
    t = StateTracker(online_after_s=2.0)
    t.down(0.0)
    t.connected(10.0)
    assert t.state is LinkState.OFFLINE  # forwarding runs, but not reported online yet
    assert t.up
    assert t.poll(11.0) is None
    assert t.poll(12.5) is LinkState.ONLINE


def test_a_new_connection_restarts_the_clock() -> None:
    t = StateTracker(online_after_s=2.0)
    t.connected(0.0)
    t.down(1.9)
    t.connected(2.0)
    assert t.poll(3.0) is None  # 3.0 is past the first connection's due time only
    assert t.poll(4.0) is LinkState.ONLINE


def test_zero_hysteresis_is_online_at_connect() -> None:
    t = StateTracker(online_after_s=0.0)
    assert t.connected(5.0) is LinkState.ONLINE


def test_state_values_are_the_contract_strings() -> None:
    assert {s.value for s in LinkState} == {"online", "offline", "connecting", "disabled"}
