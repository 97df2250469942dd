"""Rendezvous hashing: stable, balanced, and moving only what it must."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recommender.fleet.plan import Shard, assign, moved

SHARDS = [Shard(f"c{c}", f"ns-{n:03d}") for c in range(3) for n in range(300)]


def test_same_input_same_plan_whatever_the_order() -> None:
    assert assign(SHARDS, ["a", "b", "c"]) == assign(reversed(SHARDS), ["c", "a", "b"])


def test_balanced() -> None:
    counts = Counter(assign(SHARDS, ["a", "b", "c"]).values())
    assert set(counts) == {"a", "b", "c"}
    assert all(250 <= n <= 350 for n in counts.values()), counts


def test_adding_an_actor_moves_only_what_it_wins() -> None:
    two = assign(SHARDS, ["a", "b"])
    three = assign(SHARDS, ["a", "b", "c"])
    changed = moved(two, three)
    assert all(three[s] == "c" for s in changed)
    assert 0.25 <= len(changed) / len(SHARDS) <= 0.42  # about a third


@given(
    st.lists(st.text(min_size=1, max_size=5), min_size=2, max_size=6, unique=True),
    st.lists(st.tuples(st.text(max_size=4), st.text(max_size=6)), max_size=40),
)
def test_removing_an_actor_moves_only_its_shards(
    actors: list[str], pairs: list[tuple[str, str]]
) -> None:
    shards = {Shard(c, n) for c, n in pairs}
    before = assign(shards, actors)
    gone = actors[0]
    after = assign(shards, actors[1:])
    assert moved(before, after) == {s for s, owner in before.items() if owner == gone}


def test_bad_actor_lists() -> None:
    with pytest.raises(ValueError, match="no actor"):
        assign(SHARDS, [])
    with pytest.raises(ValueError, match="unique"):
        assign(SHARDS, ["a", "a"])
