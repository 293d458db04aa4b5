"""Typed, frozen settings read from the environment exactly once.

Every setting has one environment variable. ``load_settings`` is the only place in the code base
that reads ``os.environ``; everything else receives a ``Settings`` object. A missing or
malformed value raises ``SettingsError`` whose message names the variable (and never echoes a
secret's value), so ``attune`` can print one line and exit with status 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from shared import pgtls

Environment = Literal["production", "development", "test"]
LogFormat = Literal["json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

Port = Annotated[int, Field(ge=1, le=65535)]


class SettingsError(Exception):
    """Configuration is missing or malformed; the message names every offending variable."""


def _env(name: str, description: str, **kwargs: Any) -> Any:
    return Field(validation_alias=name, description=description, **kwargs)


class Settings(BaseModel):
    """All configuration of every Attune process. Immutable once built."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=False, strict=False)

    env: Environment = _env(
        "ATTUNE_ENV",
        "production, development or test. Development relaxes nothing security-relevant "
        "by itself; it only changes defaults such as log format.",
        default="production",
    )
    host: str = _env("ATTUNE_HOST", "Address a service listens on.", default="127.0.0.1")
    port: Port = _env("ATTUNE_PORT", "Port a service listens on.", default=8080)
    database_url: SecretStr = _env(
        "DATABASE_URL",
        "Postgres URL (postgresql://user:password@host:port/db). Required. TLS: add libpq's "
        "sslmode=verify-full&sslrootcert=/path/to/ca.pem (the CA bundle that signed the "
        "server's certificate), or sslrootcert=system for a certificate from a public CA.",
    )
    db_pool_max: int = _env("ATTUNE_DB_POOL_MAX", "Maximum pooled connections.", default=10, ge=1)
    db_statement_timeout_ms: int = _env(
        "ATTUNE_DB_STATEMENT_TIMEOUT_MS", "Server-side statement timeout.", default=5000, ge=100
    )
    kafka_bootstrap_servers: str | None = _env(
        "KAFKA_BOOTSTRAP_SERVERS",
        "Comma-separated host:port list of the Kafka brokers. Required by every service "
        "(not by attune migrate).",
        default=None,
    )
    kafka_security_protocol: KafkaSecurityProtocol = _env(
        "KAFKA_SECURITY_PROTOCOL", "Kafka transport security.", default="PLAINTEXT"
    )
    kafka_sasl_mechanism: KafkaSaslMechanism | None = _env(
        "KAFKA_SASL_MECHANISM", "SASL mechanism when the protocol is SASL_*.", default=None
    )
    kafka_sasl_username: str | None = _env("KAFKA_SASL_USERNAME", "SASL user name.", default=None)
    kafka_sasl_password: SecretStr | None = _env(
        "KAFKA_SASL_PASSWORD", "SASL password.", default=None
    )
    kafka_enable_idempotence: bool = _env(
        "KAFKA_ENABLE_IDEMPOTENCE",
        "Idempotent producer. On for real Kafka; the embedded development broker refuses it.",
        default=True,
    )
    kafka_create_topics: bool = _env(
        "ATTUNE_KAFKA_CREATE_TOPICS",
        "Create missing topics at start-up (development). Production declares topics "
        "as operator resources instead.",
        default=False,
    )
    kafka_topic_partitions: int = _env(
        "ATTUNE_KAFKA_TOPIC_PARTITIONS", "Partitions for topics Attune creates.", default=3, ge=1
    )
    kafka_session_timeout_ms: int = _env(
        "ATTUNE_KAFKA_SESSION_TIMEOUT_MS", "Consumer group session timeout.", default=10000, ge=500
    )
    kafka_request_timeout_ms: int = _env(
        "ATTUNE_KAFKA_REQUEST_TIMEOUT_MS", "Kafka request timeout.", default=5000, ge=500
    )
    ready_requires_kafka: bool = _env(
        "ATTUNE_READY_REQUIRES_KAFKA",
        "Whether /readyz fails while the Kafka brokers are unreachable. Writes still succeed "
        "during a broker outage (the outbox holds events), so an operator may turn this off "
        "to keep serving through one.",
        default=True,
    )
    log_level: LogLevel = _env("ATTUNE_LOG_LEVEL", "Log level.", default="INFO")
    log_format: LogFormat | None = _env(
        "ATTUNE_LOG_FORMAT",
        "json or console. Default: console in development, json otherwise.",
        default=None,
    )
    shutdown_timeout_s: float = _env(
        "ATTUNE_SHUTDOWN_TIMEOUT_S",
        "Seconds a service waits for in-flight requests on shutdown.",
        default=10.0,
        gt=0,
    )
    max_request_bytes: int = _env(
        "ATTUNE_MAX_REQUEST_BYTES", "Largest request body accepted.", default=65536, ge=1024
    )
    outbox_poll_interval_ms: int = _env(
        "ATTUNE_OUTBOX_POLL_INTERVAL_MS",
        "Relay poll interval: rows written by other processes (CLI commands) are published "
        "within it; a service's own writes wake its relay at once.",
        default=1000,
        ge=10,
    )
    outbox_linger_ms: int = _env(
        "ATTUNE_OUTBOX_LINGER_MS",
        "After a wake-up, how long the relay waits for more commits to publish them as one batch "
        "(fewer round trips per event under load; adds at most this to event latency).",
        default=50,
        ge=0,
        le=1000,
    )
    outbox_batch_size: int = _env(
        "ATTUNE_OUTBOX_BATCH_SIZE", "Events the relay publishes per batch.", default=500, ge=1
    )
    outbox_retention_hours: float = _env(
        "ATTUNE_OUTBOX_RETENTION_HOURS", "How long sent outbox rows are kept.", default=24.0, gt=0
    )

    # --- the tool's public identity and regions ---
    public_url: str | None = _env(
        "ATTUNE_PUBLIC_URL",
        "The tool's public base URL as LMSes reach it (https://attune.example.edu). Required "
        "by the LTI services.",
        default=None,
    )
    region: str = _env(
        "ATTUNE_REGION", "This deployment's region (a key of ATTUNE_REGIONS).", default="default"
    )
    regions: str | None = _env(
        "ATTUNE_REGIONS",
        "Region map: comma-separated region=base_url pairs (us-east-1=https://us.attune.example)"
        ". Each region's login and launch URLs hang off its base URL. Default: one region, "
        "ATTUNE_REGION, at ATTUNE_PUBLIC_URL.",
        default=None,
    )
    # --- regional cells (docs/architecture.md, "Regions") ---
    home_kafka_bootstrap_servers: str | None = _env(
        "ATTUNE_HOME_KAFKA_BOOTSTRAP_SERVERS",
        "Set in a cell that is not the home region: the home region's Kafka brokers "
        "(host:port,...), read for the registration state only (read remote, write local). "
        "Unset: this is the home region (or a single-region install) and registrations are "
        "in its own database.",
        default=None,
    )
    home_kafka_security_protocol: KafkaSecurityProtocol = _env(
        "ATTUNE_HOME_KAFKA_SECURITY_PROTOCOL",
        "Transport security towards the home region's Kafka.",
        default="PLAINTEXT",
    )
    home_kafka_sasl_mechanism: KafkaSaslMechanism | None = _env(
        "ATTUNE_HOME_KAFKA_SASL_MECHANISM", "SASL mechanism towards the home Kafka.", default=None
    )
    home_kafka_sasl_username: str | None = _env(
        "ATTUNE_HOME_KAFKA_SASL_USERNAME", "SASL user name at the home Kafka.", default=None
    )
    home_kafka_sasl_password: SecretStr | None = _env(
        "ATTUNE_HOME_KAFKA_SASL_PASSWORD", "SASL password at the home Kafka.", default=None
    )
    cell_kafka: str | None = _env(
        "ATTUNE_CELL_KAFKA",
        "In the home region: the Kafka brokers of every other cell, as region=host:port[,"
        "host:port] entries separated by semicolons (eu-west-1=kafka.eu:9093;ap-southeast-2="
        "kafka.ap:9093). The home region reads the cells' public keys (jwks) and deployment "
        "sightings and observations (registration) from them. Unset: no other cells.",
        default=None,
    )
    cell_kafka_security_protocol: KafkaSecurityProtocol = _env(
        "ATTUNE_CELL_KAFKA_SECURITY_PROTOCOL",
        "Transport security towards the other cells' Kafka (one setting for every cell).",
        default="PLAINTEXT",
    )
    cell_kafka_sasl_mechanism: KafkaSaslMechanism | None = _env(
        "ATTUNE_CELL_KAFKA_SASL_MECHANISM", "SASL mechanism towards the cells' Kafka.", default=None
    )
    cell_kafka_sasl_username: str | None = _env(
        "ATTUNE_CELL_KAFKA_SASL_USERNAME", "SASL user name at the cells' Kafka.", default=None
    )
    cell_kafka_sasl_password: SecretStr | None = _env(
        "ATTUNE_CELL_KAFKA_SASL_PASSWORD", "SASL password at the cells' Kafka.", default=None
    )
    registration_republish_s: int = _env(
        "ATTUNE_REGISTRATION_REPUBLISH_S",
        "How often the registration service publishes the whole registration state again "
        "(also at start): a cell that is new, or whose broker lost the topic, catches up "
        "within this without anyone running SQL.",
        default=3600,
        ge=5,
    )

    allow_insecure_urls: bool = _env(
        "ATTUNE_ALLOW_INSECURE_URLS",
        "DEVELOPMENT ONLY: accept http:// and loopback platform URLs (JWKS, auth, "
        "registration). Logged loudly at start-up; refused when ATTUNE_ENV=production.",
        default=False,
    )
    http_timeout_s: float = _env(
        "ATTUNE_HTTP_TIMEOUT_S", "Timeout of every outbound HTTP call.", default=5.0, gt=0
    )
    dev_canvas_cloud: str | None = _env(
        "ATTUNE_DEV_CANVAS_CLOUD",
        "DEVELOPMENT ONLY (needs ATTUNE_ALLOW_INSECURE_URLS): base URL of the LMS emulator's "
        "hosted-Canvas cloud (issuers {base}/canvas, {base}/canvas-beta, {base}/canvas-test; "
        "auth domains {base}/sso...), treated like Instructure's. Set by attune dev.",
        default=None,
    )

    # --- secrets for values Attune signs for itself (state, launch tokens) ---
    secret_keys: SecretStr | None = _env(
        "ATTUNE_SECRET_KEYS",
        "Comma-separated secrets (32+ random bytes each, base64 or hex). The first signs; all "
        "verify, so a new secret is added first and the old one removed after a day. Purpose-"
        "specific keys are derived from them with HKDF. Required by login, launch, checkins.",
        default=None,
    )

    # --- login and launch ---
    state_ttl_s: int = _env(
        "ATTUNE_STATE_TTL_S",
        "How long a login state is valid for its launch.",
        default=600,
        ge=30,
        le=3600,
    )
    jwt_leeway_s: int = _env(
        "ATTUNE_JWT_LEEWAY_S",
        "Clock skew tolerated on id_token exp/iat.",
        default=10,
        ge=0,
        le=300,
    )
    jwt_max_age_s: int = _env(
        "ATTUNE_JWT_MAX_AGE_S", "Oldest id_token iat accepted.", default=600, ge=30, le=86400
    )
    platform_jwks_cooldown_s: float = _env(
        "ATTUNE_PLATFORM_JWKS_COOLDOWN_S",
        "Least time between two fetches of one platform's JWKS (unknown-kid refreshes).",
        default=5.0,
        ge=0,
    )
    platform_jwks_max_age_s: float = _env(
        "ATTUNE_PLATFORM_JWKS_MAX_AGE_S",
        "A platform JWKS older than this is refetched (the last good set is kept on failure).",
        default=3600.0,
        gt=0,
    )
    launch_token_ttl_s: int = _env(
        "ATTUNE_LAUNCH_TOKEN_TTL_S",
        "Lifetime of the launch token the app uses after a launch.",
        default=3600,
        ge=60,
        le=86400,
    )
    launch_retention_days: int = _env(
        "ATTUNE_LAUNCH_RETENTION_DAYS",
        "Launch records (who launched what, with which roles) older than this are deleted by "
        "the launch service; 0 keeps them.",
        default=90,
        ge=0,
    )

    # --- abuse limits ---
    rate_limit_ip_per_s: float = _env(
        "ATTUNE_RATE_LIMIT_IP_PER_S",
        "Sustained requests per second per client address on /lti/* and admin paths (per "
        "replica). Generous: a school may share one NAT address.",
        default=50.0,
        gt=0,
    )
    rate_limit_ip_burst: float = _env(
        "ATTUNE_RATE_LIMIT_IP_BURST", "Burst allowed per client address.", default=300.0, ge=1
    )
    rate_limit_platform_per_s: float = _env(
        "ATTUNE_RATE_LIMIT_PLATFORM_PER_S",
        "Sustained logins or launches per second per platform registration (per replica).",
        default=300.0,
        gt=0,
    )
    rate_limit_platform_burst: float = _env(
        "ATTUNE_RATE_LIMIT_PLATFORM_BURST",
        "Burst allowed per platform registration.",
        default=3000.0,
        ge=1,
    )
    trusted_proxy_hops: int = _env(
        "ATTUNE_TRUSTED_PROXY_HOPS",
        "Proxies in front of the services that append to X-Forwarded-For (the ingress: 1). "
        "0 uses the TCP peer address.",
        default=0,
        ge=0,
        le=5,
    )

    # --- registration ---
    tool_name: str = _env(
        "ATTUNE_TOOL_NAME", "Name shown to LMS administrators and in LMS menus.", default="Attune"
    )
    registration_auth: Literal["install_code", "admin_token"] = _env(
        "ATTUNE_REGISTRATION_AUTH",
        "How the public dynamic registration page is guarded: a single-use install code "
        "(created with attune admin create-install-code) or an admin API token.",
        default="install_code",
    )
    install_code_ttl_s: int = _env(
        "ATTUNE_INSTALL_CODE_TTL_S",
        "How long an unused install code stays valid.",
        default=7 * 86400,
        ge=300,
    )
    canvas_privacy_level: Literal["public", "name_only", "email_only", "anonymous"] = _env(
        "ATTUNE_CANVAS_PRIVACY_LEVEL",
        "The privacy level Attune asks Canvas for (names let teachers see who may need a "
        "conversation; anonymous check-ins never reveal identities either way).",
        default="name_only",
    )
    ags_enabled: bool = _env(
        "ATTUNE_AGS_ENABLED",
        "Also ask for the Assignment and Grade Services scopes.",
        default=False,
    )

    # --- check-ins ---
    checkin_min_class_size: int = _env(
        "ATTUNE_CHECKIN_MIN_CLASS_SIZE",
        "Results of a check-in (anonymous ones for teachers, every class picture for "
        "students) appear once this many students answered and then change only when this "
        "many more did, so no single answer ever shows on its own (at least 3).",
        default=5,
        ge=3,
    )
    checkin_retention_days: int | None = _env(
        "ATTUNE_CHECKIN_RETENTION_DAYS",
        "Check-ins closed longer ago than this are deleted with their answers (audited); "
        "unset keeps them.",
        default=None,
        ge=1,
    )
    checkin_nrps_refresh_s: int = _env(
        "ATTUNE_CHECKIN_NRPS_REFRESH_S",
        "A course's roster is fetched from the LMS (Names and Role Provisioning) at most this "
        "often; launches within it do not trigger another fetch.",
        default=3600,
        ge=0,
    )

    # --- tool keys (jwks service) ---
    key_encryption_keys: SecretStr | None = _env(
        "ATTUNE_KEY_ENCRYPTION_KEYS",
        "Comma-separated id:base64 pairs of 32-byte AES keys that encrypt tool private keys at "
        "rest. The first wraps new keys; the others only unwrap (KEK rotation: add a new "
        "first entry, run attune keys rewrap, then drop the old one). Required by services "
        "that sign.",
        default=None,
    )
    key_rotation_days: float = _env(
        "ATTUNE_KEY_ROTATION_DAYS", "How often the tool signing key rotates.", default=30.0, gt=0
    )
    key_publish_ahead_s: int = _env(
        "ATTUNE_KEY_PUBLISH_AHEAD_S",
        "How long a new key is published in the JWKS before it signs anything: at least one "
        "platform JWKS cache period (Canvas caches 5 minutes).",
        default=3600,
        ge=300,
    )
    key_token_lifetime_s: int = _env(
        "ATTUNE_KEY_TOKEN_LIFETIME_S",
        "Longest lifetime of anything signed with a tool key; a retired key stays published "
        "this long (plus the cache period) before removal.",
        default=3600,
        ge=60,
    )

    @model_validator(mode="after")
    def _no_insecure_production(self) -> Settings:
        if self.allow_insecure_urls and self.env == "production":
            raise ValueError(
                "ATTUNE_ALLOW_INSECURE_URLS=true is refused when ATTUNE_ENV=production"
            )
        if self.dev_canvas_cloud is not None and not self.allow_insecure_urls:
            raise ValueError(
                "ATTUNE_DEV_CANVAS_CLOUD is a development setting: it needs "
                "ATTUNE_ALLOW_INSECURE_URLS=true"
            )
        return self

    @model_validator(mode="after")
    def _one_cell_role(self) -> Settings:
        if self.home_kafka_bootstrap_servers is not None and self.cell_kafka is not None:
            raise ValueError(
                "ATTUNE_HOME_KAFKA_BOOTSTRAP_SERVERS (a cell outside the home region) and "
                "ATTUNE_CELL_KAFKA (the home region's list of other cells) exclude each other"
            )
        if self.cell_kafka is not None and self.region in parse_cell_kafka(self.cell_kafka):
            raise ValueError(
                f'ATTUNE_CELL_KAFKA is invalid: it lists this region ("{self.region}"); it '
                "names the other cells only"
            )
        return self

    @field_validator("dev_canvas_cloud")
    @classmethod
    def _cloud_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ValueError("must be an http(s) base URL such as http://localhost:8001")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
            raise ValueError("it must be a postgresql://user:password@host:port/database URL")
        pgtls.check(value.get_secret_value())  # sslmode and its CA bundle
        return value

    @field_validator("kafka_bootstrap_servers", "home_kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str | None) -> str | None:
        return None if value is None else _servers(value)

    @field_validator("cell_kafka")
    @classmethod
    def _cell_kafka(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return ";".join(f"{r}={s}" for r, s in parse_cell_kafka(value).items())

    @property
    def is_remote_cell(self) -> bool:
        """A cell outside the home region: its registrations are a mirror of the home's."""
        return self.home_kafka_bootstrap_servers is not None

    def cells(self) -> dict[str, str]:
        """The other cells' Kafka bootstrap lists by region (home region only)."""
        return parse_cell_kafka(self.cell_kafka) if self.cell_kafka else {}

    def home_kafka(self) -> Settings:
        """These settings with Kafka pointing at the home region's cluster (a remote cell)."""
        if self.home_kafka_bootstrap_servers is None:
            raise SettingsError(
                "invalid configuration: ATTUNE_HOME_KAFKA_BOOTSTRAP_SERVERS is missing"
            )
        return self._other_kafka(
            self.home_kafka_bootstrap_servers,
            self.home_kafka_security_protocol,
            self.home_kafka_sasl_mechanism,
            self.home_kafka_sasl_username,
            self.home_kafka_sasl_password,
        )

    def cell_kafka_of(self, region: str) -> Settings:
        """These settings with Kafka pointing at another cell's cluster (home region)."""
        return self._other_kafka(
            self.cells()[region],
            self.cell_kafka_security_protocol,
            self.cell_kafka_sasl_mechanism,
            self.cell_kafka_sasl_username,
            self.cell_kafka_sasl_password,
        )

    def _other_kafka(
        self,
        servers: str,
        protocol: KafkaSecurityProtocol,
        mechanism: KafkaSaslMechanism | None,
        username: str | None,
        password: SecretStr | None,
    ) -> Settings:
        # Never creates topics there: a cluster's topics are its own cell's to create.
        return self.model_copy(
            update={
                "kafka_bootstrap_servers": servers,
                "kafka_security_protocol": protocol,
                "kafka_sasl_mechanism": mechanism,
                "kafka_sasl_username": username,
                "kafka_sasl_password": password,
                "kafka_create_topics": False,
            }
        )

    @property
    def bootstrap_servers(self) -> list[str]:
        if self.kafka_bootstrap_servers is None:
            raise SettingsError("invalid configuration: KAFKA_BOOTSTRAP_SERVERS is missing")
        return self.kafka_bootstrap_servers.split(",")

    @property
    def effective_log_format(self) -> LogFormat:
        if self.log_format is not None:
            return self.log_format
        return "console" if self.env == "development" else "json"

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection options shared by every aiokafka producer, consumer and admin client."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
            "request_timeout_ms": self.kafka_request_timeout_ms,
        }
        if self.kafka_sasl_mechanism is not None:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            import ssl

            options["ssl_context"] = ssl.create_default_context()
        return options


def _servers(value: str) -> str:
    """A comma-separated host:port list, normalised; ValueError naming a bad entry."""
    servers = [s.strip() for s in value.split(",") if s.strip()]
    if not servers:
        raise ValueError("must list at least one host:port")
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f'"{server}" is not host:port')
    return ",".join(servers)


