"""Guards between the engine and the status write, for users who want recommendations to move
carefully: a largest step per write up and down, memory never lowered below the observed peak
plus a margin, and no lowering of memory in a tick that saw an OOM kill. Each guard only holds
a target back towards the value already written; none invents a value. The VPA's policy caps
(min/maxAllowed) are applied after these and win. All guards are off by default, which keeps
the `vpa` strategy's results identical to the stock recommender's."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from analytics.quantity import (
    format_cpu_millicores,
    format_memory_bytes,
    parse_cpu_millicores,
    parse_memory_bytes,
)
from recommender.vpa.objects import RecommendedContainerResources, RecommendedPodResources

__all__ = ["Observed", "SafetyLimits", "guard"]


@dataclass(frozen=True)
class SafetyLimits:
    """`max_increase` and `max_decrease`: the largest relative move of a target per write
    (0.5: up to 1.5x, down to 0.5x of the written value); `memory_peak_margin`: memory is not
    lowered below the observed peak times (1 + margin). None: no such guard."""

    max_increase: float | None = None
    max_decrease: float | None = None
    memory_peak_margin: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_increase", "memory_peak_margin"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if self.max_decrease is not None and not 0 <= self.max_decrease <= 1:
            raise ValueError(f"max_decrease must be within [0, 1], got {self.max_decrease!r}")

    @property
    def active(self) -> bool:
        return any(
            v is not None for v in (self.max_increase, self.max_decrease, self.memory_peak_margin)
        )


@dataclass(frozen=True)
class Observed:
    """What the recommender saw of one container: its memory peak (bytes; None: unknown) and
    whether this tick brought an OOM kill."""

    memory_peak_bytes: int | None = None
    oom_killed: bool = False


_PARSE = {"cpu": parse_cpu_millicores, "memory": parse_memory_bytes}
_FORMAT = {"cpu": format_cpu_millicores, "memory": format_memory_bytes}


def _guarded(
    resource: str, new: int, old: int | None, observed: Observed, limits: SafetyLimits
) -> int:
    if old is None:
        return new  # nothing written yet: nothing to move carefully from
    value = new
    if resource == "memory" and value < old:
        if observed.oom_killed:
            value = old
        elif limits.memory_peak_margin is not None and observed.memory_peak_bytes is not None:
            floor = math.ceil(observed.memory_peak_bytes * (1 + limits.memory_peak_margin))
            value = max(value, min(old, floor))
    if limits.max_decrease is not None:
        value = max(value, math.ceil(old * (1 - limits.max_decrease)))
    if limits.max_increase is not None:
        value = min(value, max(old, math.floor(old * (1 + limits.max_increase))))
    return value


def guard(
    recommendations: Sequence[RecommendedContainerResources],
    written: RecommendedPodResources | None,
    observed: Mapping[str, Observed],
    limits: SafetyLimits,
) -> list[RecommendedContainerResources]:
    """The recommendations with each container's target held back by the guards, relative to
    the `written` one; bounds are widened to keep lowerBound <= target <= upperBound."""
    if not limits.active and not any(o.oom_killed for o in observed.values()):
        return list(recommendations)
    previous = {
        entry.container_name: entry.target
        for entry in (written.container_recommendations if written else ())
    }
    guarded = []
    for entry in recommendations:
        old_target = previous.get(entry.container_name, {})
        target, lower, upper = dict(entry.target), dict(entry.lower_bound), dict(entry.upper_bound)
        seen = observed.get(entry.container_name, Observed())
        for resource, quantity in entry.target.items():
            if resource not in _PARSE:
                continue
            parse, fmt = _PARSE[resource], _FORMAT[resource]
            try:
                old = parse(old_target[resource]) if resource in old_target else None
            except ValueError:
                old = None  # an unreadable written value is replaced, not followed
            new = parse(quantity)
            value = _guarded(resource, new, old, seen, limits)
            if value == new:
                continue
            target[resource] = fmt(value)
            if resource in lower and parse(lower[resource]) > value:
                lower[resource] = target[resource]
            if resource in upper and parse(upper[resource]) < value:
                upper[resource] = target[resource]
        guarded.append(
            entry.model_copy(update={"target": target, "lower_bound": lower, "upper_bound": upper})
        )
    return guarded
