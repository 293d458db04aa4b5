"""``attune admin``: admin API tokens and install codes from an operator's shell.

``add_admin_parser(subparsers)`` adds the ``admin`` command to the ``attune`` parser:

- ``attune admin create-token NAME``: print a new admin API token (shown once; only its SHA-256
  is stored). One active token per name.
- ``attune admin revoke-token NAME``: revoke the active token of that name.
- ``attune admin list-tokens``: names and times, never a token.
- ``attune admin create-install-code [--label L] [--ttl-s N] [--platform-id N]``: print a
  single-use install code for the dynamic registration page. An install code creates a
  registration; with ``--platform-id`` it is a re-registration code, which may update that
  registration only (the LMS's "Update" / re-register of an existing registration).

Every change is written to the registration audit trail with actor ``cli``. Until the command
is wired into ``attune/cli.py`` the same commands run as ``python -m services.registration.cli
admin ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import asyncpg

from services.registration import credentials, queries, store
from shared.db import create_pool
from shared.errors import AttuneError
from shared.logs import configure_logging
from shared.settings import Settings, SettingsError, load_settings

EXIT_CONFIG = 2
EXIT_FAILED = 1
ACTOR = "cli"


class CommandFailed(Exception):
    """An operator error that is not a configuration problem (exit status 1)."""


async def create_token(pool: asyncpg.Pool, name: str) -> str:
    name = name.strip()
    if not 0 < len(name) <= 100:
        raise CommandFailed("a token name must be 1 to 100 characters")
    token = credentials.new_admin_token()
    async with pool.acquire() as conn, conn.transaction():
        try:
            token_id = await queries.create_admin_token(conn, name, credentials.digest(token))
        except asyncpg.UniqueViolationError:
            raise CommandFailed(
                f"an active token named {name!r} exists; revoke it first or pick another name"
            ) from None
        await queries.audit(
            conn,
            actor=ACTOR,
            action="admin_token.created",
            details={"name": name, "admin_token_id": token_id},
        )
    return token


async def revoke_token(pool: asyncpg.Pool, name: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        ids = await queries.revoke_admin_token(conn, name.strip())
        if not ids:
            raise CommandFailed(f"no active token named {name!r}")
        await queries.audit(
            conn,
            actor=ACTOR,
            action="admin_token.revoked",
            details={"name": name.strip(), "admin_token_ids": ids},
        )
    return len(ids)


async def create_install_code(
    pool: asyncpg.Pool, *, label: str | None, ttl_s: int, for_platform_id: int | None = None
) -> tuple[str, dict[str, Any]]:
    code = credentials.new_install_code()
    try:
        result = await store.create_install_code(
            pool,
            credentials.digest(code),
            label=label,
            ttl_s=ttl_s,
            actor=ACTOR,
            for_platform_id=for_platform_id,
        )
    except AttuneError as exc:  # platform_not_found
        raise CommandFailed(f"no registered platform has id {for_platform_id}") from exc
    return code, result


async def list_tokens(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        return await queries.list_admin_tokens(conn)


async def run_admin_command(args: argparse.Namespace, settings: Settings) -> int:
    pool = await create_pool(settings, application_name="admin-cli")
    try:
        command = args.admin_command
        if command == "create-token":
            token = await create_token(pool, args.name)
            print(token, flush=True)
            print(
                f"attune: admin token {args.name.strip()!r} created; it is shown only now. "
                "Send it as `Authorization: Bearer <token>`.",
                file=sys.stderr,
            )
        elif command == "revoke-token":
            await revoke_token(pool, args.name)
            print(f"admin token {args.name.strip()!r} revoked")
        elif command == "list-tokens":
            for t in await list_tokens(pool):
                state = "revoked " + t["revoked_at"] if t["revoked_at"] else "active"
                print(
                    f"{t['name']}\t{state}\tcreated {t['created_at']}\t"
                    f"last used {t['last_used_at'] or '-'}"
                )
        elif command == "create-install-code":
            ttl = args.ttl_s if args.ttl_s is not None else settings.install_code_ttl_s
            if ttl < 300:
                raise CommandFailed("--ttl-s must be at least 300")
            code, result = await create_install_code(
                pool, label=args.label, ttl_s=ttl, for_platform_id=args.platform_id
            )
            print(code, flush=True)
            kind = (
                f"re-registration code for platform {args.platform_id} (it updates that "
                "registration only)"
                if args.platform_id is not None
                else "install code"
            )
            print(
                f"attune: single-use {kind} created; valid until {result['expires_at']}",
                file=sys.stderr,
            )
        else:  # argparse only offers the commands above
            raise CommandFailed(f"unknown admin command {command!r}")
        return 0
    finally:
        await pool.close()


def cmd_admin(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(need_kafka=False)
    except SettingsError as exc:
        print(f"attune: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # Logs go to stderr: stdout carries the token or code (`attune admin create-token x | ...`).
    configure_logging(
        service="admin-cli", level="WARNING", fmt=settings.effective_log_format, stream=sys.stderr
    )
    try:
        return asyncio.run(run_admin_command(args, settings))
    except CommandFailed as exc:
        print(f"attune: {exc}", file=sys.stderr)
        return EXIT_FAILED


def add_admin_parser(subparsers: Any) -> None:
    """Add ``admin`` to an ``argparse`` sub-parser set (``parser.add_subparsers()``)."""
    admin = subparsers.add_parser(
        "admin", help="admin API tokens and install codes for registration"
    )
    sub = admin.add_subparsers(dest="admin_command", required=True)
    create = sub.add_parser("create-token", help="print a new admin API token (shown once)")
    create.add_argument("name", help="who or what holds the token, e.g. alice or ci")
    revoke = sub.add_parser("revoke-token", help="revoke the active admin token of NAME")
    revoke.add_argument("name")
    sub.add_parser("list-tokens", help="token names and times (never a token)")
    code = sub.add_parser(
        "create-install-code", help="print a single-use install code for dynamic registration"
    )
    code.add_argument("--label", help="a note for the audit trail, e.g. the school's name")
    code.add_argument(
        "--ttl-s", type=int, default=None, help="validity in seconds (ATTUNE_INSTALL_CODE_TTL_S)"
    )
    code.add_argument(
        "--platform-id",
        type=int,
        default=None,
        help="a re-registration code: it may update this registered platform only",
    )
    admin.set_defaults(func=cmd_admin)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attune")
    add_admin_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
