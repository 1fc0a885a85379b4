"""Typed errors and the exit-code contract every script follows (see ARCHITECTURE.md).

| code | meaning |
| 0 | done, nothing to do, or a dry run that would succeed |
| 1 | the promotion gate refused the challenger (champion kept) |
| 2 | usage error (bad flag or value) |
| 3 | registry state forbids the action (alias/metric/model missing, aliases collide, raced) |
| 4 | tracking server / store unreachable or failing |
"""

from __future__ import annotations

OK = 0
GATE_REFUSED = 1
USAGE = 2
REGISTRY_STATE = 3
TRACKING_UNAVAILABLE = 4

EXIT_CODES_HELP = """\
exit codes:
  0  done, nothing to do, or a dry run that would succeed
  1  the promotion gate refused the challenger (champion kept)
  2  usage error (bad flag or value)
  3  registry state forbids the action (alias, metric or model missing; aliases collide;
     the registry changed while we were deciding)
  4  tracking server or store unreachable or failing"""


class ChurnError(Exception):
    """An error a user can act on: its message is one line saying what is wrong and what to do."""

    exit_code = 1


class UsageError(ChurnError):
    exit_code = USAGE


class RegistryStateError(ChurnError):
    exit_code = REGISTRY_STATE


class TrackingUnavailableError(ChurnError):
    exit_code = TRACKING_UNAVAILABLE


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (at most `limit` characters), for one-line
    errors; the exception's type when it has no message."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
