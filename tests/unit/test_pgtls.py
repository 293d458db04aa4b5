"""DATABASE_URL's TLS parameters, checked once at start-up and applied the same way by the
services' pools and migrations (shared/pgtls.py)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from shared import pgtls

URL = "postgresql://attune:pw@db.example.net:5432/attune"


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("sslmode=verify-everything", 'sslmode "verify-everything" is not one of disable'),
        ("sslmode=verify-full", "sslmode=verify-full needs the CA bundle"),
        ("sslmode=verify-ca", "sslmode=verify-ca needs the CA bundle"),
        ("sslmode=require&sslrootcert=system", "sslrootcert=system goes with sslmode=verify-full"),
        ("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", "cannot be read"),
    ],
)
def test_unusable_tls_parameters_are_named(query: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as err:
        pgtls.check(f"{URL}?{query}")
    assert "pw" not in str(err.value)


def test_a_file_without_a_certificate_is_no_ca_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="holds no PEM certificate"):
        pgtls.check(f"{URL}?sslmode=verify-full&sslrootcert={bundle}")


@pytest.mark.parametrize("query", ["", "sslmode=disable", "sslmode=require", "sslmode=prefer"])
def test_modes_that_need_no_bundle(query: str) -> None:
    pgtls.check(f"{URL}?{query}")
    assert pgtls.connect_args(f"{URL}?{query}") == (f"{URL}?{query}", {})


def test_system_trust_store_becomes_a_hostname_checking_context() -> None:
    dsn, kwargs = pgtls.connect_args(
        f"{URL}?application_name=x&sslmode=verify-full&sslrootcert=system"
    )
    assert dsn == f"{URL}?application_name=x"
    context = kwargs["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # the system's CAs are loaded
