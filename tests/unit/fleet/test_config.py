"""The fleet file: validation names the cluster and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from recommender.fleet.config import FleetConfigError, load_fleet


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return path


GOOD = """
actors: 3
clusters:
  - name: eu-1
    kubeconfig: /etc/kube/eu-1
    prometheus: {connection: {url: "http://prom-eu:9090"}}
    exclude: ["kube-*"]
  - name: us-1
    context: us
    prometheus: {connection: {url: "http://prom-us:9090"}, step_s: 30}
"""


def test_a_good_fleet(tmp_path: Path) -> None:
    fleet = load_fleet(_write(tmp_path, GOOD))
    assert fleet.actors == 3
    assert [c.name for c in fleet.clusters] == ["eu-1", "us-1"]
    assert fleet.cluster("eu-1").prometheus.cluster == "eu-1"  # follows the name
    assert fleet.cluster("us-1").prometheus.step_s == 30
    assert fleet.cluster("eu-1").serves("shop")
    assert not fleet.cluster("eu-1").serves("kube-system")


def test_errors_name_the_cluster_and_the_field(tmp_path: Path) -> None:
    bad = GOOD.replace('"http://prom-us:9090"', '"ftp://prom-us"').replace("actors: 3", "actors: 0")
    with pytest.raises(FleetConfigError) as error:
        load_fleet(_write(tmp_path, bad))
    text = str(error.value)
    assert "actors: Input should be greater than or equal to 1 (got 0)" in text
    assert "clusters[1] (us-1).prometheus.connection.url" in text


def test_repeated_names_and_prometheus_cluster(tmp_path: Path) -> None:
    with pytest.raises(FleetConfigError, match="repeated: \\['eu-1'\\]"):
        load_fleet(_write(tmp_path, GOOD.replace("us-1", "eu-1")))
    with pytest.raises(FleetConfigError, match=r"clusters\[0\] \(eu-1\): .*follows the cluster"):
        load_fleet(
            _write(
                tmp_path,
                GOOD.replace("prometheus: {connection", "prometheus: {cluster: x, connection", 1),
            )
        )


def test_unreadable_and_not_yaml(tmp_path: Path) -> None:
    with pytest.raises(FleetConfigError, match="cannot read"):
        load_fleet(tmp_path / "missing.yaml")
    with pytest.raises(FleetConfigError, match="not valid YAML"):
        load_fleet(_write(tmp_path, "clusters: [unclosed"))
    with pytest.raises(FleetConfigError, match="expected a mapping"):
        load_fleet(_write(tmp_path, "- a list"))


SECRET = """
clusters:
  - name: eu-1
    kubeconfig_secret: {name: fleet-kubeconfigs, key: eu-1, namespace: vpa-fleet}
    context: admin@eu-1
    max_concurrent_passes: 2
    prometheus: {connection: {url: "http://prom-eu:9090"}}
  - name: us-1
    kubeconfig_secret: {name: fleet-kubeconfigs}
    prometheus: {connection: {url: "http://prom-us:9090"}}
"""


def test_kubeconfig_secrets_and_limits(tmp_path: Path) -> None:
    fleet = load_fleet(_write(tmp_path, SECRET))
    eu = fleet.cluster("eu-1")
    assert eu.kubeconfig_secret is not None
    assert (eu.kubeconfig_secret.namespace, eu.kubeconfig_secret.key) == ("vpa-fleet", "eu-1")
    assert eu.max_concurrent_passes == 2
    us = fleet.cluster("us-1").kubeconfig_secret
    assert us is not None and (us.key, us.namespace) == ("kubeconfig", None)
    assert fleet.cluster("us-1").max_concurrent_passes is None
    assert fleet.tick_budget_s == 30


def test_secret_errors_name_the_cluster_and_the_field(tmp_path: Path) -> None:
    both = SECRET.replace(
        "kubeconfig_secret: {name: fleet-kubeconfigs}\n",
        "kubeconfig_secret: {name: fleet-kubeconfigs}\n    kubeconfig: /etc/kube/us\n",
    )
    with pytest.raises(FleetConfigError) as error:
        load_fleet(_write(tmp_path, both))
    assert "clusters[1] (us-1): kubeconfig (/etc/kube/us) and kubeconfig_secret" in str(error.value)
    bad = SECRET.replace("key: eu-1", "key: 'a/b'").replace(
        "max_concurrent_passes: 2", "max_concurrent_passes: 0"
    )
    with pytest.raises(FleetConfigError) as error:
        load_fleet(_write(tmp_path, bad))
    text = str(error.value)
    assert "clusters[0] (eu-1).kubeconfig_secret.key: String should match pattern" in text
    assert (
        "clusters[0] (eu-1).max_concurrent_passes: Input should be greater than or equal to 1"
        in text
    )
    missing = SECRET.replace("{name: fleet-kubeconfigs}", "{key: x}")
    with pytest.raises(
        FleetConfigError, match=r"clusters\[1\] \(us-1\)\.kubeconfig_secret\.name: Field required"
    ):
        load_fleet(_write(tmp_path, missing))
