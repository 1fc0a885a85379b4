"""Several worker processes behind one port (`WEB_CONCURRENCY=N`, uvicorn's `--workers N`): a
reload that one of them receives reaches them all.

uvicorn's workers share the listening socket and nothing else: each has its own holder, batcher
and reloader (serve/services.py), and each polls the alias itself, so a promotion reaches every
worker within `CHURN_RELOAD_INTERVAL`. But `POST /admin/reload` and a webhook are one request,
answered by one worker. That worker also writes a new token into a file the workers of this
server share, `<TMPDIR>/churn-serve-<supervisor pid>/reload`, and every worker reads that file
every `TICK_S` seconds and re-checks the registry when the token changed. A worker whose poll
loads a new version announces it the same way, so the workers of one server differ for the time
of a load, not for up to an interval.

The file only ever means "re-check the registry now": the registry stays the one authority on
what is served, so a lost, stale or forged token costs at most one registry read per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger(__name__)

TICK_S = 0.25  # how often a worker looks for a reload announced by another
TOKEN_FILE = "reload"


class ReloadBroadcast:
    """The workers of one server telling each other to re-check the registry."""

    def __init__(self, directory: Path, tick_s: float = TICK_S) -> None:
        self.directory = directory
        self.tick_s = tick_s
        self._seen = self._read()  # what is there at start was handled by the first check

    @classmethod
    def for_this_process(cls) -> ReloadBroadcast | None:
        """The broadcast of this process's server when it is one of uvicorn's worker processes
        (spawned by `multiprocessing` from the supervisor, whose pid names the directory); None
        when the process serves alone."""
        parent = multiprocessing.parent_process()
        if parent is None or parent.pid is None:
            return None
        return cls(Path(tempfile.gettempdir()) / f"churn-serve-{parent.pid}")

    def announce(self) -> None:
        """Tell every worker (this one excepted) to re-check the registry now. Never raises: a
        worker that cannot write the file still reloads itself, and the others poll."""
        token = f"{os.getpid()}-{time.time_ns()}"
        try:
            self._own_directory()
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".reload-")
            with os.fdopen(fd, "w") as out:
                out.write(token)
            os.replace(tmp, self.directory / TOKEN_FILE)  # whole or not at all
        except OSError as exc:
            log.warning("could not tell the other workers to reload (%s): they poll", exc)
            return
        self._seen = token

    async def watch(self, recheck: Callable[[], Awaitable[object]]) -> None:
        """Every `tick_s`: when another worker announced a reload, `recheck()` (once, however
        many announcements came meanwhile)."""
        while True:
            await asyncio.sleep(self.tick_s)
            token = self._read()
            if token == self._seen:
                continue
            self._seen = token
            try:
                await recheck()
            except Exception:  # a bug here must not end the watch
                log.exception("re-checking after another worker's reload failed unexpectedly")

    def close(self) -> None:
        """At this worker's shutdown: remove the file and the directory (for the others, one
        spurious re-check; the next announcement makes them again)."""
        with contextlib.suppress(OSError):
            (self.directory / TOKEN_FILE).unlink()
            self.directory.rmdir()

    def _own_directory(self) -> None:
        """The shared directory, made private to this user; OSError if something else (another
        user's directory, a symlink) has its name."""
        with contextlib.suppress(FileExistsError):
            self.directory.mkdir(mode=0o700)
        st = os.lstat(self.directory)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise PermissionError(f"{self.directory} is not a directory of this user")

    def _read(self) -> str:
        path = self.directory / TOKEN_FILE
        try:
            # O_NONBLOCK: a FIFO planted under the name must not block the event loop.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError:  # nothing announced yet
            return ""
        with os.fdopen(fd, "rb") as f:
            try:
                return f.read(100).decode("ascii", "replace")
            except OSError:
                return ""
