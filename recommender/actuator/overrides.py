"""A RecommenderPolicy's actuator fields over the actuator's settings (pure)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from recommender.actuator.plan import Method, Policy
from recommender.policy.objects import ActuatorOverrides


def with_overrides(base: Policy, overrides: ActuatorOverrides) -> Policy | None:
    """`base` with the fields the policy sets; None when the policy turns the actuator off
    for its VPAs (`enabled: false`). `enabled: true` cannot turn on an actuator the
    recommender runs without: it runs only with `actuator.enabled` in the settings."""
    if overrides.enabled is False:
        return None
    changes: dict[str, object] = {}
    if overrides.dry_run is not None:
        changes["dry_run"] = overrides.dry_run
    if overrides.mode is not None:
        changes["method"] = Method(overrides.mode)
    if overrides.deferred_timeout_s is not None:
        changes["deferred_timeout"] = dt.timedelta(seconds=overrides.deferred_timeout_s)
    if overrides.max_rollouts_per_namespace is not None:
        changes["max_rollouts_per_namespace"] = overrides.max_rollouts_per_namespace
    if overrides.cooldown_s is not None:
        changes["cooldown"] = dt.timedelta(seconds=overrides.cooldown_s)
    if overrides.memory_margin is not None:
        changes["memory_margin"] = overrides.memory_margin
    return dataclasses.replace(base, **changes) if changes else base  # type: ignore[arg-type]
