"""What CURVE costs: round trips with and without it, side by side in one run, and the
handshake of a new connection.

    python bench/bench_curve.py            # about 1 minute
    python bench/bench_curve.py --quick    # smoke run

Measured, alternating the setups so drift on a noisy machine hits both alike:
- bare pyzmq REQ -> REP echo, plain and CURVE (the encryption's own cost, nothing else);
- the embedded service (2 workers), security off and CURVE on: ``health.check`` (broker only)
  and cached ``get.market_data`` (broker and a worker: four encrypted hops with CURVE);
- first request on a fresh connection (connect, handshake, ZAP check, one ``health.check``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import percentile, round_trips  # noqa: E402
from tacoreservice.security.keys import generate_keys, load_key_pair, load_public_key  # noqa: E402
from tests.support.service import ServiceProcesses, free_port  # noqa: E402

HEALTH = orjson.dumps({"method": "health.check", "params": {}})
MARKET = orjson.dumps({"method": "get.market_data", "params": {"symbol": "AAPL"}})
RATE_OFF = {"TACORE_RATE_LIMIT_ENABLED": "false"}  # measure CURVE, not the bucket


def _echo(port: int, keys: str | None) -> None:
    from zmq.auth.thread import ThreadAuthenticator

    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    if keys:
        auth = ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_curve(domain="*", location=str(Path(keys) / "clients"))
        public, secret = load_key_pair(Path(keys) / "server.key_secret")
        rep.curve_server = True
        rep.curve_publickey = public
        rep.curve_secretkey = secret
    rep.bind(f"tcp://127.0.0.1:{port}")
    while True:
        rep.send(rep.recv())


def _socket(endpoint: str, keys: Path | None) -> zmq.Socket:
    sock: zmq.Socket = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        public, secret = load_key_pair(keys / "private" / "bench.key_secret")
        sock.curve_serverkey = load_public_key(keys / "server.key")
        sock.curve_publickey = public
        sock.curve_secretkey = secret
    sock.connect(endpoint)
    return sock


def first_request(endpoint: str, keys: Path | None) -> float:
    t0 = time.perf_counter()
    sock = _socket(endpoint, keys)
    sock.send(HEALTH)
    if not sock.poll(5000):
        raise RuntimeError(f"no reply from {endpoint}")
    sock.recv()
    elapsed = (time.perf_counter() - t0) * 1e6
    sock.close()
    return elapsed


def _summary(samples: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(samples), "p99": percentile(samples, 99), "n": len(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, rounds, fresh = (500, 2, 20) if args.quick else (3000, 5, 100)

    with tempfile.TemporaryDirectory(prefix="bench-curve-") as tmp_name:
        tmp = Path(tmp_name)
        keys = tmp / "keys"
        generate_keys(keys, ["bench"])
        procs = []
        echo_ports = {"plain": free_port(), "curve": free_port()}
        for kind, port in echo_ports.items():
            proc = mp.Process(
                target=_echo, args=(port, str(keys) if kind == "curve" else None), daemon=True
            )
            proc.start()
            procs.append(proc)
        (tmp / "plain").mkdir()
        (tmp / "curve").mkdir()
        plain = ServiceProcesses(tmp / "plain", workers=2, **RATE_OFF)
        curve = ServiceProcesses(
            tmp / "curve", workers=2, TACORE_SECURITY="curve", TACORE_KEYS_DIR=str(keys), **RATE_OFF
        )
        curve.client_kwargs = {
            "server_key": keys / "server.key",
            "client_key": keys / "private" / "bench.key_secret",
        }
        try:
            plain.start_main()
            curve.start_main()
            endpoints: dict[str, tuple[str, Path | None]] = {
                "echo plain": (f"tcp://127.0.0.1:{echo_ports['plain']}", None),
                "echo CURVE": (f"tcp://127.0.0.1:{echo_ports['curve']}", keys),
                "service plain": (plain.endpoint, None),
                "service CURVE": (curve.endpoint, keys),
            }
            socks = {name: _socket(ep, k) for name, (ep, k) in endpoints.items()}
            for sock in socks.values():  # warm-up: connections, caches, allocators
                round_trips(sock, MARKET, 200)
            samples: dict[str, list[float]] = {}
            handshakes: dict[str, list[float]] = {"service plain": [], "service CURVE": []}
            for _ in range(rounds):  # alternate, so machine drift hits every setup alike
                for name, sock in socks.items():
                    if name.startswith("echo"):
                        samples.setdefault(name, []).extend(round_trips(sock, HEALTH, n))
                    else:
                        samples.setdefault(f"{name}: health.check", []).extend(
                            round_trips(sock, HEALTH, n)
                        )
                        samples.setdefault(f"{name}: get.market_data", []).extend(
                            round_trips(sock, MARKET, n)
                        )
                for name in handshakes:
                    ep, k = endpoints[name]
                    handshakes[name].extend(first_request(ep, k) for _ in range(fresh // rounds))
            for sock in socks.values():
                sock.close()
        finally:
            plain.stop()
            curve.stop()
            for proc in procs:
                proc.kill()

    results: dict[str, Any] = {k: _summary(v) for k, v in samples.items()}
    results.update({f"first request, {k}": _summary(v) for k, v in handshakes.items()})
    print(f"CURVE cost: {n * rounds} round trips per setup, {fresh} fresh connections\n")
    print("| measure | p50 µs | p99 µs | CURVE − plain (p50) |")
    print("|---|---:|---:|---:|")
    pairs = [
        ("echo plain", "echo CURVE"),
        ("service plain: health.check", "service CURVE: health.check"),
        ("service plain: get.market_data", "service CURVE: get.market_data"),
        ("first request, service plain", "first request, service CURVE"),
    ]
    for a, b in pairs:
        ra, rb = results[a], results[b]
        print(f"| {a} | {ra['p50']:.1f} | {ra['p99']:.1f} | |")
        print(f"| {b} | {rb['p50']:.1f} | {rb['p99']:.1f} | +{rb['p50'] - ra['p50']:.1f} |")


if __name__ == "__main__":
    main()
