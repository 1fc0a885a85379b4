"""Payloads of hostile model artifacts. Each leaves a marker file when its bytes are loaded, so
a test can tell "refused" from "loaded and ran the attacker's code"."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Unpickled:
    """Unpickling this calls `open(marker, "w")`: any callable could stand in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


class Canary:
    """skops rebuilds objects with `__setstate__`: a type the artifact lists as trusted runs it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).touch()
        self.__dict__.update(state)
