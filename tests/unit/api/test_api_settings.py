"""The `api:` settings section: off by default on loopback; beyond loopback only with a token
or mutual TLS; certificate and key together."""

from __future__ import annotations

from pathlib import Path

import pytest

from recommender.api.serve import ApiStartError, start_api
from recommender.api.server import InspectionService, StatusBoard, start_server
from recommender.settings import SettingsError, load_settings


def test_defaults_are_off_on_loopback() -> None:
    api = load_settings(None, {}).api
    assert (api.enabled, api.listen, api.token_file) == (False, "127.0.0.1:50051", None)


def test_beyond_loopback_needs_a_token_or_client_certificates(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"api\.token_file: listening on 0\.0\.0\.0:50051"):
        load_settings(None, {"api.enabled": True, "api.listen": "0.0.0.0:50051"})
    token = tmp_path / "token"
    token.write_text("t")
    api = load_settings(
        None, {"api.enabled": True, "api.listen": "0.0.0.0:50051", "api.token_file": str(token)}
    ).api
    assert api.token_file == token


def test_bad_address_and_half_tls_name_their_field(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"api\.listen: .*host:port"):
        load_settings(None, {"api.listen": "50051"})
    with pytest.raises(SettingsError, match=r"api\.tls_key_file: tls_cert_file and tls_key_file"):
        load_settings(None, {"api.tls_cert_file": str(tmp_path / "c.pem")})
    with pytest.raises(SettingsError, match=r"api\.client_ca_file: needs tls_cert_file"):
        load_settings(None, {"api.client_ca_file": str(tmp_path / "ca.pem")})


def test_an_unreadable_or_empty_token_file_stops_the_start_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    settings = load_settings(None, {"api.enabled": True, "api.token_file": str(missing)})
    with pytest.raises(ApiStartError, match=rf"api\.token_file {missing}: cannot be read"):
        start_api(settings, StatusBoard())
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    settings = load_settings(None, {"api.enabled": True, "api.token_file": str(empty)})
    with pytest.raises(ApiStartError, match=rf"api\.token_file {empty}: is empty"):
        start_api(settings, StatusBoard())


def test_an_address_in_use_is_reported(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    first = start_server(InspectionService({}), "127.0.0.1:0", token="t")
    try:
        settings = load_settings(
            None,
            {
                "api.enabled": True,
                "api.listen": f"127.0.0.1:{first.port}",
                "api.token_file": str(token),
                "kubeconfig": str(tmp_path / "kubeconfig"),
            },
        )
        with pytest.raises(ApiStartError, match=rf"api\.listen 127\.0\.0\.1:{first.port}"):
            start_api(settings, StatusBoard(), clusters={})
    finally:
        first.stop(0)
