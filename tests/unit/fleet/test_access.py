"""A kubeconfig from a Secret: parse errors say where and quote nothing of the content."""

from __future__ import annotations

import pytest

from recommender.fleet.access import ClusterAccessError, parse_kubeconfig

WHERE = "cluster eu-1: kubeconfig_secret vpa-fleet/kubeconfigs key 'eu-1'"
TOKEN = "s3cr3t-t0ken-value"


def test_a_kubeconfig_parses() -> None:
    text = f"""
apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://eu-1:6443"}}}}]
users: [{{name: u, user: {{token: {TOKEN}}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
"""
    data = parse_kubeconfig(text.encode(), WHERE)
    assert data["current-context"] == "x"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (f"users: [{{token: {TOKEN}".encode(), "not valid YAML (line 1)"),
        (f"users:\n  - token: {TOKEN}\n    x: [\n".encode(), "not valid YAML"),
        (f"token: {TOKEN}".encode(), "not a kubeconfig (no 'clusters' list)"),
        (b"\xff\xfe" + TOKEN.encode(), "not UTF-8 text"),
    ],
)
def test_errors_never_quote_the_secret(raw: bytes, problem: str) -> None:
    with pytest.raises(ClusterAccessError) as error:
        parse_kubeconfig(raw, WHERE)
    assert str(error.value).startswith(f"{WHERE}: {problem}")
    assert TOKEN not in str(error.value)
    # no chained YAML error (its message would quote the text)
    assert error.value.__cause__ is None
    assert error.value.__context__ is None or error.value.__suppress_context__
