"""Who may change what is served: the admin bearer token and MLflow's signed webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Depends, Request, Security
from fastapi.security import HTTPBearer
from pydantic import SecretStr

from serve.http_errors import Refused, Unauthenticated

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


def check_bearer(authorization: str | None, token: str, name: str = "admin") -> None:
    """Raise AuthError unless `authorization` is exactly `Bearer <token>`."""
    if not authorization:
        raise AuthError(401, "missing Authorization header: send 'Authorization: Bearer <token>'")
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials or " " in credentials:
        raise AuthError(401, "malformed Authorization header: send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(credentials.encode(), token.encode()):
        raise AuthError(403, f"invalid {name} token")


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
) -> int:
    """Raise AuthError(401) unless the delivery is signed with `secret` and recent; return the
    unix time it was sent at."""
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
    return sent_at


class DeliveryLog:
    """The delivery ids of the signed webhooks received, each kept until its timestamp leaves the
    tolerance window (after that `verify_webhook` refuses the delivery anyway). A replay of a
    captured delivery is then recognised however often it is sent.

    Memory is bounded: at most `capacity` ids. MLflow sends a few deliveries per alias move, and
    an attacker without the secret cannot add any, so a full log means a sender gone wild: new
    deliveries are then refused ("full", answered 429, which MLflow retries later) rather than
    forgetting ids that are still replayable."""

    def __init__(
        self, tolerance_s: int, capacity: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        self.tolerance_s = tolerance_s
        self.capacity = capacity
        self.clock = clock
        self._expires: dict[str, float] = {}

    def record(self, delivery_id: str, sent_at: int) -> Literal["new", "duplicate", "full"]:
        now = self.clock()
        if self._expires.get(delivery_id, now - 1) >= now:
            return "duplicate"
        if len(self._expires) >= self.capacity:
            self._expires = {k: t for k, t in self._expires.items() if t >= now}
            if len(self._expires) >= self.capacity:
                return "full"
        # Accepted while |now - sent_at| <= tolerance: replayable until sent_at + tolerance.
        self._expires[delivery_id] = sent_at + self.tolerance_s
        return "new"

    def __len__(self) -> int:
        return len(self._expires)


def require_bearer(token: str, name: str) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency: `check_bearer` on the request; raises Unauthenticated (401)."""
    expected = token

    async def dependency(request: Request) -> None:
        try:
            check_bearer(request.headers.get("authorization"), expected, name)
        except AuthError as exc:
            raise Unauthenticated(exc.detail) from None

    return dependency


def api_guard(token: SecretStr | None) -> list[Any]:
    """CHURN_API_TOKEN: the dependencies that guard the scoring routes (none when unset)."""
    if token is None:
        return []
    bearer = HTTPBearer(auto_error=False, description="CHURN_API_TOKEN")
    return [Security(bearer), Depends(require_bearer(token.get_secret_value(), "API"))]


def admin_guard(token: SecretStr) -> list[Any]:
    """CHURN_ADMIN_TOKEN: 401 without credentials, 403 for a wrong token (`Refused`)."""
    expected = token.get_secret_value()

    async def require_admin(request: Request) -> None:
        try:
            check_bearer(request.headers.get("authorization"), expected)
        except AuthError as exc:
            extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            raise Refused(exc.status, exc.detail, **extra) from None

    bearer = HTTPBearer(auto_error=False, description="CHURN_ADMIN_TOKEN")
    return [Security(bearer), Depends(require_admin)]
