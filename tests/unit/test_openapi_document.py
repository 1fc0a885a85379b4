"""The OpenAPI document is the API's contract with generated clients: a refactor of serve/ must
not change it. tests/unit/data/openapi.json was written by the service before serve/ was split
into routers (issue 21); a change to the API updates it on purpose:

    python -m tests.unit.test_openapi_document     (rewrites the file; review the diff)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from serve.app import create_app
from serve.config import ServeSettings
from tests.serve_helpers import FakeRegistry

SNAPSHOT = Path(__file__).parent / "data" / "openapi.json"
# Each optional part of the API on at least once: the admin routes, the API token's security
# scheme, the challenger (split and shadow), CORS and request ids (middleware: no paths).
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "everything": {
        "admin_token": "t", "webhook_secret": "s", "api_token": "a", "challenger_traffic": 0.1,
        "cors_origins": ["http://x"], "request_id": True,
    },
    "shadow": {"admin_token": "t", "shadow": True},
}  # fmt: skip


def document(config: str) -> dict[str, Any]:
    settings = ServeSettings(tracking_uri="sqlite:///fake.db", reload_interval=0, **CONFIGS[config])
    app = create_app(settings, registry=FakeRegistry(), challenger_registry=FakeRegistry())
    doc = app.openapi()
    doc["info"].pop("version")  # the package's version: not the API's shape
    return doc


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_the_openapi_document_is_unchanged(config: str) -> None:
    expected = json.loads(SNAPSHOT.read_text())[config]
    # Through JSON, as a client reads it (tuples are lists, int keys strings).
    assert json.loads(json.dumps(document(config))) == expected


if __name__ == "__main__":
    docs = {name: document(name) for name in sorted(CONFIGS)}
    SNAPSHOT.write_text(json.dumps(docs, indent=1, sort_keys=True) + "\n")
