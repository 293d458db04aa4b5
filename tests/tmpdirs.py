"""Everything a test run puts in the temporary directory lives in one directory of its own,
removed when the run ends — also when it is interrupted (Ctrl-C, SIGTERM from a time limit) —
and swept by the next run when the process was killed outright (SIGKILL, a crash).

``tests/conftest.py`` opens it before anything is collected and points ``tempfile`` and
``TMPDIR`` at it, so every ``tempfile.mkdtemp`` of the suite (Hypothesis's home, Chromium
profiles, embedded clusters, pytest's own ``tmp_path``) and every child process (Chromium,
Playwright, ``attune dev``) writes there. A run holds an exclusive ``flock`` on its
directory's lock file for its whole life; a directory whose lock can be taken belongs to a run
that is gone, and is removed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path

PREFIX = "attune-run-"
LOCK = ".lock"
# A directory this young without its lock file may be a run being set up right now.
SETUP_GRACE_S = 60.0


def sweep(base: Path) -> list[Path]:
    """Remove the run directories under ``base`` of runs that are no longer alive."""
    removed = []
    for path in sorted(base.glob(f"{PREFIX}*")):
        if not path.is_dir() or path.is_symlink():
            continue
        try:
            fd = os.open(path / LOCK, os.O_RDWR)
        except FileNotFoundError:
            if time.time() - path.stat().st_mtime < SETUP_GRACE_S:
                continue
            fd = None
        except OSError:
            continue
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its run is alive
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


class RunDirectory:
    """This run's temporary directory, locked while the run lives."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
        # Embedded Postgres runs as the postgres user when the tests run as root: it must be
        # able to traverse into the cluster directories created below this one.
        self.path.chmod(0o755)
        self._fd: int | None = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # not inherited by children (O_CLOEXEC)
        self._saved = (tempfile.tempdir, os.environ.get("TMPDIR"))

    def activate(self) -> None:
        """Make it the temporary directory of this process and of every child it starts."""
        tempfile.tempdir = str(self.path)
        os.environ["TMPDIR"] = str(self.path)

    def close(self) -> None:
        """Restore the temporary directory and remove this run's (idempotent)."""
        tempdir, env = self._saved
        tempfile.tempdir = tempdir
        if env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = env
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def open_run_directory() -> RunDirectory:
    """Sweep what dead runs left, then open and activate this run's directory."""
    base = Path(tempfile.gettempdir())
    sweep(base)
    run = RunDirectory(base)
    run.activate()
    return run
