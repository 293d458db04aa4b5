"""A test run leaves nothing in the temporary directory: not after a normal end, not after
SIGTERM (a time limit), and what a SIGKILLed run left is swept by the next run — never a live
run's directory. Each case runs a real pytest session with this suite's conftest against a
temporary directory of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.tmpdirs import PREFIX

ROOT = Path(__file__).resolve().parents[2]

# What the suite does to the temporary directory: Hypothesis's home at import time, a Chromium
# profile per test, pytest's tmp_path, and child processes writing to $TMPDIR.
INNER_TEST = """
import os, subprocess, sys, tempfile, time
from pathlib import Path

HOME = tempfile.mkdtemp(prefix="attune-hypothesis-")


def test_uses_the_temporary_directory(tmp_path):
    profile = Path(tempfile.mkdtemp(prefix="attune-chromium-"))
    (profile / "Preferences").write_text("{}")
    (tmp_path / "file").write_text("x")
    subprocess.run(
        [sys.executable, "-c", "import tempfile; tempfile.mkstemp(prefix='child-')"], check=True
    )
    ready = os.environ.get("INNER_READY")
    if ready:
        Path(ready).write_text("ready")
        time.sleep(120)
"""


@contextmanager
def inner_run(tmp_path: Path, base: Path, *, wait: bool) -> Iterator[subprocess.Popen[str]]:
    """A pytest session with this suite's conftest and ``base`` as its temporary directory;
    killed on the way out if a failed check left it running."""
    base.mkdir(exist_ok=True)
    test = tmp_path / "inner" / "test_inner.py"
    test.parent.mkdir(exist_ok=True)
    test.write_text(INNER_TEST)
    env = {**os.environ, "TMPDIR": str(base), "PYTHONPATH": str(ROOT)}
    env.pop("INNER_READY", None)
    if wait:
        env["INNER_READY"] = str(tmp_path / "ready")
    with subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(test.parent), "-o", "addopts=", "-o", "timeout=300", str(test)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as proc:  # fmt: skip
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def wait_ready(tmp_path: Path, proc: subprocess.Popen[str]) -> None:
    ready = tmp_path / "ready"
    deadline = time.monotonic() + 240  # a generous bound; the condition ends the wait
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the inner run never got going"
        time.sleep(0.05)
    ready.unlink()


def left(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir())


def test_a_finished_run_leaves_nothing(tmp_path: Path) -> None:
    base = tmp_path / "tmp"
    with inner_run(tmp_path, base, wait=False) as proc:
        output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert left(base) == [], output


def test_a_terminated_run_leaves_nothing(tmp_path: Path) -> None:
    base = tmp_path / "tmp"
    with inner_run(tmp_path, base, wait=True) as proc:
        wait_ready(tmp_path, proc)
        assert [p.name.startswith(PREFIX) for p in base.iterdir()] == [True]
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert left(base) == [], output


def test_a_killed_runs_leftovers_are_swept_by_the_next_run_but_a_live_run_is_not(
    tmp_path: Path,
) -> None:
    base = tmp_path / "tmp"
    with inner_run(tmp_path, base, wait=True) as killed:
        wait_ready(tmp_path, killed)
        killed.kill()
        killed.communicate(timeout=300)
    (stale,) = left(base)
    assert stale.startswith(PREFIX)
    assert {p.name for p in (base / stale).iterdir()} > {".lock"}  # the run's files are there

    with inner_run(tmp_path, base, wait=True) as alive:
        wait_ready(tmp_path, alive)
        (current,) = left(base)  # the stale directory is gone, this run's is there
        assert current != stale
        with inner_run(tmp_path, base, wait=False) as other:
            output, _ = other.communicate(timeout=300)
        assert other.returncode == 0, output
        assert left(base) == [current]  # the live run's directory was not touched
        alive.send_signal(signal.SIGTERM)
        alive.communicate(timeout=300)
    assert left(base) == []


@pytest.mark.parametrize("prefix", ["attune-hypothesis-", "attune-chromium-"])
def test_this_run_keeps_its_files_in_its_own_directory(prefix: str) -> None:
    import tempfile

    made = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        assert made.parent.name.startswith(PREFIX), made
        assert os.environ["TMPDIR"] == str(made.parent)
    finally:
        made.rmdir()
