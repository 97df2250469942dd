"""Which VPAs a recommender owns (upstream `cluster_feeder.go:filterVPAs`, AEP-3919)."""

from __future__ import annotations

from recommender.vpa.objects import VerticalPodAutoscaler

DEFAULT_RECOMMENDER_NAME = "default"
"""The stock recommender's name: it owns VPAs that name it and VPAs that name nobody."""


def is_selected(vpa: VerticalPodAutoscaler, recommender_name: str) -> bool:
    """True when `recommender_name` must compute this VPA's recommendation.

    A recommender with a name other than `default` owns only VPAs whose `spec.recommenders`
    lists that name; a VPA with no recommenders belongs to the stock recommender.
    """
    names = [selector.name for selector in vpa.spec.recommenders]
    if not names:
        return recommender_name == DEFAULT_RECOMMENDER_NAME
    return recommender_name in names
