"""TLS to Postgres as a managed database does it: the embedded cluster with TLS turned on (and
non-TLS clients refused) behind a server certificate from a throwaway CA. ``attune migrate``
and the services' pool accept ``DATABASE_URL`` with ``sslmode=verify-full`` and the CA bundle
in ``sslrootcert``; a bundle of another CA, and the system trust store, are refused."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from attune.cli import app_factory
from devstack.embedded import EmbeddedPostgres
from shared.db import create_pool
from shared.settings import SettingsError, load_settings
from tests.conftest import Infra, private_tmpdir

pytestmark = pytest.mark.integration


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(directory: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Name]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = _name(name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(_pem(cert))
    return path, key, subject


def make_server_cert(
    directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name
) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 (and localhost), as a managed Postgres has one for its
    host name."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("attune-test-postgres"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(_pem(cert))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class TlsPostgres:
    url: str  # the postgres database's superuser URL, without TLS parameters
    ca: Path  # the CA that signed the server certificate
    other_ca: Path  # a CA that did not

    def with_tls(self, ca: Path | str, mode: str = "verify-full") -> str:
        return f"{self.url}?sslmode={mode}&sslrootcert={ca}"


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[TlsPostgres]:
    tmp = private_tmpdir("attune-tls-pg-")
    try:
        ca, ca_key, ca_name = make_ca(tmp, "attune-test-ca")
        other_ca, _, _ = make_ca(tmp, "some-other-ca")
        cert, key = make_server_cert(tmp, ca_key, ca_name)
        with EmbeddedPostgres(tmp / "data", fast=True, tls=(cert, key)) as pg:
            yield TlsPostgres(pg.url, ca, other_ca)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def attune(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": database_url}
    env["HOME"] = "/nonexistent"  # no ~/.postgresql/root.crt to fall back on
    return subprocess.run(
        [sys.executable, "-m", "attune.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_migrate_and_the_pool_verify_the_server_with_the_ca_bundle(
    tls_postgres: TlsPostgres,
) -> None:
    url = tls_postgres.with_tls(tls_postgres.ca)
    result = attune(url, "migrate")
    assert result.returncode == 0, result.stderr
    settings = load_settings({"DATABASE_URL": url}, need_kafka=False)
    pool = await create_pool(settings, application_name="tls-test")
    try:
        async with pool.acquire() as conn:
            encrypted = await conn.fetchval(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
            assert encrypted is True
            assert await conn.fetchval("SELECT count(*) FROM alembic_version") == 1
    finally:
        await pool.close()


async def test_the_cluster_refuses_clients_without_tls(tls_postgres: TlsPostgres) -> None:
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(f"{tls_postgres.url}?sslmode=disable")


async def test_a_server_certificate_of_another_ca_is_refused(tls_postgres: TlsPostgres) -> None:
    url = tls_postgres.with_tls(tls_postgres.other_ca)
    result = attune(url, "migrate")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("attune: cannot connect to the database: ")
    assert "certificate verify failed" in lines[0]
    settings = load_settings({"DATABASE_URL": url}, need_kafka=False)
    pool = await create_pool(settings, application_name="tls-test")
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await pool.fetchval("SELECT 1")
    finally:
        await pool.close()


async def test_the_system_trust_store_does_not_know_a_private_ca(
    tls_postgres: TlsPostgres,
) -> None:
    """sslrootcert=system verifies against the system's CAs: a private CA's server is refused
    (not accepted unverified)."""
    settings = load_settings({"DATABASE_URL": tls_postgres.with_tls("system")}, need_kafka=False)
    pool = await create_pool(settings, application_name="tls-test")
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await pool.fetchval("SELECT 1")
    finally:
        await pool.close()


def test_verification_without_a_ca_bundle_is_refused_at_start(tls_postgres: TlsPostgres) -> None:
    result = attune(f"{tls_postgres.url}?sslmode=verify-full", "migrate")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "attune: invalid configuration: DATABASE_URL is invalid: sslmode=verify-full needs the "
        "CA bundle that signed the server's certificate: add sslrootcert=/path/to/ca.pem (or "
        "sslrootcert=system for a public CA)"
    )
    missing = tls_postgres.ca.with_name("missing.pem")
    with pytest.raises(SettingsError, match=f"sslrootcert {missing} cannot be read"):
        load_settings({"DATABASE_URL": tls_postgres.with_tls(missing)}, need_kafka=False)


async def test_a_database_the_service_cannot_verify_is_unavailable_not_a_crash(
    aiohttp_client, infra: Infra, tls_postgres: TlsPostgres
) -> None:
    """A server certificate the CA bundle does not vouch for (a misconfigured bundle, or the
    database's certificate rotated to another CA) is the database being unavailable to this
    service: /readyz says so, and a request that needs the database answers 503
    ``database_unavailable`` with Retry-After, as for any outage — not a 500."""
    settings = infra.settings(database_url=tls_postgres.with_tls(tls_postgres.other_ca))
    client = await aiohttp_client(app_factory("login")(settings))
    ready = await client.get("/readyz")
    assert ready.status == 503
    resp = await client.get(
        "/lti/login",
        params={
            "iss": "https://lms.example.edu",
            "login_hint": "u1",
            "target_link_uri": "http://127.0.0.1:8000/app",
            "client_id": "c1",
        },
        headers={"Accept": "application/json"},
    )
    body = await resp.json()
    assert (resp.status, body["error"]["code"]) == (503, "database_unavailable"), body
    assert "Retry-After" in resp.headers
