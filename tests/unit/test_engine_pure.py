"""The pure parts of the engine: state machine, backoff schedule, breaker, ids, serde."""

from __future__ import annotations

import random

import pytest

from stalwart.engine import TRANSITIONS, BreakerPolicy, BreakerState, RetryPolicy, RunStatus, check_transition
from stalwart.engine._breaker import breaker_allow, breaker_failure, breaker_success
from stalwart.engine._ids import new_id
from stalwart.engine._retry import backoff_ceiling, next_delay
from stalwart.engine._serde import decode, encode
from stalwart.errors import InvalidTransition, ProviderError, StepError, ToolError


class TestStateMachine:
    def test_every_status_has_a_row(self) -> None:
        assert set(TRANSITIONS) == set(RunStatus)

    @pytest.mark.parametrize(
        ("src", "dst"),
        [("PENDING", "RUNNING"), ("RUNNING", "WAITING"), ("WAITING", "RUNNING"), ("RUNNING", "COMPLETED"),
         ("RUNNING", "DEAD_LETTER"), ("DEAD_LETTER", "PENDING"), ("RUNNING", "PENDING"), ("PENDING", "CANCELLED")],
    )
    def test_legal(self, src: str, dst: str) -> None:
        assert check_transition(src, dst) == RunStatus(dst)

    @pytest.mark.parametrize(
        ("src", "dst"),
        [("COMPLETED", "RUNNING"), ("FAILED", "PENDING"), ("CANCELLED", "RUNNING"), ("PENDING", "COMPLETED"),
         ("WAITING", "COMPLETED"), ("COMPLETED", "COMPLETED")],
    )
    def test_illegal_raises(self, src: str, dst: str) -> None:
        with pytest.raises(InvalidTransition):
            check_transition(src, dst)

    def test_terminal_states_have_no_exit_but_dead_letter_retry(self) -> None:
        for s in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED):
            assert TRANSITIONS[s] == frozenset()
        assert TRANSITIONS[RunStatus.DEAD_LETTER] == frozenset({RunStatus.PENDING})

    def test_unknown_status(self) -> None:
        with pytest.raises(InvalidTransition):
            check_transition("RUNNING", "EXPLODED")


class TestBackoff:
    def test_ceiling_grows_exponentially_and_caps(self) -> None:
        p = RetryPolicy(max_attempts=10, initial_s=0.5, multiplier=2, max_s=3)
        assert [backoff_ceiling(p, n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3, 3]

    def test_full_jitter_stays_within_ceiling_and_varies(self) -> None:
        p = RetryPolicy(max_attempts=10, initial_s=1.0, max_s=100)
        rng = random.Random(7)
        delays = [next_delay(p, 3, ToolError("x"), rng) for _ in range(200)]
        assert all(d is not None and 0 <= d <= 4.0 for d in delays)
        assert max(delays) > 3.0 and min(delays) < 1.0  # spread over the whole interval

    def test_last_attempt_and_non_retryable_give_up(self) -> None:
        p = RetryPolicy(max_attempts=3)
        rng = random.Random(1)
        assert next_delay(p, 3, ToolError("x"), rng) is None
        assert next_delay(p, 1, ToolError("x", retryable=False), rng) is None
        assert next_delay(p, 2, StepError("x"), rng) is not None

    def test_retry_after_is_honoured_and_capped(self) -> None:
        p = RetryPolicy(max_attempts=5, max_s=10)
        rng = random.Random(1)
        assert next_delay(p, 1, ProviderError("429", status=429, retry_after=7.5), rng) == 7.5
        assert next_delay(p, 1, ProviderError("429", status=429, retry_after=70), rng) == 10

    def test_bad_policy(self) -> None:
        with pytest.raises(ValueError):
            RetryPolicy(max_attempts=0)


class TestBreaker:
    P = BreakerPolicy(failure_threshold=3, reset_s=10)

    def test_opens_after_threshold_consecutive_failures(self) -> None:
        s = BreakerState()
        for t in range(2):
            s = breaker_failure(s, t, self.P)
            assert s.state == "closed"
        s = breaker_failure(s, 2, self.P)
        assert s.state == "open"
        allowed, _, retry_after = breaker_allow(s, 5, self.P)
        assert not allowed and retry_after == pytest.approx(7)

    def test_success_resets_the_count(self) -> None:
        s = breaker_failure(breaker_failure(BreakerState(), 0, self.P), 1, self.P)
        s = breaker_success(s, 2)
        assert s == BreakerState("closed", 0, 2)
        assert breaker_failure(s, 3, self.P).state == "closed"

    def test_half_open_lets_one_trial_then_closes_or_reopens(self) -> None:
        s = BreakerState("open", 3, 0)
        allowed, s2, _ = breaker_allow(s, 10, self.P)
        assert allowed and s2.state == "half_open"
        allowed_again, _, _ = breaker_allow(s2, 11, self.P)
        assert not allowed_again  # the trial is still out
        assert breaker_success(s2, 12).state == "closed"
        reopened = breaker_failure(s2, 12, self.P)
        assert reopened.state == "open" and reopened.changed_at == 12

    def test_state_round_trips(self) -> None:
        s = BreakerState("open", 4, 12.5)
        assert BreakerState.from_dict(s.to_dict()) == s
        assert BreakerState.from_dict(None) == BreakerState()


def test_ids_are_time_ordered_and_unique() -> None:
    a = new_id(1000.0, b"\x00" * 10)
    b = new_id(1000.001, b"\x00" * 10)
    assert len(a) == 32 and a < b
    assert len({new_id() for _ in range(1000)}) == 1000
    assert a[12] == "7"  # UUIDv7 version nibble


def test_serde_round_trips_typed_values() -> None:
    from pydantic import BaseModel

    class Order(BaseModel):
        id: str
        cents: int

    text = encode(Order(id="A", cents=5))
    assert decode(text, Order) == Order(id="A", cents=5)
    assert decode(encode({"a": [1, 2]})) == {"a": [1, 2]}
    assert decode(None) is None
