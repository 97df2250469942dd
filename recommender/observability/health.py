"""Liveness and readiness of `vpa-fleet run`, for the kubelet's probes.

The loop beats once per step: a tick when leading, a wait for the Lease otherwise. `live` is
false once no beat came for `stale_after_s` (a loop wedged in a call that never returns: the
kubelet restarts the container); `ready` is true once the process has started (Ray up,
checkpoints restored, the election running) and while it is live. Served as /healthz and
/readyz beside /metrics (`recommender.observability.metrics`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Health"]


@dataclass
class Health:
    """What the probes report; safe to use from the loop and the HTTP server's threads."""

    stale_after_s: float
    clock: Callable[[], float] = time.monotonic
    _started: bool = False
    _last_beat: float = field(default=0.0)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # Start-up counts as progress: a start that hangs fails liveness like a tick.
        self._last_beat = self.clock()

    def beat(self) -> None:
        """The loop made progress."""
        with self._lock:
            self._last_beat = self.clock()

    def mark_started(self) -> None:
        """Start-up is over: the loop runs."""
        with self._lock:
            self._started = True
            self._last_beat = self.clock()

    def live(self) -> tuple[bool, str]:
        """(live, why): false once the last beat is older than `stale_after_s`."""
        with self._lock:
            age = self.clock() - self._last_beat
        if age > self.stale_after_s:
            return False, (
                f"no progress for {age:.0f} s (more than {self.stale_after_s:g} s): "
                "the loop is stuck"
            )
        return True, f"last progress {age:.0f} s ago"

    def ready(self) -> tuple[bool, str]:
        """(ready, why): started and live."""
        with self._lock:
            started = self._started
        if not started:
            return False, "starting: Ray, checkpoints and the election are not up yet"
        return self.live()