def parse_cell_kafka(value: str) -> dict[str, str]:
    """``region=host:port[,host:port];region=...`` as {region: bootstrap list}."""
    cells: dict[str, str] = {}
    for entry in (e.strip() for e in value.split(";")):
        if not entry:
            continue
        region, sep, servers = entry.partition("=")
        region = region.strip()
        if not sep or not region:
            raise ValueError(f'"{entry}" is not region=host:port')
        if region in cells:
            raise ValueError(f'region "{region}" is listed twice')
        cells[region] = _servers(servers)
    if not cells:
        raise ValueError("must list at least one region=host:port")
    return cells


def env_var_names() -> dict[str, str]:
    """Map field name to environment variable name, for docs and tests."""
    return {name: str(field.validation_alias) for name, field in Settings.model_fields.items()}


def plain(value: object) -> str:
    """A value as an operator writes it in the environment: ``true``/``false``, numbers and
    words as they are; ``not set`` for no value (never a Python repr)."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) >= 1 else str(value)
    return str(value)


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, in declaration order, in plain words."""
    rows = []
    for field in Settings.model_fields.values():
        default = "required" if field.is_required() else plain(field.default)
        rows.append((str(field.validation_alias), default, field.description or ""))
    return rows


def _secret(field: FieldInfo) -> bool:
    return SecretStr in (field.annotation, *get_args(field.annotation))


