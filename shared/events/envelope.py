"""The one envelope every Attune event travels in.

Encoded as compact UTF-8 JSON. ``id`` is what consumers deduplicate on; ``subject`` names what
the event is about (a platform, a deployment, a check-in) and is a natural partition key.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.ids import uuid7

SCHEMA_VERSION = 1
MAX_EVENT_BYTES = 1_000_000


class MalformedEvent(ValueError):
    """Bytes that are not a valid envelope; consumers park these as dead letters."""


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    source: str
    subject: str
    data: dict[str, Any]
    id: uuid.UUID = field(default_factory=uuid7)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "source": self.source,
            "occurred_at": self.occurred_at.isoformat(),
            "subject": self.subject,
            "schema_version": self.schema_version,
            "data": self.data,
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Event:
        """Parse and validate an envelope; raises ``MalformedEvent`` with the reason."""
        if raw is None:
            raise MalformedEvent("empty message")
        if len(raw) > MAX_EVENT_BYTES:
            raise MalformedEvent("event larger than the maximum size")
        try:
            obj = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedEvent(f"not JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from None
        if not isinstance(obj, dict):
            raise MalformedEvent("envelope is not an object")
        try:
            event_id = uuid.UUID(str(obj["id"]))
            occurred_at = datetime.fromisoformat(str(obj["occurred_at"]))
            version = obj["schema_version"]
            kind, source, subject, data = obj["type"], obj["source"], obj["subject"], obj["data"]
        except KeyError as exc:
            raise MalformedEvent(f"missing field {exc.args[0]}") from None
        except ValueError as exc:
            raise MalformedEvent(f"bad field value: {exc}") from None
        if not all(isinstance(v, str) for v in (kind, source, subject)):
            raise MalformedEvent("type, source and subject must be strings")
        if not isinstance(data, dict):
            raise MalformedEvent("data must be an object")
        if not isinstance(version, int) or isinstance(version, bool):
            raise MalformedEvent("schema_version must be an integer")
        if occurred_at.tzinfo is None:
            raise MalformedEvent("occurred_at must carry a time zone")
        return cls(
            id=event_id,
            type=kind,
            source=source,
            subject=subject,
            data=data,
            occurred_at=occurred_at,
            schema_version=version,
        )
