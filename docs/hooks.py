"""MkDocs hooks (mkdocs.yml): the repository files the course links to, inside the site.

The pages link to files outside docs/ as they are on disk (`../serve/README.md`, `Makefile`), so
the Markdown reads right on GitHub and in an editor. Here each such file is added to the site as
`repo/<path>` (Markdown rendered as a page, anything else copied as is) and the link pointed at it;
a link whose file does not exist is left alone, so `mkdocs build --strict` reports it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# [text](target) and ![alt](target): relative targets only (no scheme, not a bare #anchor).
LINK = re.compile(r"(\]\()(?!https?:|mailto:|#)([^)\s]+)(\))")
REPO = "repo/"


def _source(src_uri: str) -> Path:
    """The file on disk a site path comes from."""
    return ROOT / src_uri[len(REPO) :] if src_uri.startswith(REPO) else DOCS / src_uri


def _site_uri(path: Path) -> str | None:
    """Where a repository file lives in the site; None if it is not a file of the repository."""
    try:
        rel = path.resolve().relative_to(ROOT)
    except ValueError:
        return None
    if not path.is_file():
        return None
    if rel.parts[0] == "docs":
        return rel.relative_to("docs").as_posix()
    return REPO + rel.as_posix()


def _resolve(src_uri: str, target: str) -> str | None:
    """A link's target as a site path, or None to leave the link as written."""
    path, _, _ = target.partition("#")
    if not path:
        return None
    return _site_uri(_source(src_uri).parent / path)


def on_files(files: Files, config: Any) -> Files:
    # README.md, then whatever the pages link to outside docs/, transitively (bounded: a link
    # graph of files in one repository).
    pending = [REPO + "README.md", *(f.src_uri for f in files.documentation_pages())]
    seen = set(pending)
    for _ in range(10_000):
        if not pending:
            break
        src_uri = pending.pop()
        if src_uri.startswith(REPO) and files.get_file_from_path(src_uri) is None:
            files.append(File.generated(config, src_uri, abs_src_path=str(_source(src_uri))))
        if not src_uri.endswith(".md"):
            continue
        for _, target, _ in LINK.findall(_source(src_uri).read_text(encoding="utf-8")):
            uri = _resolve(src_uri, target)
            if uri and uri.startswith(REPO) and uri not in seen:
                seen.add(uri)
                pending.append(uri)
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        target = match.group(2)
        uri = _resolve(page.file.src_uri, target)
        if uri is None:
            return match.group(0)
        _, hash_, anchor = target.partition("#")
        link = posixpath.relpath(uri, here or ".") + hash_ + anchor
        return f"{match.group(1)}{link}{match.group(3)}"

    return LINK.sub(rewrite, markdown)
