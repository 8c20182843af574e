"""The broker's admission check for each parsed request: who sent it, may it call this
method, and has it requests left in its bucket.

Runs on the broker thread after parsing and before anything is queued, so a refused request
costs a dictionary lookup or two and never reaches a worker.
"""

from __future__ import annotations

from collections import Counter

from tacoreservice.config import SecuritySettings
from tacoreservice.protocol.errors import ErrorCode
from tacoreservice.protocol.messages import ClientRequest
from tacoreservice.security.curve import RefusalLog
from tacoreservice.security.keys import KeyRing
from tacoreservice.security.permissions import Permissions
from tacoreservice.security.rate_limit import RateLimiter

__all__ = ["RequestGuard"]


class RequestGuard:
    def __init__(self, cfg: SecuritySettings, client_ring: KeyRing | None, refusals: RefusalLog):
        self.curve = cfg.mode == "curve"
        self.client_ring = client_ring
        self.refusals = refusals
        self.permissions = Permissions(cfg.permissions)
        self.limiter = RateLimiter(cfg.rate_limit) if cfg.rate_limit.enabled else None
        # Nothing to check at all: the broker skips the call (the embedded default with
        # rate limiting switched off).
        self.active = self.curve or not self.permissions.unrestricted or self.limiter is not None
        self.denied: Counter[str] = Counter()  # by client name ("" for unnamed)
        self.limited: Counter[str] = Counter()

    def admit(
        self, req: ClientRequest, user_id: str | None, connection: bytes, now: float
    ) -> tuple[ErrorCode, str] | None:
        """None to let ``req`` through (with ``req.client`` set), else (code, message)."""
        if self.curve:
            name = (
                self.client_ring.name_for(user_id.encode())
                if (user_id and self.client_ring is not None)
                else None
            )
            if name is None:
                self.denied[""] += 1
                self.refusals.refused(
                    "frontend",
                    "revoked_key",
                    f"request {req.method!r} from a CURVE key no longer among the allowed "
                    "client keys",
                    user_id or "",
                )
                return (
                    ErrorCode.UNAUTHORIZED,
                    "this connection's CURVE key is no longer allowed (its public key file was "
                    "removed from the broker's client keys); ask the operator for a new key",
                )
            req.client = name  # the key's name beats whatever name the request claims
        client = req.client

        if not self.permissions.unrestricted:
            for method in _methods_called(req):
                if not self.permissions.allows(client, method):
                    self.denied[client or ""] += 1
                    message = self.permissions.denial(client, method)
                    self.refusals.refused("frontend", "denied", message, f"{client}|{method}")
                    return ErrorCode.UNAUTHORIZED, message

        if self.limiter is not None:
            # An unnamed client gets a bucket per connection: unnamed modules must not share
            # (and drain) one bucket between them.
            key = client if client else "conn:" + connection.hex()
            wait_s = self.limiter.take(key, client, now)
            if wait_s > 0.0:
                self.limited[client or ""] += 1
                rate, burst = self.limiter.rule_for(client)
                who = f"client {client!r}" if client else "this connection"
                return (
                    ErrorCode.RATE_LIMITED,
                    f"{who} is over its rate limit of {rate:g} requests/s (burst {burst}); "
                    f"retry in {wait_s * 1000.0:.0f} ms (security.rate_limit)",
                )
        return None

    def stats(self) -> dict[str, object]:
        return {
            "mode": "curve" if self.curve else "none",
            "permissions_restricted": not self.permissions.unrestricted,
            "rate_limit": self.limiter is not None,
            "denied": sum(self.denied.values()),
            "rate_limited": sum(self.limited.values()),
            "refusals": self.refusals.totals(),
            "client_keys": len(self.client_ring.names) if self.client_ring is not None else None,
        }


def _methods_called(req: ClientRequest) -> tuple[str, ...]:
    # job.submit runs another method: the client needs the right to that method as well, or
    # a job would be a way around every permission.
    if req.method == "job.submit":
        inner = req.params.get("method")
        if isinstance(inner, str):
            return (req.method, inner)
    return (req.method,)
