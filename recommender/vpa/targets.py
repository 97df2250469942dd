"""Which pods a VPA's `targetRef` selects: the label selector of each well-known controller
(upstream `pkg/target/fetcher.go`), the string form served by a `/scale` subresource, and
matching pod labels against either. Pure: callers fetch the objects."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

WELL_KNOWN_CONTROLLERS = frozenset(
    {
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "ReplicationController",
        "Job",
        "CronJob",
    }
)
"""Kinds whose selector is read from the object itself; any other kind goes through `/scale`."""


class SelectorError(ValueError):
    """A selector that cannot be read; the message names the object and what is wrong."""


@dataclass(frozen=True)
class Requirement:
    """One `matchExpressions` term (or its string form): key, operator, values."""

    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist


@dataclass(frozen=True)
class Selector:
    """A label selector; the empty selector matches everything, `nothing()` matches nothing."""

    requirements: tuple[Requirement, ...] = ()
    matches_nothing: bool = False

    @staticmethod
    def nothing() -> Selector:
        return Selector(matches_nothing=True)

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.matches_nothing:
            return False
        return all(r.matches(labels) for r in self.requirements)


_OPERATORS = {"In", "NotIn", "Exists", "DoesNotExist"}


def from_label_selector(selector: object, where: str) -> Selector:
    """A `metav1.LabelSelector` (`matchLabels` + `matchExpressions`) as a Selector.

    A missing selector matches nothing, as upstream's LabelSelectorAsSelector(nil) does.
    """
    if selector is None:
        return Selector.nothing()
    if not isinstance(selector, Mapping):
        raise SelectorError(f"{where}: selector must be an object, got {selector!r}")
    requirements = [
        Requirement(str(k), "In", frozenset({str(v)}))
        for k, v in (selector.get("matchLabels") or {}).items()
    ]
    for i, expression in enumerate(selector.get("matchExpressions") or []):
        operator = expression.get("operator")
        if operator not in _OPERATORS:
            raise SelectorError(
                f"{where}: matchExpressions[{i}].operator {operator!r} is not one of "
                f"{sorted(_OPERATORS)}"
            )
        values = frozenset(str(v) for v in expression.get("values") or [])
        if operator in {"In", "NotIn"} and not values:
            raise SelectorError(f"{where}: matchExpressions[{i}] ({operator}) needs values")
        requirements.append(Requirement(str(expression.get("key", "")), operator, values))
    return Selector(tuple(requirements))


def from_match_labels(labels: object, where: str) -> Selector:
    """A plain label map (ReplicationController `spec.selector`, CronJob template labels)."""
    if labels is None:
        return Selector.nothing()
    if not isinstance(labels, Mapping):
        raise SelectorError(f"{where}: labels must be an object, got {labels!r}")
    return from_label_selector({"matchLabels": labels}, where)


def workload_selector(kind: str, obj: Mapping[str, object]) -> Selector:
    """The pod selector of a well-known controller object, as the stock recommender reads it."""
    metadata = obj.get("metadata")
    name = metadata.get("name", "?") if isinstance(metadata, Mapping) else "?"
    where = f"{kind} {name}"
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise SelectorError(f"{where}: has no spec")
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return from_label_selector(spec.get("selector"), f"{where}: spec.selector")
    if kind == "ReplicationController":
        return from_match_labels(spec.get("selector"), f"{where}: spec.selector")
    if kind == "CronJob":
        template = _dig(spec, "jobTemplate", "spec", "template", "metadata", "labels")
        return from_match_labels(template, f"{where}: spec.jobTemplate.spec.template labels")
    raise SelectorError(f"{where}: {kind} is not a well-known controller")


def _dig(obj: Mapping[str, object], *path: str) -> object:
    current: object = obj
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


_SET_TERM = re.compile(r"^\s*(!?)\s*([\w./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQUALITY_TERM = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")


def parse_selector(text: str, where: str) -> Selector:
    """The string form of a selector (`/scale` `status.selector`): `a=b,c!=d,e in (f,g),!h`."""
    if not text.strip():
        raise SelectorError(f"{where}: empty selector")
    terms: list[str] = []
    depth, start = 0, 0
    for i, char in enumerate(text):  # split on commas outside parentheses
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    requirements = []
    for term in terms:
        if equality := _EQUALITY_TERM.match(term):
            key, operator, value = equality.groups()
            op = "NotIn" if operator == "!=" else "In"
            requirements.append(Requirement(key, op, frozenset({value})))
        elif set_term := _SET_TERM.match(term):
            negated, key, operator, values = set_term.groups()
            if operator:
                if negated:
                    raise SelectorError(f"{where}: cannot negate a set term {term.strip()!r}")
                parsed = frozenset(v.strip() for v in values.split(",") if v.strip())
                requirements.append(Requirement(key, "In" if operator == "in" else "NotIn", parsed))
            else:
                requirements.append(Requirement(key, "DoesNotExist" if negated else "Exists"))
        else:
            raise SelectorError(f"{where}: cannot parse selector term {term.strip()!r}")
    return Selector(tuple(requirements))
