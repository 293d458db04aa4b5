"""Kafka topics, named by domain and schema version. Keep in step with deploy/k8s topics."""

from __future__ import annotations

LAUNCH = "attune.launch.v1"
REGISTRATION = "attune.registration.v1"
KEY = "attune.key.v1"
CHECKIN = "attune.checkin.v1"
# The whole state of each registration, keyed per platform, written by the home region's
# registration service and read by every other cell's mirror (docs/architecture.md,
# "Regions"). One partition: a snapshot's manifest must come after the states it lists and
# before any later change (shared/cells/registrations.py). Log-compacted in production.
REGISTRATION_STATE = "attune.registration-state.v1"
# First sightings of deployments (platform id, deployment id, policy, when): no personal data.
# Every cell writes them; the home region's registration service reads the other cells'.
SIGHTING = "attune.sighting.v1"

ALL: tuple[str, ...] = (LAUNCH, REGISTRATION, KEY, CHECKIN, REGISTRATION_STATE, SIGHTING)

# Topics whose partition count is part of their contract (others: the cluster's choice).
PARTITIONS: dict[str, int] = {REGISTRATION_STATE: 1}
