"""Where a model came from: the git commit of the code and the md5 of the data bytes."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path


def file_md5(path: Path) -> str:
    """The md5 DVC 3 records for a single file in dvc.lock / .dvc files (plain md5 of the bytes)."""
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """(HEAD commit, tree dirty?) or (None, None) outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, bool(status.strip())
