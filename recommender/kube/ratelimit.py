"""A token bucket for the requests of one client, like client-go's `--kube-api-qps` and
`--kube-api-burst`: up to `burst` requests at once, then `qps` per second on average. A
recommender for thousands of VPAs must not flood the API server it serves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    """Requests wait in `acquire` until the bucket holds a token; thread-safe."""

    qps: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    waited_s: float = field(default=0.0, init=False)
    """Time spent waiting so far (for reports)."""
    _tokens: float = field(init=False)
    _updated: float = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        if not self.qps > 0:
            raise ValueError(f"qps must be > 0, got {self.qps!r}")
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst!r}")
        self._tokens = float(self.burst)
        self._updated = self.clock()

    def acquire(self) -> None:
        """Take one token, waiting for it when the bucket is empty. A waiting caller reserves
        its token first, so that callers are served in turn."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.qps)
            self._updated = now
            self._tokens -= 1
            wait = -self._tokens / self.qps if self._tokens < 0 else 0.0
            self.waited_s += wait
        if wait > 0:
            self.sleep(wait)
