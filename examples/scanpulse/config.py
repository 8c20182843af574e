"""ScanPulse settings, read from the environment (one frozen dataclass).

Every variable is optional; a bad value raises ``ValueError`` naming the variable and what
it allows, so a misconfigured container stops at start instead of trading on a guess.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from tacoreservice import TACoreClient

__all__ = ["ScanPulseConfig", "tacore_client"]

Role = Literal["scanner", "trader"]


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; use {lo:g} to {hi:g}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name}={raw!r} is out of range; use {lo:g} to {hi:g}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    value = _float(env, name, default, lo, hi)
    if value != int(value):
        raise ValueError(f"{name}={env[name]!r} must be a whole number from {lo} to {hi}")
    return int(value)


def _list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name, "")
    items = tuple(x.strip() for x in raw.split(",") if x.strip())
    return items or default


def _as_of(env: Mapping[str, str]) -> str | None:
    raw = env.get("SCANPULSE_AS_OF", "").strip()
    if not raw or raw.lower() in ("latest", "none"):
        return None
    try:
        return date.fromisoformat(raw).isoformat()
    except ValueError:
        raise ValueError(
            f"SCANPULSE_AS_OF={raw!r} is not a date; use YYYY-MM-DD (e.g. 2025-09-02) or "
            "leave it unset for the latest bar"
        ) from None


def _endpoint(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if "://" not in value:
        raise ValueError(f"{name}={value!r} is not a ZeroMQ endpoint; use e.g. {default}")
    return value


@dataclass(frozen=True)
class ScanPulseConfig:
    # Where TACoreService and Redis are.
    endpoints: tuple[str, ...] = ("tcp://127.0.0.1:5555",)
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "scanpulse"
    # The scanner's opportunity PUB and the trader's fill PUB: *_pub is where subscribers
    # connect, *_bind where the publisher binds (the same unless a container binds tcp://*:N).
    pub: str = "tcp://127.0.0.1:5570"
    pub_bind: str = "tcp://127.0.0.1:5570"
    fills_pub: str = "tcp://127.0.0.1:5571"
    fills_pub_bind: str = "tcp://127.0.0.1:5571"
    # What to scan and when.
    market: str = "US"
    symbols: tuple[str, ...] = ()
    scan_type: str = "technical"
    interval_s: float = 300.0
    min_score: float = 0.45
    # None: the latest bar. A date makes every call (scan, analysis, risk, order) as of that
    # day, which needs the paper account's clock at or before it (portfolio.reset as_of).
    as_of: str | None = None
    # Sizing: a fixed quantity, or position_pct of equity at the opportunity's price; with
    # neither, the analysis' own size (its position_size_pct of equity: half Kelly on its
    # forecast, volatility-targeted).
    quantity: float | None = None
    position_pct: float | None = None
    # Client names (permissions in the service's config.yaml) and CURVE key files.
    scanner_name: str = "scanner"
    trader_name: str = "trader"
    server_key: str | None = None
    scanner_key: str | None = None
    trader_key: str | None = None
    # Lazy Pirate: per-attempt timeout and retries; then the trader retries from Redis.
    timeout_ms: int = 5000
    retries: int = 3
    reconcile_interval_s: float = 2.0
    max_attempts: int = 5
    # client_order_id = f"{order_prefix}-{opportunity_id}": the same opportunity is one order.
    order_prefix: str = "sp"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ScanPulseConfig:
        env = os.environ if env is None else env
        pub = _endpoint(env, "SCANPULSE_PUB", cls.pub)
        fills_pub = _endpoint(env, "SCANPULSE_FILLS_PUB", cls.fills_pub)
        position_pct = _float(env, "SCANPULSE_POSITION_PCT", 0.0, 0.0, 100.0)
        return cls(
            # TACORE_SERVICE_URL: the design documents' name for it; TACORE_ENDPOINT first, as
            # in the clients (tacoreservice/client/endpoint.py).
            endpoints=_list(env, "TACORE_ENDPOINT", ())
            or _list(env, "TACORE_SERVICE_URL", cls.endpoints),
            redis_url=env.get("REDIS_URL", "").strip() or cls.redis_url,
            key_prefix=env.get("SCANPULSE_KEY_PREFIX", "").strip() or cls.key_prefix,
            pub=pub,
            pub_bind=_endpoint(env, "SCANPULSE_PUB_BIND", pub),
            fills_pub=fills_pub,
            fills_pub_bind=_endpoint(env, "SCANPULSE_FILLS_PUB_BIND", fills_pub),
            market=env.get("SCANPULSE_MARKET", "").strip() or cls.market,
            symbols=_list(env, "SCANPULSE_SYMBOLS", ()),
            scan_type=env.get("SCANPULSE_SCAN_TYPE", "").strip() or cls.scan_type,
            interval_s=_float(env, "SCANPULSE_INTERVAL_S", cls.interval_s, 0.1, 86400.0),
            min_score=_float(env, "SCANPULSE_MIN_SCORE", cls.min_score, 0.0, 1.0),
            as_of=_as_of(env),
            quantity=_float(env, "SCANPULSE_QUANTITY", 0.0, 0.0, 1e9) or None,
            position_pct=position_pct or None,
            scanner_name=env.get("SCANPULSE_SCANNER_NAME", "").strip() or cls.scanner_name,
            trader_name=env.get("SCANPULSE_TRADER_NAME", "").strip() or cls.trader_name,
            server_key=env.get("TACORE_CURVE_SERVER_KEY", "").strip() or None,
            scanner_key=env.get("SCANPULSE_SCANNER_KEY", "").strip() or None,
            trader_key=env.get("SCANPULSE_TRADER_KEY", "").strip() or None,
            timeout_ms=_int(env, "SCANPULSE_TIMEOUT_MS", cls.timeout_ms, 100, 600_000),
            retries=_int(env, "SCANPULSE_RETRIES", cls.retries, 0, 100),
            reconcile_interval_s=_float(
                env, "SCANPULSE_RECONCILE_S", cls.reconcile_interval_s, 0.05, 3600.0
            ),
            max_attempts=_int(env, "SCANPULSE_MAX_ATTEMPTS", cls.max_attempts, 1, 1000),
        )

    def replace(self, **changes: Any) -> ScanPulseConfig:
        return dataclasses.replace(self, **changes)

    def on_free_loopback_ports(self) -> ScanPulseConfig:
        """This config with both PUB sockets on free 127.0.0.1 ports: for a whole chain on
        one host (the demo, tests, benchmarks) that must not collide with another run."""
        pub, fills = (f"tcp://127.0.0.1:{_free_port()}" for _ in range(2))
        return self.replace(pub=pub, pub_bind=pub, fills_pub=fills, fills_pub_bind=fills)

    def key(self, *parts: str) -> str:
        """A Redis key under this deployment's prefix."""
        return ":".join((self.key_prefix, *parts))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tacore_client(config: ScanPulseConfig, role: Role) -> TACoreClient:
    """The Lazy Pirate client of one component, named for the service's permissions."""
    name = config.scanner_name if role == "scanner" else config.trader_name
    own_key = config.scanner_key if role == "scanner" else config.trader_key
    own_var = "SCANPULSE_SCANNER_KEY" if role == "scanner" else "SCANPULSE_TRADER_KEY"
    if (config.server_key is None) != (own_key is None):
        raise ValueError(
            f"CURVE needs both TACORE_CURVE_SERVER_KEY (the broker's server.key) and {own_var} "
            f"(keys/private/{name}.key_secret), or neither when the service runs without CURVE"
        )
    return TACoreClient(
        list(config.endpoints),
        timeout_ms=config.timeout_ms,
        retries=config.retries,
        server_key=config.server_key,
        client_key=own_key,
        client_name=name,
    )
