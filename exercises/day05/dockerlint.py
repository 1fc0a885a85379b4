"""Day 5 exercise: a Dockerfile lint rule of your own.

hadolint checks a lot (make docker-lint), but every team has rules of its own. Write
`lint(text)` that reads a Dockerfile's text and returns one message per finding, [] when clean:

  1. every FROM names a pinned image: a tag other than `latest`, or a digest (@sha256:...).
     `FROM python` and `FROM python:latest` are findings: "line 1: FROM python is not pinned".
     A FROM of an earlier stage (`FROM builder AS test`) or of a build argument
     (`FROM ${PYTHON_IMAGE}`) is fine.
  2. the image does not run as root: the LAST `USER` line of the file exists and is not
     `root` / `0` / `0:0`. Else: "the image runs as root: end with USER 10001:10001".
  3. no secret in ENV or ARG: a line `ENV` or `ARG` whose (first) variable name contains
     PASSWORD, SECRET, TOKEN or KEY (any case) and sets a value is a finding:
     "line 5: ENV sets AWS_SECRET_KEY".

Lines are counted from 1. Instructions are case-insensitive (`from` = `FROM`). `make check DAY=5`
runs your rules on small Dockerfiles and on the project's own Dockerfile, which must be clean.
"""

from __future__ import annotations


def lint(text: str) -> list[str]:
    """Findings of the three rules in a Dockerfile's text; [] when clean."""
    findings: list[str] = []
    # TODO: go through text.splitlines() with their numbers; split each into instruction + rest
    raise NotImplementedError
    return findings
