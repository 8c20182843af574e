"""Layered settings: default < file < environment < CLI; invalid values name themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tacoreservice.config import ConfigError, load_settings

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def test_defaults_match_design_ports(tmp_path: Path) -> None:
    settings = load_settings(REPO_CONFIG, env={})
    assert settings.broker.frontend_port == 5555
    assert settings.broker.backend_port == 5560
    assert settings.api.port == 8080
    assert settings.broker.max_queue_size == 100
    assert settings.broker.max_message_bytes == 4 * 1024 * 1024
    assert settings.broker.heartbeat_interval_ms == 1000 and settings.broker.heartbeat_liveness == 3


def test_environment_beats_file_beats_default(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("worker:\n  count: 7\nbroker:\n  frontend_port: 6000\n  max_queue_size: 5\n")
    settings = load_settings(cfg, env={"WORKER_COUNT": "3"})
    assert settings.worker.count == 3  # env over file
    assert settings.broker.frontend_port == 6000  # file over default
    assert settings.broker.max_queue_size == 5
    assert settings.broker.backend_port == 5560  # default
    cli = load_settings(cfg, env={"WORKER_COUNT": "3"}, overrides={"worker.count": 1})
    assert cli.worker.count == 1  # CLI over env


def test_all_design_env_vars_are_read(tmp_path: Path) -> None:
    settings = load_settings(
        REPO_CONFIG,
        env={
            "TACORESERVICE_ENV": "production",
            "TACORESERVICE_LOG_LEVEL": "debug",
            "REDIS_URL": "redis://:secret@cache:6379/1",
            "DATABASE_PATH": "/var/lib/tacore/t.db",
            "WORKER_COUNT": "8",
            "ZMQ_FRONTEND_PORT": "7555",
            "ZMQ_BACKEND_PORT": "7560",
            "API_PORT": "9090",
            "BIND_ADDRESS": "tcp://0.0.0.0:7555",
        },
    )
    assert settings.env == "production" and settings.logging.level == "DEBUG"
    assert settings.cache.redis_url == "redis://:secret@cache:6379/1"
    assert settings.database.path == "/var/lib/tacore/t.db" and settings.worker.count == 8
    assert settings.broker.backend_endpoint == "tcp://127.0.0.1:7560"
    assert settings.api.port == 9090
    assert settings.broker.frontend_endpoint == "tcp://0.0.0.0:7555"  # BIND_ADDRESS wins
    summary = settings.public_summary()
    assert summary["cache"]["redis_url"] == "redis://cache:6379" and ":secret@" not in str(summary)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WORKER_COUNT": "many"}, "worker.count"),
        ({"ZMQ_FRONTEND_PORT": "70000"}, "broker.frontend_port"),
        ({"REDIS_URL": "http://nope"}, "cache.redis_url"),
        ({"BIND_ADDRESS": "5555"}, "broker.bind_address"),
        ({"TACORESERVICE_LOG_LEVEL": "LOUD"}, "logging.level"),
    ],
)
def test_invalid_setting_names_setting_and_source(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(REPO_CONFIG, env=env)
    assert named in str(err.value)
    assert next(iter(env)) in str(err.value)  # the variable it came from


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("broker:\n  max_queue_sise: 5\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert "broker.max_queue_sise" in str(err.value) and str(cfg) in str(err.value)


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("broker: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad, env={})


def test_trading_symbol_lists_are_checked_at_start(tmp_path: Path) -> None:
    trading = tmp_path / "trading_config.yaml"
    trading.write_text("limits:\n  blocked_symbols: [tsla, 'BTC/USDT']\n")
    settings = load_settings(REPO_CONFIG, env={"TACORE_TRADING_CONFIG": str(trading)})
    # Spelt the way the market data spells them, so a trade in any spelling matches.
    assert settings.trading.limits.blocked_symbols == ["TSLA", "BTCUSDT"]
    trading.write_text("limits:\n  allowed_symbols: [AAPL, 'GOOG L']\n")
    with pytest.raises(ConfigError) as err:
        load_settings(REPO_CONFIG, env={"TACORE_TRADING_CONFIG": str(trading)})
    message = str(err.value)
    assert "trading.limits.allowed_symbols" in message and "'GOOG L'" in message
    assert str(trading) in message
