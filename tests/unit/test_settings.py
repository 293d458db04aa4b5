import subprocess
import sys

import pytest

from shared.settings import SettingsError, describe, load_settings

BASE = {
    "DATABASE_URL": "postgresql://attune:s3cret-pw@db.internal:5432/attune",
    "KAFKA_BOOTSTRAP_SERVERS": "k1:9092, k2:9093",
}


def test_defaults_and_parsing() -> None:
    s = load_settings(BASE)
    assert s.env == "production"
    assert s.port == 8080
    assert s.bootstrap_servers == ["k1:9092", "k2:9093"]
    assert s.kafka_enable_idempotence is True
    assert s.effective_log_format == "json"


def test_insecure_urls_refused_in_production() -> None:
    with pytest.raises(SettingsError, match="refused when ATTUNE_ENV=production"):
        load_settings({**BASE, "ATTUNE_ALLOW_INSECURE_URLS": "true"})
    load_settings({**BASE, "ATTUNE_ALLOW_INSECURE_URLS": "true", "ATTUNE_ENV": "development"})


def test_cell_roles() -> None:
    """Unset: the home region (or one region). A cell elsewhere names the home cluster; the
    home region names the other cells' clusters; never both, never itself."""
    home = load_settings(
        {**BASE, "ATTUNE_REGION": "us-east-1", "ATTUNE_CELL_KAFKA": "eu-west-1=e1:9093, e2:9093;"}
    )
    assert not home.is_remote_cell
    assert home.cells() == {"eu-west-1": "e1:9093,e2:9093"}
    remote = home.cell_kafka_of("eu-west-1")
    assert remote.bootstrap_servers == ["e1:9093", "e2:9093"]
    assert remote.kafka_create_topics is False and remote.database_url == home.database_url
    cell = load_settings(
        {
            **BASE,
            "ATTUNE_HOME_KAFKA_BOOTSTRAP_SERVERS": "h1:9094",
            "ATTUNE_HOME_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "ATTUNE_HOME_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "ATTUNE_HOME_KAFKA_SASL_USERNAME": "eu-cell",
            "ATTUNE_HOME_KAFKA_SASL_PASSWORD": "pw-at-home",
        }
    )
    assert cell.is_remote_cell and cell.cells() == {}
    options = cell.home_kafka().kafka_client_options()
    assert options["bootstrap_servers"] == ["h1:9094"]
    assert options["sasl_plain_username"] == "eu-cell"
    assert options["sasl_plain_password"] == "pw-at-home"
    assert cell.kafka_client_options()["bootstrap_servers"] == ["k1:9092", "k2:9093"]
    assert not load_settings(BASE).is_remote_cell
    with pytest.raises(SettingsError, match="exclude each other"):
        load_settings(
            {**BASE, "ATTUNE_HOME_KAFKA_BOOTSTRAP_SERVERS": "h:1", "ATTUNE_CELL_KAFKA": "eu=e:1"}
        )
    with pytest.raises(SettingsError, match="lists this region"):
        load_settings({**BASE, "ATTUNE_REGION": "eu", "ATTUNE_CELL_KAFKA": "eu=e:1"})
    for bad in ("eu-west-1", "eu=nohost", "=e:1", "eu=e:1;eu=f:2"):
        with pytest.raises(SettingsError, match="ATTUNE_CELL_KAFKA is invalid"):
            load_settings({**BASE, "ATTUNE_CELL_KAFKA": bad})
    with pytest.raises(SettingsError, match="ATTUNE_HOME_KAFKA_BOOTSTRAP_SERVERS is invalid"):
        load_settings({**BASE, "ATTUNE_HOME_KAFKA_BOOTSTRAP_SERVERS": "no-port"})


def test_dev_canvas_cloud_only_with_insecure_urls() -> None:
    """The emulator's hosted-Canvas cloud makes loopback issuers count as hosted Canvas: a
    development setting, refused unless insecure URLs are allowed (never in production)."""
    cloud = {"ATTUNE_DEV_CANVAS_CLOUD": "http://localhost:8001"}
    with pytest.raises(SettingsError, match="needs ATTUNE_ALLOW_INSECURE_URLS"):
        load_settings({**BASE, **cloud})
    dev = {**BASE, **cloud, "ATTUNE_ALLOW_INSECURE_URLS": "true", "ATTUNE_ENV": "development"}
    assert load_settings(dev).dev_canvas_cloud == "http://localhost:8001"
    with pytest.raises(SettingsError, match="ATTUNE_DEV_CANVAS_CLOUD"):
        load_settings({**dev, "ATTUNE_DEV_CANVAS_CLOUD": "localhost:8001"})


def test_settings_are_frozen() -> None:
    s = load_settings(BASE)
    with pytest.raises(Exception, match="frozen"):
        s.port = 1  # type: ignore[misc]


def test_migrate_does_not_need_kafka() -> None:
    s = load_settings({"DATABASE_URL": BASE["DATABASE_URL"]}, need_kafka=False)
    assert s.kafka_bootstrap_servers is None
    with pytest.raises(SettingsError, match="KAFKA_BOOTSTRAP_SERVERS is missing"):
        _ = s.bootstrap_servers


def test_missing_variable_is_named() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"KAFKA_BOOTSTRAP_SERVERS": "k:9092"})
    assert str(err.value) == "invalid configuration: DATABASE_URL is missing"


