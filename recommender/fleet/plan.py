"""Which actor owns which shard: rendezvous (highest-random-weight) hashing.

Each (shard, actor) pair gets a pseudo-random weight from a stable hash; a shard goes to the
actor with the highest weight. Adding an actor moves only the shards the new actor wins (about
1/n of them); removing one moves only the shards it held. Weights come from BLAKE2b, so every
process computes the same plan without talking to the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Shard", "assign", "moved"]


@dataclass(frozen=True, order=True)
class Shard:
    """The unit of work and state: one namespace of one cluster."""

    cluster: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.cluster}/{self.namespace}"


def _weight(shard: Shard, actor: str) -> int:
    key = f"{shard.cluster}\x00{shard.namespace}\x00{actor}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def assign(shards: Iterable[Shard], actors: Sequence[str]) -> dict[Shard, str]:
    """The owner of every shard; ties (practically impossible) go to the first actor name."""
    if not actors:
        raise ValueError("cannot assign shards to no actor")
    if len(set(actors)) != len(actors):
        raise ValueError(f"actor names must be unique, got {list(actors)}")
    ordered = sorted(actors)
    return {
        shard: max(ordered, key=lambda actor: (_weight(shard, actor), actor)) for shard in shards
    }


def moved(before: Mapping[Shard, str], after: Mapping[Shard, str]) -> set[Shard]:
    """Shards present in both plans whose owner changed."""
    return {shard for shard, owner in after.items() if shard in before and before[shard] != owner}
