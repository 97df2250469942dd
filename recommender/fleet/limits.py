"""Per-cluster concurrency limits across the whole fleet.

A namespace pass (a namespace's targets, its Prometheus queries one after the other, the
engine, its status writes) runs on one ShardActor; with N ShardActors holding shards of a
cluster, up to N passes hit that cluster's API server and Prometheus at once. A cluster's
`max_concurrent_passes` caps that number fleet-wide: every pass takes a permit from one
`PassLimiter` actor and gives it back when done; passes over the cap wait for a permit (in the
thread of their cluster, so other clusters go on).

Permits of an actor that died are given back when its restart registers again: each ShardActor
incarnation registers under its name with a fresh id, which frees what the previous incarnation
held and makes its waiting requests come back empty.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping

__all__ = ["LIMITER_NAME", "PassLimiter"]

LIMITER_NAME = "pass-limiter"


class PassLimiter:
    """Counting semaphores by cluster (a Ray async actor: waiting requests cost no thread)."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self.limits = dict(limits)
        self.in_use: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.granted: Counter[str] = Counter()
        self.waited: Counter[str] = Counter()
        self.incarnations: dict[str, str] = {}
        self.held: Counter[tuple[str, str]] = Counter()
        self._condition: asyncio.Condition | None = None

    def _cond(self) -> asyncio.Condition:
        if self._condition is None:  # bound to the actor's event loop on first use
            self._condition = asyncio.Condition()
        return self._condition

    async def register(self, holder: str, incarnation: str) -> int:
        """A (re)started ShardActor: free what its previous incarnation held; how many."""
        cond = self._cond()
        async with cond:
            previous = self.incarnations.get(holder)
            self.incarnations[holder] = incarnation
            freed = 0
            for (owner, cluster), count in list(self.held.items()):
                if owner == previous:
                    self.in_use[cluster] -= count
                    freed += count
                    del self.held[(owner, cluster)]
            cond.notify_all()
            return freed

    async def acquire(self, cluster: str, holder: str, incarnation: str) -> bool:
        """Wait for a permit; False when none is needed or the caller is a dead incarnation."""
        limit = self.limits.get(cluster)
        if limit is None:
            return False
        cond = self._cond()
        async with cond:
            if self.in_use[cluster] >= limit:
                self.waited[cluster] += 1
            await cond.wait_for(lambda: self.in_use[cluster] < limit)
            if self.incarnations.get(holder) != incarnation:
                return False
            self.in_use[cluster] += 1
            self.held[(incarnation, cluster)] += 1
            self.granted[cluster] += 1
            self.peak[cluster] = max(self.peak[cluster], self.in_use[cluster])
            return True

    async def release(self, cluster: str, incarnation: str) -> None:
        cond = self._cond()
        async with cond:
            if self.held[(incarnation, cluster)] > 0:
                self.held[(incarnation, cluster)] -= 1
                self.in_use[cluster] -= 1
                cond.notify_all()

    async def counts(self) -> dict[str, dict[str, int]]:
        """By cluster: limit, permits in use, the most ever in use, granted, requests that
        had to wait."""
        return {
            cluster: {
                "limit": limit,
                "in_use": self.in_use[cluster],
                "peak": self.peak[cluster],
                "granted": self.granted[cluster],
                "waited": self.waited[cluster],
            }
            for cluster, limit in sorted(self.limits.items())
        }
