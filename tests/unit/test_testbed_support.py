"""The testbed's pure helpers: versions, PKI, process supervision. No binaries needed."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testbed import binaries
from testbed.pki import create_pki
from testbed.process import TestbedError, free_port, start, wait_until


def test_versions_are_pinned_and_keyed_into_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = binaries.versions()
    assert pinned["KUBE_VERSION"].startswith("1.35.")
    assert pinned["ETCD_VERSION"].split(".")[:2] in (["3", "5"], ["3", "6"])
    monkeypatch.setenv("VPA_FLEET_CACHE", "/somewhere")
    assert binaries.component_dir("kube") == Path(f"/somewhere/bin/kube-{pinned['KUBE_VERSION']}")


def test_unknown_component_is_named() -> None:
    with pytest.raises(TestbedError, match="unknown testbed component 'kubelet'"):
        binaries.ensure("kubelet")


def _verify(cert: x509.Certificate, ca: x509.Certificate) -> None:
    public_key = ca.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    algorithm = cert.signature_hash_algorithm
    assert algorithm is not None
    public_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)


def test_pki_chains_to_its_ca_with_the_right_identities(tmp_path: Path) -> None:
    pki = create_pki(tmp_path)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    serving = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    admin = x509.load_pem_x509_certificate(pki.admin_cert.read_bytes())
    for cert in (serving, admin):
        _verify(cert, ca)
        assert cert.issuer == ca.subject

    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    usage = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage

    organization = admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [a.value for a in organization] == ["system:masters"]
    for key in (pki.ca_key, pki.serving_key, pki.admin_key, pki.service_account_key):
        assert key.stat().st_mode & 0o077 == 0, f"{key} is readable by others"


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_component_that_exits_fails_with_its_log_tail(tmp_path: Path) -> None:
    process = start("flaky", ["sh", "-c", "echo 'bad flag --frob'; exit 3"], tmp_path)
    with pytest.raises(TestbedError) as raised:
        wait_until(process, lambda: False, timeout_s=10, what="serving")
    message = str(raised.value)
    assert "flaky exited before serving" in message
    assert "exited with code 3" in message
    assert "bad flag --frob" in message


def test_a_component_that_hangs_fails_after_the_timeout(tmp_path: Path) -> None:
    process = start("slow", ["sleep", "30"], tmp_path)
    try:
        with pytest.raises(TestbedError, match=r"slow did not become ready \(serving\) within 1 s"):
            wait_until(process, lambda: False, timeout_s=1, what="serving")
    finally:
        process.stop()
    assert not process.alive()


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    process = start("parent", ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], tmp_path)
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "child never started"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    process.stop(timeout_s=5)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_missing_binary_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(TestbedError, match=r"binary /nonexistent/kube-apiserver does not exist"):
        start("kube-apiserver", ["/nonexistent/kube-apiserver"], tmp_path)


def test_build_without_go_names_what_to_install(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "VPA_FLEET_CACHE": str(tmp_path)}
    result = subprocess.run(
        ["bash", str(binaries.BUILD_SCRIPT), "etcd"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "go is not installed: install Go >= 1.25" in result.stderr
    assert not (tmp_path / "bin").exists(), "a failed build must leave nothing in the cache"


def test_build_rejects_an_unknown_component(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(binaries.BUILD_SCRIPT), "kubelet"],
        env={**os.environ, "VPA_FLEET_CACHE": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "unknown component 'kubelet'" in result.stderr