SECRET = "<secret>"  # noqa: S105 - configured()'s stand-in for a secret's value


def configured(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables set in ``environ`` (default ``os.environ``) with their values as set;
    a secret's value is never returned: ``SECRET`` stands in for it."""
    source = os.environ if environ is None else environ
    found = {}
    for field in Settings.model_fields.values():
        var = str(field.validation_alias)
        raw = source.get(var)
        if raw is not None and raw.strip() != "":
            found[var] = SECRET if _secret(field) else raw.strip()
    return found


def load_settings(
    environ: Mapping[str, str] | None = None, *, need_kafka: bool = True, **overrides: Any
) -> Settings:
    """Build ``Settings`` from ``environ`` (default ``os.environ``) plus keyword overrides.

    Only variables Attune knows are read. Empty strings count as unset. ``need_kafka=False``
    is for commands that never talk to Kafka (``attune migrate``). Raises ``SettingsError``
    naming each bad variable; a secret's value is never part of the message.
    """
    source = os.environ if environ is None else environ
    names = env_var_names()
    data: dict[str, Any] = {}
    for var in names.values():
        raw = source.get(var)
        if raw is not None and raw.strip() != "":
            data[var] = raw.strip()
    for field_name, value in overrides.items():
        if field_name not in names:
            raise TypeError(f"unknown setting {field_name!r}")
        data[names[field_name]] = value
    problems: list[str] = []
    if need_kafka and "KAFKA_BOOTSTRAP_SERVERS" not in data:
        problems.append("KAFKA_BOOTSTRAP_SERVERS is missing")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_format_errors(exc, names, problems, data)) from None
    if problems:
        raise SettingsError("invalid configuration: " + "; ".join(problems))
    return settings


