"""Print the reliability table from the JSON lines the scenarios recorded.

    python -m tests.reliability.report FILE [--markdown-out PATH]

Exit status 1 when any scenario lost an event or data, or answered bad input with a 5xx.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from tests.reliability.record import load

SUITES = ("fault", "soak", "fuzz", "abuse", "checks")


def _errors(row: Mapping[str, object]) -> str:
    errors = row.get("errors") or {}
    assert isinstance(errors, dict)
    if not errors:
        return "-"
    return ", ".join(f"{code} {n}" for code, n in sorted(errors.items(), key=lambda kv: -kv[1]))


def _events(row: Mapping[str, object]) -> str:
    produced, consumed = row.get("events_produced"), row.get("events_consumed")
    if produced is None and consumed is None:
        return "-"
    return (
        f"{produced if produced is not None else '-'} / {consumed if consumed is not None else '-'}"
    )


def table(rows: list[Mapping[str, object]]) -> str:
    rows = sorted(
        rows,
        key=lambda r: (
            SUITES.index(str(r["suite"])) if r["suite"] in SUITES else 99,
            r["scenario"],
        ),
    )
    lines = [
        "| suite | scenario | Postgres | requests | errors by code | 5xx "
        "| events produced / consumed | events lost | data lost | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for r in rows:
        note = r.get("note")
        mark = ""
        if note:
            notes.append(f"{len(notes) + 1}. {r['scenario']}: {note}")
            mark = f" [{len(notes)}]"
        lines.append(
            f"| {r['suite']} | {r['scenario']}{mark} | {r.get('postgres') or '-'} "
            f"| {r['requests']:,} | {_errors(r)} "
            f"| {r['server_errors']} | {_events(r)} | {r['events_lost']} | {r['data_lost']} "
            f"| {float(r.get('seconds') or 0):.1f} |"
        )
    if any(r["suite"] == "checks" for r in rows):
        notes.append(
            "checks: the negative and abuse test files; requests = tests, each asserting its "
            "refusal's status and code and that nothing was stored; errors = failed tests."
        )
    notes.append(
        "Postgres: the durability of the cluster a scenario ran on, as the server reported it "
        "(durable: fsync, synchronous_commit and full_page_writes on); - where it did not matter."
    )
    lines += ["", "Notes:", "", *notes]
    return "\n".join(lines)


def failures(rows: list[Mapping[str, object]]) -> list[str]:
    bad = []
    for r in rows:
        if r["events_lost"] or r["data_lost"]:
            bad.append(f"{r['scenario']}: lost events or data")
        durability = str(r.get("postgres") or "")
        if r["suite"] in ("fault", "soak") and durability.startswith("fast"):
            bad.append(f"{r['scenario']}: 'nothing lost' measured on a {durability} cluster")
        if r["suite"] in ("fuzz", "abuse", "checks") and r["server_errors"]:
            bad.append(f"{r['scenario']}: 5xx for bad input")
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file")
    parser.add_argument("--markdown-out")
    args = parser.parse_args()
    rows = load(args.file)
    text = table(rows)
    bad = failures(rows)
    total = sum(int(str(r["requests"])) for r in rows)
    verdict = f"{len(rows)} scenarios, {total:,} requests: " + (
        "no event lost, no data lost, no 5xx for bad input." if not bad else "; ".join(bad)
    )
    print(text)
    print()
    print(verdict)
    if args.markdown_out:
        with open(args.markdown_out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n\n" + verdict + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
