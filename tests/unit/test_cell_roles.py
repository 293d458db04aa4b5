"""Which services run in which cell is checked at start-up, by name (exit status 2)."""

from __future__ import annotations

import base64
import os

import pytest

from services.jwks.app import create_app as jwks_app
from services.registration import manual
from services.registration.app import create_app as registration_app
from shared.settings import SettingsError, load_settings

BASE = {
    "DATABASE_URL": "postgresql://attune@db.internal:5432/attune",
    "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
    "ATTUNE_PUBLIC_URL": "https://attune.example.edu",
    "ATTUNE_REGIONS": "us-east-1=https://us.attune.example.edu,eu-west-1=https://eu.attune.example.edu",
    "ATTUNE_REGION": "us-east-1",
    "ATTUNE_SECRET_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
}


def test_the_registration_service_runs_in_the_home_region_only() -> None:
    registration_app(load_settings({**BASE, "ATTUNE_CELL_KAFKA": "eu-west-1=eu:9093"}))
    elsewhere = {**BASE, "ATTUNE_REGION": "eu-west-1", "ATTUNE_HOME_KAFKA_BOOTSTRAP_SERVERS": "h:1"}
    with pytest.raises(SettingsError, match="runs in the home region only"):
        registration_app(load_settings(elsewhere))


def test_the_jwks_service_runs_in_the_home_region_only() -> None:
    """Elsewhere checkins rotates the cell's keys, a next key waiting for the home JWKS; a
    jwks service there would rotate without waiting."""
    kek = {"ATTUNE_KEY_ENCRYPTION_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode()}
    jwks_app(load_settings({**BASE, **kek}))
    elsewhere = {
        **BASE,
        **kek,
        "ATTUNE_REGION": "eu-west-1",
        "ATTUNE_HOME_KAFKA_BOOTSTRAP_SERVERS": "h:1",
    }
    with pytest.raises(SettingsError, match="runs in the home region only"):
        jwks_app(load_settings(elsewhere))


def test_the_home_region_reads_only_cells_the_region_map_names() -> None:
    with pytest.raises(SettingsError, match="ap-southeast-2 is not in ATTUNE_REGIONS"):
        registration_app(load_settings({**BASE, "ATTUNE_CELL_KAFKA": "ap-southeast-2=ap:9093"}))


def test_a_registration_names_a_region_only_where_there_is_a_choice() -> None:
    """Several regions: a Moodle defaults to the home region's cell, Canvas to any cell, an
    unknown region is a field error. One region: nothing is recorded (a region map added later
    must not find registrations tied to a region name it does not have)."""
    body = {
        "product": "moodle",
        "issuer": "https://moodle.school.example",
        "client_id": "c1",
        "deployment_id": "1",
        "auth_url": "https://moodle.school.example/mod/lti/auth.php",
        "jwks_url": "https://moodle.school.example/mod/lti/certs.php",
    }
    regions = ["us-east-1", "eu-west-1"]
    parsed = manual.parse(body, allow_insecure=True, regions=regions, home="us-east-1")
    assert parsed.record.region == "us-east-1"
    chosen = {**body, "region": "eu-west-1"}
    assert manual.parse(chosen, allow_insecure=True, regions=regions).record.region == "eu-west-1"
    anywhere = {**body, "region": None}
    assert manual.parse(anywhere, allow_insecure=True, regions=regions).record.region is None
    with pytest.raises(manual.FieldErrors) as refused:
        manual.parse({**body, "region": "mars-1"}, allow_insecure=True, regions=regions)
    assert set(refused.value.fields) == {"region"}
    single = manual.parse(
        {**body, "region": "default"}, allow_insecure=True, regions=["default"], home="default"
    )
    assert single.record.region is None
    alone = manual.parse(body, allow_insecure=True, regions=["default"], home="default")
    assert alone.record.region is None
