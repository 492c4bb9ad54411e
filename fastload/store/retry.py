"""Bounded retries with a deadline: a request to object storage fails loudly, never hangs.

Every request runs under `RetryPolicy`: each attempt has its own timeout
(set on the client), failures that may pass (resets, timeouts, 5xx, SlowDown)
are retried with exponential backoff and full jitter, and the whole call
gives up at `deadline_s`, raising `StoreError` with the URL, what failed
and what to check. Failures that will not pass by waiting (missing object,
denied, bad credentials) raise at once.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from fastload.errors import StoreError

__all__ = ["RetryPolicy", "with_retries"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to try one request.

    attempt_timeout_s: one attempt's limit (connect + the whole response).
    deadline_s: no retry starts after it; an attempt under way may run on to
        its own timeout, so a call ends within deadline_s + attempt_timeout_s
        (60 s with the defaults).
    max_attempts: attempts in all.
    backoff_s / max_backoff_s: the wait before retry k is uniform in
        [0, min(max_backoff_s, backoff_s · 2^k)] (full jitter: ranks that
        failed together do not retry together).
    """

    attempt_timeout_s: float = 15.0
    deadline_s: float = 45.0
    max_attempts: int = 8
    backoff_s: float = 0.1
    max_backoff_s: float = 5.0

    def wait(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.max_backoff_s, self.backoff_s * 2**attempt))


_rng = random.Random()


def with_retries(request: Callable[[], T], *, what: str, url: str, policy: RetryPolicy, sleep=time.sleep, clock=time.monotonic) -> T:
    """`request()`, retried under `policy`; `what` and `url` name it in the error ("read bytes 0-99 of", URL)."""
    start = clock()
    failures: list[str] = []
    for attempt in range(policy.max_attempts):
        try:
            return request()
        except StoreError:
            raise  # permanent: the store already said what and where
        except Exception as exc:  # transient by elimination: each store raises its permanent failures as StoreError
            failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200])
        left = policy.deadline_s - (clock() - start)
        pause = policy.wait(attempt, _rng)
        if attempt + 1 == policy.max_attempts or left <= pause:
            break
        sleep(pause)
    elapsed = clock() - start
    raise StoreError(
        f"could not {what} {url}: {len(failures)} attempts failed in {elapsed:.1f} s (last: {failures[-1]}). "
        "Check that the endpoint is reachable and healthy (AWS_ENDPOINT_URL, GOOGLE_BASE_URL, AZURE_STORAGE_ENDPOINT or storage_options), and the network; "
        "the limits are fastload.RetryPolicy(attempt_timeout_s=, deadline_s=, max_attempts=), passed as retry=."
    )