def test_empty_value_counts_as_missing() -> None:
    with pytest.raises(SettingsError, match="KAFKA_BOOTSTRAP_SERVERS is missing"):
        load_settings({**BASE, "KAFKA_BOOTSTRAP_SERVERS": "  "})


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("ATTUNE_PORT", "eighty"),
        ("ATTUNE_PORT", "70000"),
        ("KAFKA_ENABLE_IDEMPOTENCE", "maybe"),
        ("ATTUNE_ENV", "staging"),
        ("KAFKA_BOOTSTRAP_SERVERS", "no-port-here"),
        ("DATABASE_URL", "mysql://root:hunter2@db/attune"),
        ("ATTUNE_LOG_LEVEL", "LOUD"),
        ("ATTUNE_DB_POOL_MAX", "0"),
        # A group of 2 is one answer beside one the teacher can give (docs/checkins.md).
        ("ATTUNE_CHECKIN_MIN_CLASS_SIZE", "2"),
    ],
)
def test_malformed_value_is_named(var: str, value: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({**BASE, var: value})
    message = str(err.value)
    assert message.startswith("invalid configuration: ")
    assert f"{var} is invalid" in message
    assert "hunter2" not in message
    for pydantic_words in ("Input should", "unable to", "valid integer", "Value error", "'"):
        assert pydantic_words not in message, message


@pytest.mark.parametrize(
    ("var", "value", "said"),
    [
        ("ATTUNE_PORT", "abc", 'it must be a whole number from 1 to 65535, not "abc"'),
        ("ATTUNE_PORT", "70000", 'it must be a whole number from 1 to 65535, not "70000"'),
        ("ATTUNE_DB_POOL_MAX", "0", 'it must be a whole number of at least 1, not "0"'),
        ("ATTUNE_HTTP_TIMEOUT_S", "soon", 'it must be a number greater than 0, not "soon"'),
        ("KAFKA_ENABLE_IDEMPOTENCE", "maybe", 'it must be true or false, not "maybe"'),
        ("ATTUNE_ENV", "staging", 'it must be one of production, development, test, not "staging"'),
        ("KAFKA_BOOTSTRAP_SERVERS", "no-port", '"no-port" is not host:port'),
        ("DATABASE_URL", "mysql://root:hunter2@db/a", "it must be a postgresql://"),
    ],
)
def test_errors_are_in_attunes_words(var: str, value: str, said: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({**BASE, var: value})
    assert str(err.value).startswith(f"invalid configuration: {var} is invalid: {said}")


def test_several_problems_reported_together() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"ATTUNE_PORT": "x"})
    message = str(err.value)
    assert "DATABASE_URL is missing" in message
    assert "KAFKA_BOOTSTRAP_SERVERS is missing" in message
    assert "ATTUNE_PORT is invalid" in message


def test_secrets_never_print() -> None:
    s = load_settings({**BASE, "KAFKA_SASL_PASSWORD": "kafka-pw-123"})
    for text in (repr(s), str(s), str(s.model_dump())):
        assert "s3cret-pw" not in text
        assert "kafka-pw-123" not in text
    assert s.database_url.get_secret_value().endswith("/attune")


def test_unknown_environment_variables_are_ignored() -> None:
    load_settings({**BASE, "ATTUNE_SOMETHING_ELSE": "x", "PATH": "/bin"})


def test_every_setting_is_documented() -> None:
    rows = describe()
    assert len(rows) >= 20
    for var, _default, meaning in rows:
        assert var.isupper()
        assert meaning, var


def test_cli_bad_configuration_exits_2_with_one_line() -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "not a url", "KAFKA_BOOTSTRAP_SERVERS": "k:1"}
    result = subprocess.run(
        [sys.executable, "-m", "attune.cli", "serve", "login"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DATABASE_URL is invalid" in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_migrate_missing_database_url_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "attune.cli", "migrate"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "attune: invalid configuration: DATABASE_URL is missing"


def test_cli_service_specific_setting_exits_2() -> None:
    env = {"PATH": "/usr/bin:/bin", **BASE}
    result = subprocess.run(
        [sys.executable, "-m", "attune.cli", "serve", "login"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "attune: invalid configuration: ATTUNE_PUBLIC_URL is missing"


def test_readme_documents_every_setting() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [var for var, _default, _meaning in describe() if f"| `{var}` |" not in readme]
    assert not missing, f"README configuration table lacks {missing}"


def attune_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attune.cli", *args],
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_settings_read_as_an_operator_writes_them() -> None:
    result = attune_cli("settings", env={**BASE, "ATTUNE_PORT": "9000"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "ATTUNE_ENV: production (the default)" in out
    assert "ATTUNE_PORT: 9000 (set here; default 8080)" in out
    assert "KAFKA_ENABLE_IDEMPOTENCE: true (the default)" in out
    assert "ATTUNE_PUBLIC_URL: not set (the default)" in out
    assert "DATABASE_URL: set here (a secret: not shown)" in out
    assert "s3cret-pw" not in out
    for python in ("'production'", "None", "True", "False", "`"):
        assert python not in out, python
    assert attune_cli("settings").stdout.count("DATABASE_URL: not set (required)") == 1


def test_cli_settings_into_a_closed_pipe_is_no_error() -> None:
    """attune settings | head -1: the reader leaves early; no traceback, exit status 0."""
    with subprocess.Popen(
        [sys.executable, "-m", "attune.cli", "settings"],
        env={"PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith("Attune reads")
        proc.stdout.close()
        assert proc.wait(timeout=60) == 0
        errors = proc.stderr.read()
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors


def test_cli_help_says_what_attune_is_and_where_to_start() -> None:
    result = attune_cli("--help")
    assert result.returncode == 0
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].startswith("usage: attune COMMAND")
    assert lines[1] == "Attune: student wellbeing check-ins for Canvas and Moodle, an LTI 1.3 tool."
    assert "attune dev" in result.stdout and "attune settings" in result.stdout
    assert "attune admin create-install-code" in result.stdout
    for internal in ("``", "composition root", "services.<name>"):
        assert internal not in result.stdout, internal
