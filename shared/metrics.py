"""Prometheus metrics, one registry per application (tests build many apps in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Buckets in seconds, dense below 50 ms where the hot paths live.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass
class Metrics:
    """Every metric a service exposes on ``/metrics``."""

    service: str
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.http_requests = Counter(
            "attune_http_requests_total",
            "HTTP requests by route and status.",
            ["service", "method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "attune_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["service", "method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_errors = Counter(
            "attune_http_errors_total",
            "Error responses by stable error code.",
            ["service", "code"],
            registry=r,
        )
        self.outbox_published = Counter(
            "attune_outbox_published_total",
            "Events the relay published to Kafka.",
            ["service", "topic"],
            registry=r,
        )
        self.outbox_failures = Counter(
            "attune_outbox_publish_failures_total",
            "Relay batches that failed and will be retried.",
            ["service", "reason"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "attune_outbox_pending",
            "Unsent outbox rows seen by the last relay pass.",
            ["service"],
            registry=r,
        )
        self.consumer_events = Counter(
            "attune_consumer_events_total",
            "Events handled by consumers, by outcome.",
            ["service", "consumer", "outcome"],
            registry=r,
        )
        self.platform_jwks = Counter(
            "attune_platform_jwks_total",
            "Platform JWKS fetches by outcome.",
            ["service", "outcome"],
            registry=r,
        )
        self.lti_outcomes = Counter(
            "attune_lti_total",
            "Logins and launches by outcome (ok or the stable error code).",
            ["service", "step", "outcome"],
            registry=r,
        )
        self.readiness = Gauge(
            "attune_dependency_up",
            "1 when the dependency answered the last readiness check.",
            ["service", "dependency"],
            registry=r,
        )