def _format_errors(
    exc: ValidationError, names: dict[str, str], extra: list[str], data: Mapping[str, Any]
) -> str:
    problems = []
    fields = {str(f.validation_alias): f for f in Settings.model_fields.values()}
    for error in exc.errors(include_input=False, include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if not error["loc"]:  # a rule across several settings; the message names them
            problems.append(message)
            continue
        loc = str(error["loc"][0])
        var = names.get(loc, loc)
        if error["type"] == "missing":
            problems.append(f"{var} is missing")
            continue
        field = fields.get(var)
        expected = _expectation(field) if field is not None else None
        if error["type"] == "value_error" or expected is None:
            problems.append(f"{var} is invalid: {message}")  # our validators' own words
            continue
        shown = "" if field is None or _secret(field) else f', not "{str(data.get(var))[:60]}"'
        problems.append(f"{var} is invalid: it must be {expected}{shown}")
    return "invalid configuration: " + "; ".join(problems + extra)


def _expectation(field: FieldInfo) -> str | None:
    """What a variable must hold, in words (``a whole number from 1 to 65535``), or None when
    its validator says it."""
    kinds = [a for a in (get_args(field.annotation) or (field.annotation,)) if a is not type(None)]
    kind = kinds[0] if len(kinds) == 1 else field.annotation
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(kind))
    if kind is bool:
        return "true or false"
    if kind is int:
        return "a whole number" + _bounds(field)
    if kind is float:
        return "a number" + _bounds(field)
    return None


def _bounds(field: FieldInfo) -> str:
    rules: dict[str, str] = {}
    for rule in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if hasattr(rule, name):
                rules[name] = plain(getattr(rule, name))
    if "ge" in rules and "le" in rules:
        return f" from {rules['ge']} to {rules['le']}"
    words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
    parts = [f"{words[name]} {value}" for name, value in rules.items()]
    return (
        (" of " if parts and parts[0].startswith("at ") else " ") + " and ".join(parts)
        if parts
        else ""
    )
