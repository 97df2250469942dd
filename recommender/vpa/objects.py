"""`autoscaling.k8s.io/v1` VerticalPodAutoscaler as pydantic models, parsed once at the edge.

Field names and JSON names follow upstream `pkg/apis/autoscaling.k8s.io/v1/types.go`
(VPA 1.7). Quantities stay strings here (`ResourceList`); the API server has already
canonicalised them. Unknown fields are ignored, as the CRD's structural schema prunes them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ResourceList = dict[str, str]
"""Resource name (`cpu`, `memory`, ...) to a Kubernetes quantity string."""


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class UpdateMode(StrEnum):
    OFF = "Off"
    INITIAL = "Initial"
    RECREATE = "Recreate"
    IN_PLACE_OR_RECREATE = "InPlaceOrRecreate"
    IN_PLACE = "InPlace"
    AUTO = "Auto"


class ContainerScalingMode(StrEnum):
    AUTO = "Auto"
    OFF = "Off"


class ControlledValues(StrEnum):
    REQUESTS_AND_LIMITS = "RequestsAndLimits"
    REQUESTS_ONLY = "RequestsOnly"


class TargetRef(_Model):
    api_version: str = Field("", alias="apiVersion")
    kind: str
    name: str


class UpdatePolicy(_Model):
    update_mode: UpdateMode | None = Field(None, alias="updateMode")
    min_replicas: int | None = Field(None, alias="minReplicas")


class ContainerResourcePolicy(_Model):
    container_name: str = Field("", alias="containerName")
    mode: ContainerScalingMode | None = None
    min_allowed: ResourceList = Field(default_factory=dict, alias="minAllowed")
    max_allowed: ResourceList = Field(default_factory=dict, alias="maxAllowed")
    controlled_resources: tuple[str, ...] | None = Field(None, alias="controlledResources")
    controlled_values: ControlledValues | None = Field(None, alias="controlledValues")


DEFAULT_CONTAINER_POLICY = "*"
"""The `containerName` of the policy that applies to containers without their own."""


class PodResourcePolicy(_Model):
    container_policies: tuple[ContainerResourcePolicy, ...] = Field((), alias="containerPolicies")

    def for_container(self, container_name: str) -> ContainerResourcePolicy | None:
        """The policy naming the container, else the `*` policy, else None (upstream's
        GetContainerResourcePolicy: an exact name wins wherever it is in the list)."""
        default = None
        for policy in self.container_policies:
            if policy.container_name == container_name:
                return policy
            if policy.container_name == DEFAULT_CONTAINER_POLICY:
                default = policy
        return default


class RecommenderSelector(_Model):
    name: str


class VpaSpec(_Model):
    target_ref: TargetRef | None = Field(None, alias="targetRef")
    update_policy: UpdatePolicy | None = Field(None, alias="updatePolicy")
    resource_policy: PodResourcePolicy | None = Field(None, alias="resourcePolicy")
    recommenders: tuple[RecommenderSelector, ...] = ()


class RecommendedContainerResources(_Model):
    container_name: str = Field("", alias="containerName")
    target: ResourceList
    lower_bound: ResourceList = Field(default_factory=dict, alias="lowerBound")
    upper_bound: ResourceList = Field(default_factory=dict, alias="upperBound")
    uncapped_target: ResourceList = Field(default_factory=dict, alias="uncappedTarget")


class RecommendedPodResources(_Model):
    container_recommendations: tuple[RecommendedContainerResources, ...] = Field(
        (), alias="containerRecommendations"
    )


class ConditionType(StrEnum):
    RECOMMENDATION_PROVIDED = "RecommendationProvided"
    LOW_CONFIDENCE = "LowConfidence"
    NO_PODS_MATCHED = "NoPodsMatched"
    FETCHING_HISTORY = "FetchingHistory"
    CONFIG_DEPRECATED = "ConfigDeprecated"
    CONFIG_UNSUPPORTED = "ConfigUnsupported"


class Condition(_Model):
    type: str
    status: Annotated[str, Field(pattern="^(True|False|Unknown)$")]
    last_transition_time: str | None = Field(None, alias="lastTransitionTime")
    reason: str = ""
    message: str = ""


class VpaStatus(_Model):
    recommendation: RecommendedPodResources | None = None
    conditions: tuple[Condition, ...] = ()
    observed_generation: int | None = Field(None, alias="observedGeneration")


class ObjectMeta(_Model):
    name: str
    namespace: str = ""
    uid: str = ""
    generation: int = 0
    resource_version: str = Field("", alias="resourceVersion")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class VerticalPodAutoscaler(_Model):
    metadata: ObjectMeta
    spec: VpaSpec
    status: VpaStatus = Field(default_factory=VpaStatus)

    @property
    def key(self) -> str:
        """`namespace/name`, how people and logs name a VPA."""
        return f"{self.metadata.namespace}/{self.metadata.name}"

    @property
    def update_mode(self) -> UpdateMode:
        """The effective update mode: unset means Recreate (upstream GetUpdateMode)."""
        policy = self.spec.update_policy
        if policy is None or policy.update_mode is None:
            return UpdateMode.RECREATE
        return policy.update_mode


class InvalidVpaError(ValueError):
    """A VPA object that cannot be understood; the message names the object and the field."""


def parse_vpa(obj: dict[str, object]) -> VerticalPodAutoscaler:
    """Parse a VPA as the API server returns it; raise InvalidVpaError naming object and field."""
    try:
        return VerticalPodAutoscaler.model_validate(obj)
    except ValidationError as exc:
        metadata = obj.get("metadata")
        name = "?"
        if isinstance(metadata, dict):
            name = f"{metadata.get('namespace', '')}/{metadata.get('name', '?')}"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']} (got {error.get('input')!r})"
            for error in exc.errors()
        )
        raise InvalidVpaError(f"VerticalPodAutoscaler {name}: {problems}") from exc
