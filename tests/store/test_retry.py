"""`with_retries`: transient failures retried with jittered backoff under a deadline; permanent ones at once."""

from __future__ import annotations

import pytest

from fastload.errors import StoreError
from fastload.store.retry import RetryPolicy, with_retries


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self):
        return self.now


def test_a_transient_failure_is_retried_until_it_passes():
    clock, calls = FakeClock(), []

    def request():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset")
        return b"ok"

    assert with_retries(request, what="read", url="s3://b/x", policy=RetryPolicy(), sleep=clock.sleep, clock=clock) == b"ok"
    assert len(calls) == 3 and len(clock.sleeps) == 2
    assert all(0 <= s <= RetryPolicy().max_backoff_s for s in clock.sleeps)


def test_a_permanent_failure_is_raised_at_once():
    clock, calls = FakeClock(), []

    def request():
        calls.append(1)
        raise StoreError("s3://b/x does not exist")

    with pytest.raises(StoreError, match="does not exist"):
        with_retries(request, what="read", url="s3://b/x", policy=RetryPolicy(), sleep=clock.sleep, clock=clock)
    assert len(calls) == 1 and clock.sleeps == []


def test_persistent_failures_stop_at_the_deadline_with_a_message_naming_the_url_and_the_last_error():
    clock = FakeClock()
    policy = RetryPolicy(deadline_s=10.0, max_attempts=1000, backoff_s=1.0, max_backoff_s=4.0)

    def request():
        clock.now += 0.5  # each attempt takes half a second
        raise TimeoutError("no answer")

    with pytest.raises(StoreError, match=r"could not read s3://b/x: \d+ attempts failed in .* \(last: TimeoutError: no answer\)"):
        with_retries(request, what="read", url="s3://b/x", policy=policy, sleep=clock.sleep, clock=clock)
    assert clock.now <= policy.deadline_s + 0.5


def test_attempts_are_bounded():
    clock, calls = FakeClock(), []

    def request():
        calls.append(1)
        raise OSError("503 SlowDown")

    with pytest.raises(StoreError):
        with_retries(request, what="read", url="s3://b/x", policy=RetryPolicy(max_attempts=4, deadline_s=1e9), sleep=clock.sleep, clock=clock)
    assert len(calls) == 4
