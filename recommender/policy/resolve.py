"""Which RecommenderPolicy governs a VPA, what settings that gives it, and the status a
policy should show. Pure: the loop reads policies from its watch cache and calls these."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from recommender.policy.objects import RecommenderPolicy

__all__ = ["Defaults", "Effective", "choose", "effective", "policy_status", "status_differs"]

VALID = "Valid"


@dataclass(frozen=True)
class Defaults:
    """The recommender's own settings, which a policy overrides field by field."""

    strategy: str
    strategy_params: Mapping[str, object]
    history: dt.timedelta
    status_change_threshold: float
    max_allowed: Mapping[str, str]


@dataclass(frozen=True)
class Effective:
    """The settings one VPA gets, and the policy they come from (None: the recommender's)."""

    policy: RecommenderPolicy | None
    strategy: str
    strategy_params: tuple[tuple[str, object], ...]
    history: dt.timedelta
    status_change_threshold: float
    max_allowed: tuple[tuple[str, str], ...]

    @property
    def estimator_key(self) -> tuple[str, tuple[tuple[str, object], ...]]:
        """VPAs with equal keys share estimators (one engine pass each)."""
        return self.strategy, self.strategy_params


def choose(
    policies: Iterable[RecommenderPolicy], labels: Mapping[str, str]
) -> RecommenderPolicy | None:
    """The policy governing a VPA with these labels: the highest priority of those picking
    it, then the first name in alphabetical order; None when no policy picks it."""
    candidates = [policy for policy in policies if policy.picks(labels)]
    return min(candidates, key=lambda p: (-p.priority, p.name), default=None)


def effective(defaults: Defaults, policy: RecommenderPolicy | None) -> Effective:
    """The recommender's settings overridden by the policy's.

    Strategy parameters a policy leaves out are the recommender's when the strategy is the
    recommender's, and the strategy's own defaults otherwise (the recommender's parameters
    belong to another strategy); those it gives are laid over them.
    """
    settings = policy.settings if policy is not None else None
    strategy = (settings.strategy if settings else None) or defaults.strategy
    params: dict[str, object] = (
        dict(defaults.strategy_params) if strategy == defaults.strategy else {}
    )
    if settings is not None and settings.strategy_params is not None:
        params.update(settings.strategy_params)
    caps = dict(defaults.max_allowed)
    if settings is not None:
        caps.update(settings.max_allowed)
    threshold = settings.status_change_threshold if settings else None
    return Effective(
        policy=policy,
        strategy=strategy,
        strategy_params=tuple(sorted(params.items())),
        history=(settings.history if settings else None) or defaults.history,
        status_change_threshold=(
            defaults.status_change_threshold if threshold is None else threshold
        ),
        max_allowed=tuple(sorted(caps.items())),
    )


def policy_status(
    policy: RecommenderPolicy, problem: str | None, matched: int, now: str
) -> dict[str, object]:
    """The status the policy should show: `Valid` with the problem, if any, and how many VPAs
    it governs. The condition's transition time moves only when its status changes."""
    state = "False" if problem else "True"
    previous = _condition(policy.status, VALID)
    moved = previous is None or previous.get("status") != state
    condition = {
        "type": VALID,
        "status": state,
        "reason": "InvalidSpec" if problem else "Accepted",
        "message": problem or "the recommender applies this policy",
        "lastTransitionTime": now
        if moved or previous is None
        else previous.get("lastTransitionTime", now),
    }
    return {
        "observedGeneration": policy.generation,
        "matchedVPAs": matched,
        "conditions": [condition],
    }


def status_differs(policy: RecommenderPolicy, desired: Mapping[str, object]) -> bool:
    """Whether the status on the object says something else than `desired` (a write is due)."""
    current = policy.status
    return any(current.get(key) != value for key, value in desired.items())


def _condition(status: Mapping[str, object], kind: str) -> Mapping[str, object] | None:
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return None
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == kind:
            return condition
    return None
