"""Kafka topics, named by domain and schema version. Keep in step with deploy/k8s topics."""

from __future__ import annotations

LAUNCH = "attune.launch.v1"
REGISTRATION = "attune.registration.v1"
KEY = "attune.key.v1"
CHECKIN = "attune.checkin.v1"

ALL: tuple[str, ...] = (LAUNCH, REGISTRATION, KEY, CHECKIN)
