"""Settings of `vpa-fleet run`: defaults, precedence of sources, validation, secret masking."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from analytics.strategies import build_estimators
from recommender import settings as settings_module
from recommender.settings import (
    LeaderElectionSettings,
    RaySettings,
    Settings,
    SettingsError,
    describe,
    load_settings,
)

URL = "http://prometheus.example:9090"


@pytest.fixture(autouse=True)
def _outside_a_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The lease namespace default reads the service account's namespace file when present.
    monkeypatch.setattr(settings_module, "SERVICE_ACCOUNT_NAMESPACE_FILE", tmp_path / "absent")


def write_config(tmp_path: Path, data: object, name: str = "vpa-fleet.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def problems_of(**kwargs: object) -> str:
    kwargs.setdefault("env", {})
    with pytest.raises(SettingsError) as raised:
        load_settings(**kwargs)  # type: ignore[arg-type]
    return str(raised.value)


# --- defaults -------------------------------------------------------------------------------


def test_defaults() -> None:
    settings = load_settings(env={})
    assert settings.recommender_name == "vpa-fleet"
    assert settings.cluster == "default"
    assert settings.kubeconfig is None
    assert settings.context is None
    assert settings.namespaces == ()
    assert settings.prometheus is None
    assert settings.tick_interval_s == 60
    assert settings.history_days == 8
    assert settings.checkpoint_interval_s == 600
    assert settings.status_change_threshold == 0.0
    assert settings.strategy == "vpa"
    assert settings.strategy_params == {}
    assert settings.max_allowed_cpu is None
    assert settings.max_allowed_memory is None
    assert settings.log_level == "INFO"
    assert settings.once is False
    assert settings.ray == RaySettings()
    assert settings.ray.address is None
    assert settings.ray.dashboard is True
    assert settings.ray.dashboard_port == 8265
    assert settings.ray.namespace == "vpa-fleet"
    election = settings.leader_election
    assert election.enabled is False
    assert election.lease_name == "vpa-fleet"
    assert election.lease_duration_s == 15
    assert election.renew_interval_s == 5


def test_lease_namespace_and_identity_defaults(tmp_path: Path) -> None:
    election = LeaderElectionSettings()
    assert election.lease_namespace == "default"
    assert election.identity == f"{socket.gethostname()}_{os.getpid()}"


def test_lease_namespace_defaults_to_the_pods_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("vpa-system\n")
    monkeypatch.setattr(settings_module, "SERVICE_ACCOUNT_NAMESPACE_FILE", namespace_file)
    assert load_settings(env={}).leader_election.lease_namespace == "vpa-system"
    given = load_settings(env={}, overrides={"leader_election.lease_namespace": "mine"})
    assert given.leader_election.lease_namespace == "mine"


def test_settings_are_frozen() -> None:
    settings = load_settings(env={})
    with pytest.raises(ValueError, match="frozen"):
        settings.cluster = "other"  # type: ignore[misc]


def test_settings_read_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPA_FLEET_TICK_INTERVAL_S", "5")
    monkeypatch.setenv("VPA_FLEET_PROMETHEUS_URL", URL)
    assert load_settings().tick_interval_s == 5
    direct = Settings()
    assert direct.tick_interval_s == 5
    assert direct.prometheus is not None
    assert direct.prometheus.connection.url == URL


# --- precedence ---------------------------------------------------------------------------


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "tick_interval_s": 10,
            "history_days": 2,
            "cluster": "from-file",
            "ray": {"num_cpus": 3, "dashboard_port": 9000},
        },
    )
    env = {"VPA_FLEET_TICK_INTERVAL_S": "20", "VPA_FLEET_RAY__NUM_CPUS": "4"}
    settings = load_settings(config, overrides={"tick_interval_s": 30}, env=env)
    assert settings.tick_interval_s == 30  # flag over environment over file
    assert settings.ray.num_cpus == 4  # environment over file
    assert settings.ray.dashboard_port == 9000  # file, merged key by key with the environment
    assert settings.history_days == 2  # file over default
    assert settings.cluster == "from-file"
    assert load_settings(config, env=env).tick_interval_s == 20
    assert load_settings(config, env={}).tick_interval_s == 10


def test_flags_not_given_leave_lower_sources_alone(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"context": "kind-a"})
    settings = load_settings(config, overrides={"context": None, "once": True}, env={})
    assert settings.context == "kind-a"
    assert settings.once is True


def test_dotted_flags_set_nested_fields() -> None:
    settings = load_settings(
        env={},
        overrides={
            "prometheus.connection.url": URL,
            "prometheus.connection.timeout_s": 5,
            "leader_election.enabled": True,
            "ray.address": "10.0.0.1:6379",
        },
    )
    assert settings.prometheus is not None
    assert settings.prometheus.connection.url == URL
    assert settings.prometheus.connection.timeout_s == 5
    assert settings.leader_election.enabled is True
    assert settings.ray.address == "10.0.0.1:6379"


def test_environment_nested_json_and_lists() -> None:
    env = {
        "VPA_FLEET_NAMESPACES": "team-a, team-b,team-a",
        "VPA_FLEET_STRATEGY_PARAMS": '{"target_cpu_percentile": 0.95}',
        "VPA_FLEET_LEADER_ELECTION__ENABLED": "true",
        "vpa_fleet_once": "1",  # names are case-insensitive
        "VPA_FLEET_CACHE": "/elsewhere",  # not a setting: ignored
        "UNRELATED": "x",
    }
    settings = load_settings(env=env)
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.strategy_params == {"target_cpu_percentile": 0.95}
    assert settings.leader_election.enabled is True
    assert settings.once is True
    assert load_settings(env={"VPA_FLEET_NAMESPACES": '["x", "y"]'}).namespaces == ("x", "y")


def test_a_section_merges_across_sources(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"prometheus": {"connection": {"url": URL}, "step_s": "30s"}})
    env = {"VPA_FLEET_PROMETHEUS__CONNECTION__BEARER_TOKEN": "tok"}
    settings = load_settings(config, env=env)
    assert settings.prometheus is not None
    assert settings.prometheus.connection.url == URL
    assert settings.prometheus.connection.bearer_token == SecretStr("tok")
    assert settings.prometheus.step_s == 30


# --- the prometheus_url shortcut ------------------------------------------------------------


def test_prometheus_url_shortcut_in_every_source(tmp_path: Path) -> None:
    from_env = load_settings(env={"VPA_FLEET_PROMETHEUS_URL": URL})
    from_flag = load_settings(env={}, overrides={"prometheus_url": URL})
    from_file = load_settings(write_config(tmp_path, {"prometheus_url": URL}), env={})
    for settings in (from_env, from_flag, from_file):
        assert settings.prometheus is not None
        assert settings.prometheus.connection.url == URL


def test_prometheus_url_shortcut_has_its_sources_precedence(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"prometheus": {"connection": {"url": "http://file:9090"}}})
    settings = load_settings(config, env={"VPA_FLEET_PROMETHEUS_URL": URL})
    assert settings.prometheus is not None
    assert settings.prometheus.connection.url == URL
    env = {"VPA_FLEET_PROMETHEUS__CONNECTION__URL": URL}
    flagged = load_settings(config, overrides={"prometheus_url": "http://flag:9090"}, env=env)
    assert flagged.prometheus is not None
    assert flagged.prometheus.connection.url == "http://flag:9090"


def test_prometheus_url_shortcut_conflicting_in_one_source() -> None:
    message = problems_of(
        env={"VPA_FLEET_PROMETHEUS_URL": URL, "VPA_FLEET_PROMETHEUS__CONNECTION__URL": "http://b"}
    )
    assert "prometheus_url: conflicts with prometheus.connection.url" in message
    assert problems_of(overrides={"prometheus_url": "http://a", "prometheus.connection.url": URL})


def test_prometheus_follows_cluster_and_history_days() -> None:
    settings = load_settings(
        env={"VPA_FLEET_CLUSTER": "eu-1"}, overrides={"prometheus_url": URL, "history_days": 2}
    )
    assert settings.prometheus is not None
    assert settings.prometheus.cluster == "eu-1"
    assert settings.prometheus.history_s == 2 * 86_400


# --- validation: every problem names its field ---------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"tick_interval_s": 0}, "tick_interval_s: Input should be greater than 0 (got 0)"),
        ({"history_days": -1}, "history_days: Input should be greater than 0 (got -1)"),
        ({"checkpoint_interval_s": 0}, "checkpoint_interval_s: Input should be greater than 0"),
        ({"status_change_threshold": -0.1}, "status_change_threshold: Input should be greater"),
        ({"recommender_name": ""}, "recommender_name: String should have at least 1 character"),
        ({"cluster": ""}, "cluster: String should have at least 1 character"),
        ({"namespaces": ["Bad_Name"]}, "namespaces: not valid namespace names"),
        ({"strategy": "magic"}, "strategy: unknown strategy 'magic'; known: autopilot, default"),
        ({"max_allowed_cpu": "lots"}, "max_allowed_cpu: invalid quantity 'lots'"),
        ({"max_allowed_memory": "0"}, "max_allowed_memory: must be a positive quantity (got '0')"),
        ({"log_level": "chatty"}, "log_level: expected one of CRITICAL, ERROR, WARNING"),
        ({"once": "maybe"}, "once: Input should be a valid boolean"),
        ({"kubeconfig": 5}, "kubeconfig: Input is not a valid path"),
        ({"tick_intervl_s": 5}, "tick_intervl_s: unknown setting [flags]"),
        ({"ray.num_cpus": 0}, "ray.num_cpus: Input should be greater than or equal to 1 (got 0)"),
        ({"ray.object_store_bytes": 1024}, "ray.object_store_bytes: Input should be greater"),
        ({"ray.dashboard_port": 70000}, "ray.dashboard_port: Input should be less than"),
        ({"ray.namespace": ""}, "ray.namespace: String should have at least 1 character"),
        ({"ray.temp_dir": "relative"}, "ray.temp_dir: must be an absolute path"),
        ({"ray.address": " "}, "ray.address: must not be empty"),
        ({"ray.connect_timeout_s": 0}, "ray.connect_timeout_s: Input should be greater than 0"),
        (
            {"ray.address": "10.0.0.1:6379", "ray.num_cpus": 2},
            "ray.num_cpus: applies to an embedded Ray only, but ray.address is set (got 2)",
        ),
        ({"leader_election.lease_name": "Bad"}, "leader_election.lease_name: not a valid object"),
        (
            {"leader_election.lease_namespace": "no_pe"},
            "leader_election.lease_namespace: not a valid namespace name",
        ),
        ({"leader_election.identity": " "}, "leader_election.identity: must not be empty"),
        (
            {"leader_election.lease_duration_s": 0},
            "leader_election.lease_duration_s: Input should be greater than 0",
        ),
        (
            {"leader_election.renew_interval_s": 15},
            "leader_election.renew_interval_s: must be less than lease_duration_s (15) (got 15",
        ),
        ({"leader_election.term": 1}, "leader_election.term: unknown setting"),
        (
            {"prometheus_url": "ftp://prometheus"},
            "prometheus.connection.url: expected an http:// or https:// URL",
        ),
        ({"prometheus.connection.timeout_s": 5}, "prometheus.connection.url: required"),
        (
            {"prometheus_url": URL, "prometheus.step_s": "1x"},
            "prometheus.step_s: ",
        ),
        (
            {"prometheus_url": URL, "prometheus.cluster": "other"},
            "prometheus.cluster: follows the top-level cluster ('default'); set cluster instead "
            "(got 'other')",
        ),
        (
            {"prometheus_url": URL, "prometheus.history_s": 86_400},
            "prometheus.history_s: follows history_days (691200 s); set history_days instead",
        ),
        (
            {"prometheus_url": URL, "history_days": 0.0001},
            "history_days: 9 s of history is shorter than prometheus.step_s (60 s) (got 0.0001)",
        ),
        ({"a..b": 1}, "a..b: not a setting name"),
        ({"ray": 1, "ray.num_cpus": 2}, "ray.num_cpus: conflicts with ray"),
    ],
)
def test_each_problem_names_its_field(overrides: dict[str, object], expected: str) -> None:
    assert expected in problems_of(overrides=overrides)


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(
            overrides={"tick_interval_s": 0, "ray.num_cpus": 0, "strategy": "magic"}, env={}
        )
    error = raised.value
    assert [p.split(":")[0] for p in error.problems] == [
        "tick_interval_s",
        "strategy",
        "ray.num_cpus",
    ]
    assert str(error).startswith("invalid settings:\n  tick_interval_s: ")


def test_problems_name_the_source_of_the_value(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"ray": {"num_cpus": 0}})
    assert f"ray.num_cpus: Input should be greater than or equal to 1 (got 0) [{config}]" in (
        problems_of(config_file=config)
    )
    message = problems_of(env={"VPA_FLEET_RAY__NUM_CPUS": "0"})
    assert "ray.num_cpus: Input should be greater than or equal to 1 (got '0') " in message
    assert "[environment VPA_FLEET_RAY__NUM_CPUS]" in message


def test_environment_values_that_are_not_json() -> None:
    message = problems_of(env={"VPA_FLEET_STRATEGY_PARAMS": "{not json"})
    assert "strategy_params: VPA_FLEET_STRATEGY_PARAMS is not valid JSON" in message
    assert "namespaces: not a JSON list" in problems_of(env={"VPA_FLEET_NAMESPACES": "[x"})


# --- strategy parameters --------------------------------------------------------------------


def test_strategy_params_are_validated_and_typed() -> None:
    env = {"VPA_FLEET_STRATEGY_PARAMS__TARGET_CPU_PERCENTILE": "0.95"}
    settings = load_settings(env=env, overrides={"strategy_params.safety_margin_fraction": 0})
    assert settings.strategy_params == {
        "target_cpu_percentile": 0.95,
        "safety_margin_fraction": 0.0,
    }
    assert isinstance(settings.strategy_params["target_cpu_percentile"], float)
    params, _ = build_estimators(settings.strategy, settings.strategy_params)
    assert params.model_dump()["target_cpu_percentile"] == 0.95


def test_strategy_params_follow_the_chosen_strategy() -> None:
    overrides = {"strategy": "percentile", "strategy_params.upper_bound_cpu_percentile": 1.0}
    assert load_settings(env={}, overrides=overrides).strategy == "percentile"
    # confidence intervals belong to the vpa strategy only
    message = problems_of(
        overrides={"strategy": "percentile", "strategy_params.confidence_interval_cpu_s": 60}
    )
    assert "strategy_params.confidence_interval_cpu_s: not a parameter of strategy" in message


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"target_cpu_percentile": 1.5},
            "strategy_params.target_cpu_percentile: Input should be less than or equal to 1 "
            "(strategy 'vpa') (got 1.5)",
        ),
        ({"target_cpu_percentile": "high"}, "strategy_params.target_cpu_percentile: Input should"),
        ({"no_such_thing": 1}, "strategy_params.no_such_thing: not a parameter of strategy 'vpa'"),
        (
            {"lower_bound_cpu_percentile": 0.99},
            "strategy_params: lower_bound_cpu_percentile (0.99) <= target_cpu_percentile (0.9)",
        ),
        ({"target_cpu_percentile": [1]}, "strategy_params.target_cpu_percentile: Input should"),
    ],
)
def test_bad_strategy_params(params: dict[str, object], expected: str) -> None:
    overrides = {f"strategy_params.{name}": value for name, value in params.items()}
    assert expected in problems_of(overrides=overrides)


# --- the config file ------------------------------------------------------------------------


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    assert f"{missing}: cannot read the settings file" in problems_of(config_file=missing)
    assert f"{tmp_path}: cannot read the settings file" in problems_of(config_file=tmp_path)


def test_an_invalid_file_is_named_without_its_content(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("prometheus:\n  connection: {password: hunter2\nray: [\n")
    message = problems_of(config_file=bad)
    assert f"{bad}: not valid YAML at line" in message
    assert "hunter2" not in message
    not_a_mapping = write_config(tmp_path, ["a", "b"], "list.yaml")
    assert f"{not_a_mapping}: expected a mapping" in problems_of(config_file=not_a_mapping)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert f"{binary}: the settings file is not UTF-8" in problems_of(config_file=binary)


def test_an_empty_file_is_all_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    assert load_settings(empty, env={}) == load_settings(env={})


# --- secrets ----------------------------------------------------------------------------------

SECRETS = ("hunter2", "s3cr3t-token", "Basic dXNlcjpwdw==", "rotated-token", "pw-in-url")


def secretive_settings(tmp_path: Path) -> Settings:
    token_file = tmp_path / "token"
    token_file.write_text("rotated-token")
    config = write_config(
        tmp_path,
        {
            "prometheus": {
                "connection": {
                    "url": URL,
                    "username": "reader",
                    "password": "hunter2",
                    "headers": {"Authorization": "Basic dXNlcjpwdw==", "X-Scope-OrgID": "team-a"},
                }
            },
            "ray": {"address": "ray://admin:pw-in-url@head:10001"},
        },
    )
    return load_settings(config, env={})


def test_describe_masks_every_secret(tmp_path: Path) -> None:
    text = describe(secretive_settings(tmp_path))
    for secret in SECRETS:
        assert secret not in text
    shown = yaml.safe_load(text)
    connection = shown["prometheus"]["connection"]
    assert connection["password"] == "***"
    assert connection["username"] == "reader"
    assert connection["headers"] == {"Authorization": "***", "X-Scope-OrgID": "team-a"}
    assert shown["ray"]["address"] == "ray://admin:***@head:10001"
    assert shown["prometheus"]["cadvisor_selector"] == 'job="kubernetes-cadvisor"'
    assert shown["strategy"] == "vpa"
    assert shown["namespaces"] == []


def test_describe_shows_token_files_as_paths(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("rotated-token")
    env = {"VPA_FLEET_PROMETHEUS__CONNECTION__BEARER_TOKEN_FILE": str(token_file)}
    text = describe(load_settings(env=env, overrides={"prometheus_url": URL}))
    assert f"bearer_token_file: {token_file}" in text
    assert "rotated-token" not in text
    inline = describe(
        load_settings(
            env={},
            overrides={"prometheus_url": URL, "prometheus.connection.bearer_token": "s3cr3t-token"},
        )
    )
    assert "bearer_token: '***'" in inline
    assert "s3cr3t-token" not in inline


def test_repr_masks_secrets(tmp_path: Path) -> None:
    text = f"{secretive_settings(tmp_path)!r} {secretive_settings(tmp_path)}"
    for secret in SECRETS:
        assert secret not in text


def test_errors_never_echo_secrets() -> None:
    message = problems_of(
        overrides={
            "prometheus_url": "https://reader:hunter2@prometheus.example",
            "prometheus.connection.bearer_token": ["s3cr3t-token"],
            "prometheus.connection.headers": {"Authorization": ["Basic dXNlcjpwdw=="]},
            "prometheus.connection.pasword": "pw-in-url",  # a typo: an unknown setting
        }
    )
    for secret in SECRETS:
        assert secret not in message
    assert "prometheus.connection.url: put credentials in username/password" in message
    assert "(got 'https://reader:***@prometheus.example')" in message
    assert "prometheus.connection.bearer_token: Input should be a valid string (got '***')" in (
        message
    )
    assert "prometheus.connection.pasword: unknown setting" in message
