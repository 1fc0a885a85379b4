"""Moving @champion keeps the old one as @prev-champion; a failed write leaves nothing half-moved
(churn.registry._move, shared by promote.py and register.py --alias)."""

from __future__ import annotations

from typing import Any

import pytest


class _FlakyAliases:
    """An MLflow client whose writes of one alias fail."""

    def __init__(self, aliases: dict[str, int], failing: str) -> None:
        self.aliases = dict(aliases)
        self.failing = failing

    def set_registered_model_alias(self, _name: str, alias: str, version: str) -> None:
        if alias == self.failing:
            raise ConnectionError("store went away\nsecond line")
        self.aliases[alias] = int(version)

    def delete_registered_model_alias(self, _name: str, alias: str) -> None:
        self.aliases.pop(alias, None)


@pytest.mark.parametrize("prev_before", [None, 1])
def test_a_failed_champion_write_puts_prev_champion_back(prev_before: int | None) -> None:
    from churn.errors import TrackingUnavailableError
    from churn.registry import _move

    start = {"champion": 2, **({"prev-champion": prev_before} if prev_before else {})}
    client: Any = _FlakyAliases(start, failing="champion")  # @prev-champion moves first
    with pytest.raises(TrackingUnavailableError) as err:
        _move(client, "champion", 3, 2, prev_before, "v3 failed ({cause}); aliases restored")
    assert str(err.value) == "v3 failed (store went away); aliases restored"
    assert client.aliases == start
