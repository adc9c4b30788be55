"""One writer per run folder: an exclusive lock on ``<run>/.lock``, held by the process
that trains (``dgm run``'s main process, for the whole run) and by ``dgm sample``,
``dgm evaluate`` and ``dgm export`` while they write into the folder.

The lock is the kernel's (``flock``): a holder that dies, even by SIGKILL, releases it
with its last file descriptor, so a stale lock cannot block a folder. The file itself
says who holds it (process id, command, start time), for the message a second writer
gets. A process may take the same folder's lock again while it holds it (``dgm run``
samples and evaluates under its own lock)."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dgm.errors import RunDirError

LOCK_NAME = ".lock"

_held: set[Path] = set()
"""The folders (resolved) this process holds; only the outermost holder releases."""


def holder(folder: Path) -> dict[str, Any]:
    """What the lock file of ``folder`` says about its holder ({} if unreadable)."""
    try:
        return json.loads((folder / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return {}


@contextmanager
def run_folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock for the block (``what``: ``"dgm run"``, ``"dgm sample"``,
    ...); a folder another process holds is a :class:`RunDirError` naming the holder,
    and nothing is written. The folder is created if it does not exist."""
    key = Path(folder).resolve()
    if key in _held:
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        other = holder(folder)
        who = (f"process {other.get('pid', '?')} ({other.get('command', '?')}, since "
               f"{other.get('started', '?')})" if other else "another process")
        raise RunDirError(
            f"run folder {str(folder)!r} is in use by {who}; nothing was changed. Wait for "
            f"it to finish or stop it, then run {what} again (a holder that died leaves "
            "no lock behind)") from None
    record = {"pid": os.getpid(), "command": " ".join(["dgm", *sys.argv[1:]])[:300]
              if sys.argv and sys.argv[0].endswith(("dgm", "__main__.py")) else what,
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(record).encode())
    except OSError as exc:  # a full disk: say which file
        os.close(fd)
        raise OSError(exc.errno, exc.strerror, str(folder / LOCK_NAME)) from exc
    _held.add(key)
    try:
        yield
    finally:
        _held.discard(key)
        os.ftruncate(fd, 0)
        os.close(fd)  # releases the lock


__all__ = ["LOCK_NAME", "holder", "run_folder_lock"]
