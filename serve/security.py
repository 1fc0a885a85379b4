"""Who may change what is served: the admin bearer token and MLflow's signed webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

# MLflow 3.x webhook delivery (mlflow/webhooks/delivery.py, "Standard Webhooks" style): the
# signature header is "v1,<base64 HMAC-SHA256(secret, f'{delivery_id}.{timestamp}.{body}')>".
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"


@dataclass(frozen=True)
class AuthError(Exception):
    status: int  # 401: no or malformed credentials; 403: wrong credentials
    detail: str


def check_bearer(authorization: str | None, token: str) -> None:
    """Raise AuthError unless `authorization` is exactly `Bearer <token>`."""
    if not authorization:
        raise AuthError(401, "missing Authorization header: send 'Authorization: Bearer <token>'")
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials or " " in credentials:
        raise AuthError(401, "malformed Authorization header: send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(credentials.encode(), token.encode()):
        raise AuthError(403, "invalid admin token")


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The signature MLflow sends for this delivery (used to verify, and by tests to sign)."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify_webhook(
    secret: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    delivery_id: str | None,
    tolerance_s: int,
    now: float | None = None,
) -> None:
    """Raise AuthError(401) unless the delivery is signed with `secret` and recent."""
    if not signature or not timestamp or not delivery_id:
        raise AuthError(
            401,
            f"unsigned webhook: {SIGNATURE_HEADER}, {TIMESTAMP_HEADER} and "
            f"{DELIVERY_ID_HEADER} are required",
        )
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise AuthError(401, f"{TIMESTAMP_HEADER} must be a unix timestamp") from None
    if abs((time.time() if now is None else now) - sent_at) > tolerance_s:
        raise AuthError(401, f"webhook timestamp is more than {tolerance_s} s from now")
    expected = sign(secret, delivery_id, timestamp, body)
    # Standard Webhooks allow several space-separated signatures (secret rotation).
    if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in signature.split()):
        raise AuthError(401, "webhook signature does not match")
