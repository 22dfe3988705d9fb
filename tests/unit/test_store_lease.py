"""The leader lease decision, pure: first term, renewal, refusal, takeover after expiry."""

from __future__ import annotations

import pytest

from stalwart.store import LeaderLease, decide_lease


def test_first_holder_starts_term_one() -> None:
    lease = decide_lease(None, "fleet", "a", 100.0, 15.0)
    assert lease == LeaderLease("fleet", "a", 1, 100.0, 115.0)
    assert lease.held_by("a", 114.9) and not lease.held_by("a", 115.0) and not lease.held_by("b", 100.0)


def test_holder_renews_within_its_term() -> None:
    cur = LeaderLease("fleet", "a", 4, 100.0, 115.0)
    assert decide_lease(cur, "fleet", "a", 110.0, 15.0) == LeaderLease("fleet", "a", 4, 100.0, 125.0)
    # a renewal never shortens a lease (a caller with a slower clock)
    assert decide_lease(cur, "fleet", "a", 99.0, 10.0) == cur


def test_another_holder_is_refused_until_expiry_then_takes_a_new_term() -> None:
    cur = LeaderLease("fleet", "a", 4, 100.0, 115.0)
    assert decide_lease(cur, "fleet", "b", 114.99, 15.0) is None
    assert decide_lease(cur, "fleet", "b", 115.0, 15.0) == LeaderLease("fleet", "b", 5, 115.0, 130.0)


def test_a_lapsed_holder_starts_a_new_term_too() -> None:
    cur = LeaderLease("fleet", "a", 4, 100.0, 115.0)
    assert decide_lease(cur, "fleet", "a", 120.0, 15.0) == LeaderLease("fleet", "a", 5, 120.0, 135.0)


def test_placeholder_and_released_rows_are_free() -> None:
    never = LeaderLease("fleet", "", 0, 0.0, 0.0)
    assert decide_lease(never, "fleet", "a", 1.0, 5.0) == LeaderLease("fleet", "a", 1, 1.0, 6.0)
    released = LeaderLease("fleet", "a", 7, 50.0, 60.0)
    assert decide_lease(released, "fleet", "b", 60.0, 5.0) == LeaderLease("fleet", "b", 8, 60.0, 65.0)


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        decide_lease(None, "fleet", "a", 1.0, 0.0)
