"""VPA status conditions exactly as the stock recommender maintains them
(upstream `model/vpa.go`: `vpaConditionsMap.Set`, `updateConditionsLocked`, `AsList`)."""

from __future__ import annotations

from collections.abc import Iterable

from recommender.vpa.objects import Condition, ConditionType

NO_PODS_MATCHED_REASON = "NoPodsMatched"
NO_PODS_MATCHED_MESSAGE = "No pods match this VPA object"

HISTORY_STALE = "HistoryStale"
"""vpa-fleet's own condition (upstream has none for it): True while the VPA's usage history
cannot be read and its recommendation is kept as written; removed once history is read."""
HISTORY_STALE_REASON = "HistoryUnavailable"


def set_condition(
    conditions: dict[str, Condition],
    condition_type: str,
    *,
    status: bool,
    reason: str,
    message: str,
    now: str,
) -> None:
    """Set a condition; `lastTransitionTime` is kept when the status does not flip."""
    new_status = "True" if status else "False"
    old = conditions.get(condition_type)
    transition = old.last_transition_time if old and old.status == new_status else now
    conditions[condition_type] = Condition(
        type=condition_type,
        status=new_status,
        lastTransitionTime=transition,
        reason=reason,
        message=message,
    )


def updated_conditions(
    current: Iterable[Condition],
    *,
    pods_matched: bool,
    has_recommendation: bool,
    now: str,
    config_unsupported: str | None = None,
) -> tuple[Condition, ...]:
    """The conditions after one recommender pass, sorted by type like upstream.

    `now` is an RFC 3339 timestamp (seconds precision, as `metav1.Time` serialises).
    `config_unsupported`, when given, is the message of a True ConfigUnsupported condition
    (a targetRef that cannot be resolved); otherwise that condition is removed.
    ConfigDeprecated is only ever removed, as upstream does.
    """
    conditions = {c.type: c for c in current}
    if config_unsupported is None:
        conditions.pop(ConditionType.CONFIG_UNSUPPORTED, None)
    else:
        set_condition(
            conditions,
            ConditionType.CONFIG_UNSUPPORTED,
            status=True,
            reason="",
            message=config_unsupported,
            now=now,
        )
    conditions.pop(ConditionType.CONFIG_DEPRECATED, None)

    reason = message = ""
    if pods_matched:
        conditions.pop(ConditionType.NO_PODS_MATCHED, None)
    else:
        reason, message = NO_PODS_MATCHED_REASON, NO_PODS_MATCHED_MESSAGE
        set_condition(
            conditions,
            ConditionType.NO_PODS_MATCHED,
            status=True,
            reason=reason,
            message=message,
            now=now,
        )
    set_condition(
        conditions,
        ConditionType.RECOMMENDATION_PROVIDED,
        status=has_recommendation,
        reason="" if has_recommendation else reason,
        message="" if has_recommendation else message,
        now=now,
    )
    return tuple(conditions[t] for t in sorted(conditions))


def stale_conditions(
    current: Iterable[Condition], *, message: str, now: str
) -> tuple[Condition, ...]:
    """The conditions with HistoryStale set (its transition time says since when)."""
    conditions = {c.type: c for c in current}
    set_condition(
        conditions,
        HISTORY_STALE,
        status=True,
        reason=HISTORY_STALE_REASON,
        message=message,
        now=now,
    )
    return tuple(conditions[t] for t in sorted(conditions))
