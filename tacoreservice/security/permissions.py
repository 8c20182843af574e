"""Per-client method permissions: which methods each named client may call.

Patterns are fnmatch globs (``analyze.*``, ``*``) from ``security.permissions`` in
config/config.yaml. A client is named by its CURVE key file (security on) or by the
``client`` field it sends (security off, where the name is only a claim: permissions then
guard against mistakes, not against a hostile peer; see SECURITY.md).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from tacoreservice.config import PermissionSettings

__all__ = ["Permissions", "ALWAYS_ALLOWED"]

# Liveness must be checkable by every module and by container health checks, and it reveals
# no market data, orders or portfolio.
ALWAYS_ALLOWED = frozenset({"health.check"})


class Permissions:
    def __init__(self, cfg: PermissionSettings):
        self.default = tuple(cfg.default)
        self.clients = {name: tuple(patterns) for name, patterns in cfg.clients.items()}
        # True when every client may call everything: the broker then skips the check.
        self.unrestricted = "*" in self.default and all("*" in p for p in self.clients.values())
        self._decisions: dict[tuple[str | None, str], bool] = {}

    def patterns_for(self, client: str | None) -> tuple[str, ...]:
        if client is not None and client in self.clients:
            return self.clients[client]
        return self.default

    def allows(self, client: str | None, method: str) -> bool:
        key = (client, method)
        decision = self._decisions.get(key)
        if decision is None:
            decision = method in ALWAYS_ALLOWED or any(
                fnmatchcase(method, pattern) for pattern in self.patterns_for(client)
            )
            if len(self._decisions) < 100_000:  # bounded: method names come from clients
                self._decisions[key] = decision
        return decision

    def denial(self, client: str | None, method: str) -> str:
        who = f"client {client!r}" if client else "an unnamed client"
        allowed = ", ".join(self.patterns_for(client)) or "nothing"
        return (
            f"{who} may not call {method!r}; it may call: {allowed} "
            "(security.permissions in config/config.yaml)"
        )
