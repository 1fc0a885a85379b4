"""The registry scripts as `churn` subcommands: `churn train | register | promote | rollback`.

`churn train` runs churn.commands.train. register.py, promote.py and rollback.py still live at the
repository root (the course runs them as `python promote.py`): `churn register|promote|rollback`
loads that file from the checkout this package is installed from (`make setup` installs it in
editable mode) and calls its main(argv), so both forms share one parser, one output and one exit
code.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from churn.errors import UsageError

Main = Callable[[list[str] | None], int]

# The checkout's root: churn/commands/__init__.py -> churn/commands -> churn -> root.
ROOT = Path(__file__).resolve().parents[2]

# name -> its one-line purpose, in `churn --help`.
SCRIPTS = {
    "train": "train on data/customers.parquet, log the run, register it as @challenger",
    "register": "register a run's model as a new version (optionally under an alias)",
    "promote": "move @challenger to @champion if it beats the gate (exit 1: champion kept)",
    "rollback": "swap @champion and @prev-champion: the emergency lever",
}


def root_script(name: str) -> Main:
    """main() of <root>/<name>.py, imported under a private name (not a top-level `promote`)."""
    path = ROOT / f"{name}.py"
    if not path.is_file():
        raise UsageError(
            f"{name}: {path} is missing: `churn {name}` runs the checkout's {name}.py; "
            "install from a clone of the repository (make setup)"
        )
    spec = importlib.util.spec_from_file_location(f"churn.commands._{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main: Main = module.main
    return main


def main_of(name: str) -> Main:
    if name == "train":
        from churn.commands.train import main

        return main
    return root_script(name)
