"""The fleet-wide pass limiter's bookkeeping (the class Ray runs as an async actor)."""

from __future__ import annotations

import asyncio

from recommender.fleet.limits import PassLimiter


def test_permits_wait_release_and_count() -> None:
    async def scenario() -> None:
        limiter = PassLimiter({"one": 1})
        await limiter.register("shard-0", "a")
        await limiter.register("shard-1", "b")
        assert await limiter.acquire("two", "shard-0", "a") is False  # no limit: no permit
        assert await limiter.acquire("one", "shard-0", "a") is True
        second = asyncio.ensure_future(limiter.acquire("one", "shard-1", "b"))
        await asyncio.sleep(0.01)
        assert not second.done()  # waits for the permit
        await limiter.release("one", "a")
        assert await second is True
        await limiter.release("one", "b")
        counts = await limiter.counts()
        assert counts == {"one": {"limit": 1, "in_use": 0, "peak": 1, "granted": 2, "waited": 1}}

    asyncio.run(scenario())


def test_a_restarted_actor_frees_what_its_previous_incarnation_held() -> None:
    async def scenario() -> None:
        limiter = PassLimiter({"one": 1})
        await limiter.register("shard-0", "old")
        assert await limiter.acquire("one", "shard-0", "old") is True
        waiting = asyncio.ensure_future(limiter.acquire("one", "shard-0", "old"))
        await asyncio.sleep(0.01)
        assert await limiter.register("shard-0", "new") == 1  # the dead one's permit
        assert await waiting is False  # a request of the dead incarnation gets nothing
        await limiter.release("one", "old")  # a late release of the dead one changes nothing
        assert (await limiter.counts())["one"]["in_use"] == 0
        assert await limiter.acquire("one", "shard-0", "new") is True
        assert (await limiter.counts())["one"]["in_use"] == 1

    asyncio.run(scenario())
