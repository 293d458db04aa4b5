"""Which services run in which cell is checked at start-up, by name (exit status 2)."""

from __future__ import annotations

import base64
import os

import pytest

from services.jwks.app import create_app as jwks_app
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
