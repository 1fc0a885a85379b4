"""Child processes on this machine: a free loopback port, waiting for a server to answer, and
stopping a process without leaving it (or the workers it forked) behind.

One home for what the tests, deploy/fleet_convergence.py and bench/ do around the real servers
they start (`mlflow server`, uvicorn, the benchmark's peers): always on 127.0.0.1, every wait
bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from typing import Any

HOST = "127.0.0.1"


class NotReadyError(RuntimeError):
    """A server's process exited before it answered."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the OS picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float) -> None:
    """Until something accepts connections on `port`: NotReadyError if `proc` exits first,
    TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NotReadyError(f"process exited with {proc.returncode} before port {port} opened")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout:g} s")


def wait_for_http(
    url: str,
    timeout: float = 60.0,
    proc: subprocess.Popen[Any] | None = None,
    interval: float = 0.2,
) -> float:
    """Poll `url` until it answers 200; the seconds waited. NotReadyError if `proc` exits first,
    TimeoutError after `timeout` seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise NotReadyError(f"process exited with {proc.returncode} before {url} answered")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return time.monotonic() - t0
        time.sleep(interval)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:g} s")


def stop_process(proc: subprocess.Popen[Any], grace: float = 15.0, group: bool = False) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: never leaves the process behind. With `group`
    (a process started with `start_new_session=True`) the signals go to its whole process group,
    and workers that moved to a group of their own (BentoML's) are found as descendants."""

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    descendants = _descendants(proc.pid) if group else []
    if proc.poll() is None:
        send(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            proc.wait(timeout=5)
    if group:  # the leader is gone; a worker that ignored SIGTERM is not
        send(signal.SIGKILL)
        for child in descendants:
            with contextlib.suppress(Exception):
                child.kill()


def _descendants(pid: int) -> list[Any]:
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []
