"""The loop's view of RecommenderPolicies: a watch cache of them, which one governs each VPA,
the estimators each set of settings needs (built once), and the policies' status writes.

A cluster without the RecommenderPolicy CRD is served without policies (a warning says so):
policies are optional, recommendations are not."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Mapping

from analytics.model_params import ModelParams
from analytics.strategies import PodEstimators, build_estimators
from recommender.kube.cache import ListWatchCache
from recommender.kube.rest import MERGE_PATCH, KubeApiError, KubeClient
from recommender.policy.objects import API_PATH, RecommenderPolicy, parse_policy
from recommender.policy.resolve import (
    Defaults,
    Effective,
    choose,
    effective,
    policy_status,
    status_differs,
)
from recommender.vpa.objects import VerticalPodAutoscaler

log = logging.getLogger(__name__)

RESOURCE = "recommenderpolicies"


class PolicyBook:
    """Policies of the namespaces in `scopes` (paths under `/namespaces/...`, or "" for all)."""

    def __init__(
        self,
        kube: KubeClient,
        scopes: Collection[str],
        defaults: Defaults,
        aggregation: ModelParams,
    ) -> None:
        self.kube = kube
        self.defaults = defaults
        self.aggregation = aggregation
        self.caches = [ListWatchCache(kube, f"{API_PATH}{scope}/{RESOURCE}") for scope in scopes]
        self.served = False
        self._estimators: dict[tuple[str, tuple[tuple[str, object], ...]], PodEstimators] = {}
        self._build_problems: dict[tuple[str, tuple[tuple[str, object], ...]], str] = {}
        self._governed: Counter[str] = Counter()
        self._reported: dict[str, tuple[int, str]] = {}

    # -- life cycle ----------------------------------------------------------------------------

    def start(self, timeout_s: float) -> None:
        """Watch the policies when the API server serves them."""
        try:
            resources = self.kube.get(API_PATH).get("resources") or []
        except KubeApiError as error:
            if not error.not_found:
                raise
            resources = []
        self.served = any(item.get("name") == RESOURCE for item in resources)
        if not self.served:
            log.warning(
                "the API server does not serve %s (%s); recommending without policies "
                "(install crds/ to use them)",
                RESOURCE,
                API_PATH,
            )
            return
        for cache in self.caches:
            cache.start()
        for cache in self.caches:
            if not cache.wait_synced(timeout_s):
                raise TimeoutError(f"listing {cache.path} did not finish within {timeout_s:g} s")

    def stop(self) -> None:
        for cache in self.caches:
            cache.stop()

    # -- reading -------------------------------------------------------------------------------

    def policies(self, owned: Collection[str] | None = None) -> list[RecommenderPolicy]:
        """Every policy seen (of the `owned` namespaces only, when given), parsed."""
        if not self.served:
            return []
        found = [parse_policy(obj) for cache in self.caches for obj in cache.items()]
        return [p for p in found if owned is None or p.namespace in owned]

    def settle(
        self, vpas: Mapping[str, VerticalPodAutoscaler], policies: Collection[RecommenderPolicy]
    ) -> dict[str, Effective]:
        """The settings of each VPA (by name) of one namespace, given that namespace's
        policies; each policy's count of governed VPAs grows for the status write."""
        settled = {}
        for name, vpa in vpas.items():
            policy = choose(policies, vpa.metadata.labels)
            if policy is not None:
                self._governed[policy.key] += 1
            settled[name] = effective(self.defaults, policy)
        return settled

    def problem(self, settings: Effective) -> str | None:
        """Why these settings cannot be used (the policy is invalid), or None."""
        policy = settings.policy
        if policy is not None and policy.problem:
            return policy.problem
        key = settings.estimator_key
        if key not in self._estimators and key not in self._build_problems:
            aggregation = self.aggregation.model_dump()
            try:
                _, built = build_estimators(settings.strategy, {**aggregation, **dict(key[1])})
            except ValueError as error:  # unknown strategy, or parameters that do not validate
                where = f"RecommenderPolicy {policy.key}" if policy else "the recommender"
                self._build_problems[key] = f"{where}: spec.strategyParams: {error}"
            else:
                self._estimators[key] = built
        return self._build_problems.get(key)

    def estimators(self, settings: Effective) -> PodEstimators:
        """The estimators of valid settings (`problem` is None for them)."""
        if self.problem(settings) is not None:
            raise ValueError(f"settings of {settings.policy} are not valid")
        return self._estimators[settings.estimator_key]

    # -- status --------------------------------------------------------------------------------

    def write_statuses(self, owned: Collection[str] | None, now: str) -> list[str]:
        """Bring the status of every policy (of `owned` namespaces) up to date with this
        tick: valid or not, and how many VPAs it governs. Returns the errors met."""
        governed, self._governed = self._governed, Counter()
        errors = []
        for policy in self.policies(owned):
            problem = self.problem(effective(self.defaults, policy))
            self._report(policy, problem)
            desired = policy_status(policy, problem, governed[policy.key], now)
            if not status_differs(policy, desired):
                continue
            path = f"{API_PATH}/namespaces/{policy.namespace}/{RESOURCE}/{policy.name}/status"
            try:
                self.kube.request("PATCH", path, body={"status": desired}, content_type=MERGE_PATCH)
            except KubeApiError as error:
                if not error.not_found:  # deleted meanwhile: nothing to say
                    log.error("RecommenderPolicy %s: status not written: %s", policy.key, error)
                    errors.append(f"RecommenderPolicy {policy.key}: status not written: {error}")
        return errors

    def _report(self, policy: RecommenderPolicy, problem: str | None) -> None:
        """Log a policy's problem once per generation."""
        if problem is None:
            self._reported.pop(policy.key, None)
            return
        if self._reported.get(policy.key) != (policy.generation, problem):
            self._reported[policy.key] = (policy.generation, problem)
            log.error("%s; the VPAs it governs keep their recommendations as written", problem)
