"""RecommenderPolicy objects (`vpa-fleet.io/v1alpha1`, crds/recommenderpolicies...) parsed into
typed values. Parsing is split in two: *who* a policy governs (selector, priority) and *what*
it sets. A policy whose "who" cannot be read governs nothing; one whose "what" cannot be read
still wins its VPAs, which then keep their recommendations as written (the user's intent for
them is unknown), and the problem is reported on the policy."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from analytics.model_params import ModelParams
from analytics.quantity import parse_quantity
from recommender.vpa.targets import Selector, SelectorError, from_label_selector

__all__ = [
    "API_PATH",
    "ActuatorOverrides",
    "PolicySettings",
    "RecommenderPolicy",
    "parse_policy",
]

API_PATH = "/apis/vpa-fleet.io/v1alpha1"
"""Where RecommenderPolicies (and checkpoints) are served."""

Scalar = float | int | str | bool


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class _Actuator(_Spec):
    enabled: bool | None = None
    dry_run: bool | None = Field(None, alias="dryRun")
    mode: Literal["patch", "restart-annotation"] | None = None
    deferred_timeout_seconds: int | None = Field(None, ge=0, alias="deferredTimeoutSeconds")
    max_rollouts_per_namespace: int | None = Field(None, ge=0, alias="maxRolloutsPerNamespace")
    cooldown_seconds: int | None = Field(None, ge=0, alias="cooldownSeconds")
    memory_margin: float | None = Field(None, ge=0, alias="memoryMargin")


class _MaxAllowed(_Spec):
    cpu: int | str | None = None
    memory: int | str | None = None


class _Settings(_Spec):
    """The fields of spec that say what a policy sets (the CRD checks ranges as well)."""

    vpa_selector: object = Field(None, alias="vpaSelector")
    priority: object = 0
    strategy: str | None = None
    strategy_params: dict[str, Scalar] | None = Field(None, alias="strategyParams")
    history_days: float | None = Field(None, gt=0, le=365, alias="historyDays")
    status_change_threshold: float | None = Field(None, ge=0, le=1, alias="statusChangeThreshold")
    max_allowed: _MaxAllowed | None = Field(None, alias="maxAllowed")
    actuator: _Actuator | None = None


@dataclass(frozen=True)
class ActuatorOverrides:
    """The fallback actuator's settings a policy overrides (None: the recommender's)."""

    enabled: bool | None = None
    dry_run: bool | None = None
    mode: str | None = None
    deferred_timeout_s: int | None = None
    max_rollouts_per_namespace: int | None = None
    cooldown_s: int | None = None
    memory_margin: float | None = None


@dataclass(frozen=True)
class PolicySettings:
    """What a policy sets; None (or empty) keeps the recommender's setting."""

    strategy: str | None = None
    strategy_params: tuple[tuple[str, Scalar], ...] | None = None
    history: dt.timedelta | None = None
    status_change_threshold: float | None = None
    max_allowed: tuple[tuple[str, str], ...] = ()
    actuator: ActuatorOverrides = field(default_factory=ActuatorOverrides)


@dataclass(frozen=True)
class RecommenderPolicy:
    """One RecommenderPolicy as read. `problem` says why its settings cannot be used (they are
    then empty); `governs` is False when not even its selector could be read."""

    namespace: str
    name: str
    generation: int
    selector: Selector
    priority: int
    settings: PolicySettings
    status: Mapping[str, object]
    problem: str | None = None
    governs: bool = True

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def picks(self, labels: Mapping[str, str]) -> bool:
        return self.governs and self.selector.matches(labels)


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"spec.{'.'.join(str(p) for p in item['loc'])}: "
        + ("unknown field" if item["type"] == "extra_forbidden" else item["msg"])
        + ("" if item["type"] == "extra_forbidden" else f" (got {item['input']!r})")
        for item in error.errors()
    )


def _who(spec: Mapping[str, object], where: str) -> tuple[Selector, int]:
    raw = spec.get("vpaSelector")
    selector = Selector() if raw is None else from_label_selector(raw, f"{where}: spec.vpaSelector")
    priority = spec.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise SelectorError(f"{where}: spec.priority must be an integer, got {priority!r}")
    return selector, priority


def _what(spec: Mapping[str, object], where: str) -> PolicySettings:
    try:
        parsed = _Settings.model_validate(dict(spec))
    except ValidationError as error:
        raise ValueError(f"{where}: {_problems(error)}") from None
    params = parsed.strategy_params
    if params is not None:
        aggregation = sorted(set(params) & set(ModelParams.model_fields))
        if aggregation:
            raise ValueError(
                f"{where}: spec.strategyParams.{aggregation[0]}: how usage is aggregated is the "
                "recommender's setting, not a policy's"
            )
    caps: list[tuple[str, str]] = []
    if parsed.max_allowed is not None:
        for resource in ("cpu", "memory"):
            value = getattr(parsed.max_allowed, resource)
            if value is None:
                continue
            try:
                negative = parse_quantity(str(value)) < 0
            except ValueError as error:
                raise ValueError(f"{where}: spec.maxAllowed.{resource}: {error}") from None
            if negative:
                raise ValueError(f"{where}: spec.maxAllowed.{resource}: {value!r} is negative")
            caps.append((resource, str(value)))
    actuator = parsed.actuator or _Actuator()
    return PolicySettings(
        strategy=parsed.strategy,
        strategy_params=None if params is None else tuple(sorted(params.items())),
        history=None if parsed.history_days is None else dt.timedelta(days=parsed.history_days),
        status_change_threshold=parsed.status_change_threshold,
        max_allowed=tuple(caps),
        actuator=ActuatorOverrides(
            enabled=actuator.enabled,
            dry_run=actuator.dry_run,
            mode=actuator.mode,
            deferred_timeout_s=actuator.deferred_timeout_seconds,
            max_rollouts_per_namespace=actuator.max_rollouts_per_namespace,
            cooldown_s=actuator.cooldown_seconds,
            memory_margin=actuator.memory_margin,
        ),
    )


def parse_policy(obj: Mapping[str, object]) -> RecommenderPolicy:
    """A RecommenderPolicy as the API server returns it. Never raises: problems are kept on
    the result, naming the policy and the field."""
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    namespace, name = str(metadata.get("namespace", "")), str(metadata.get("name", ""))
    generation = metadata.get("generation", 0)
    where = f"RecommenderPolicy {namespace}/{name}"
    status = obj.get("status")

    def policy(
        selector: Selector,
        priority: int = 0,
        settings: PolicySettings | None = None,
        problem: str | None = None,
    ) -> RecommenderPolicy:
        return RecommenderPolicy(
            namespace=namespace,
            name=name,
            generation=generation if isinstance(generation, int) else 0,
            selector=selector,
            priority=priority,
            settings=settings or PolicySettings(),
            status=status if isinstance(status, Mapping) else {},
            problem=problem,
            governs=not selector.matches_nothing,
        )

    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return policy(Selector.nothing(), problem=f"{where}: spec must be an object, got {spec!r}")
    try:
        selector, priority = _who(spec, where)
    except SelectorError as error:
        return policy(Selector.nothing(), problem=str(error))
    try:
        settings = _what(spec, where)
    except ValueError as error:
        return policy(selector, priority, problem=str(error))
    return policy(selector, priority, settings)
