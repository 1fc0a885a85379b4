"""Day 4 exercise: write rollback.

A freshly promoted champion misbehaves. Put the previous one back by swapping the two aliases:

    before:  @champion -> v2   @prev-champion -> v1
    after:   @champion -> v1   @prev-champion -> v2

Rules (`make check DAY=4` tests each one against a real MLflow registry):
  1. Read BOTH aliases before writing any (client.get_model_version_by_alias).
  2. If either alias is missing, change nothing and raise LookupError naming the missing alias.
  3. Move @champion to the old @prev-champion, and @prev-champion to the old champion
     (client.set_registered_model_alias).
  4. Tag the demoted version `rolled_back` = "true" (client.set_model_version_tag).
  5. Return (demoted_version, restored_version) as ints, e.g. (2, 1).
Running it twice is its own undo.
"""

from __future__ import annotations

from mlflow import MlflowClient

CHAMPION = "champion"
PREV_CHAMPION = "prev-champion"


def rollback(client: MlflowClient, name: str = "churn") -> tuple[int, int]:
    """Swap @champion and @prev-champion of model `name`; return (demoted, restored)."""
    # TODO: read both aliases (a missing one raises mlflow.exceptions.MlflowException:
    #       turn that into LookupError before anything is written)
    # TODO: set the two aliases, tag the demoted version, return the two versions
    raise NotImplementedError
