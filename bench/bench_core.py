"""Core service benchmark: latency against a bare ZeroMQ floor, and throughput by worker count.

    python bench/bench_core.py            # full run, prints a Markdown table
    python bench/bench_core.py --quick    # smaller counts, for a smoke check

Everything is measured in one run on one machine, side by side:
- floor: a bare pyzmq REQ -> REP echo of the same request bytes, server in its own process;
- through the service: REQ client -> broker -> (worker) -> broker -> client, for
  ``health.check`` (answered by the broker) and a cached ``get.market_data`` (a worker round
  trip);
- throughput: load-generator processes with pipelined DEALER sockets (16 clients in all)
  against the embedded service with 1, 2 and 4 workers, request log on, and with it off for 4.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import signal
import statistics
import subprocess
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
from tests.support.service import free_port  # noqa: E402

HEALTH = orjson.dumps({"method": "health.check", "params": {}})
MARKET = orjson.dumps({"method": "get.market_data", "params": {"symbol": "AAPL"}})


def _echo_server(port: int) -> None:
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.bind(f"tcp://127.0.0.1:{port}")
    while True:
        rep.send(rep.recv())


def _bare_broker(frontend: str, backend: str) -> None:
    """The least a Python ROUTER/ROUTER broker can do: LRU routing, no parsing, no logic."""
    from collections import deque

    ctx = zmq.Context()
    fe = ctx.socket(zmq.ROUTER)
    fe.bind(frontend)
    be = ctx.socket(zmq.ROUTER)
    be.bind(backend)
    poller = zmq.Poller()
    poller.register(fe, zmq.POLLIN)
    poller.register(be, zmq.POLLIN)
    workers: deque[bytes] = deque()
    queue: deque[list[bytes]] = deque()
    while True:
        events = dict(poller.poll(250))
        if be in events:
            while be.get(zmq.EVENTS) & zmq.POLLIN:
                frames = be.recv_multipart()
                if len(frames) > 2:
                    fe.send_multipart(frames[1:])
                workers.append(frames[0])
        if fe in events:
            while fe.get(zmq.EVENTS) & zmq.POLLIN:
                queue.append(fe.recv_multipart())
        while queue and workers:
            be.send_multipart([workers.popleft(), *queue.popleft()])


def _bare_worker(backend: str, reply: bytes) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(backend)
    sock.send(b"READY")
    while True:
        if sock.poll(100):
            frames = sock.recv_multipart()
            sock.send_multipart([*frames[:-1], reply])


def measure_latency(endpoint: str, body: bytes, n: int) -> list[float]:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    round_trips(sock, body, 200)  # warm-up: connections, caches, allocators
    samples = round_trips(sock, body, n)
    sock.close()
    return samples


def _load_generator(endpoint: str, clients: int, depth: int, seconds: float, out: Any) -> None:
    """``clients`` DEALER sockets, each keeping ``depth`` requests in flight."""
    ctx = zmq.Context()
    socks = []
    for _ in range(clients):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        socks.append(s)
    poller = zmq.Poller()
    for s in socks:
        poller.register(s, zmq.POLLIN)
        for _ in range(depth):
            s.send_multipart([b"", MARKET])
    ok = errors = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for s, _ in poller.poll(100):
            while True:
                try:
                    frames = s.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if b'"status":"success"' in frames[-1][:40]:
                    ok += 1
                else:
                    errors += 1
                s.send_multipart([b"", MARKET])
    out.put((ok, errors))


def start_service(
    workers: int, request_log: bool, tmp: Path
) -> tuple[subprocess.Popen[bytes], str]:
    fport, bport = free_port(), free_port()
    env = dict(os.environ)
    env.pop("TACORE_SETTINGS_JSON", None)
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "ZMQ_FRONTEND_PORT": str(fport),
            "ZMQ_BACKEND_PORT": str(bport),
            "WORKER_COUNT": str(workers),
            "DATABASE_PATH": str(tmp / f"bench-{fport}.db"),
            "TACORE_LOG_DIR": str(tmp / "logs"),
            "TACORE_MAX_QUEUE_SIZE": "100000",
            "TACORESERVICE_LOG_LEVEL": "WARNING",
            "TACORE_CONFIG": str(REPO / "config" / "config.yaml"),
        }
    )
    if not request_log:
        cfg = tmp / "nolog.yaml"
        cfg.write_text((REPO / "config" / "config.yaml").read_text() + "\n")
        text = cfg.read_text().replace(
            "request_log:\n  enabled: true", "request_log:\n  enabled: false"
        )
        cfg.write_text(text)
        env["TACORE_CONFIG"] = str(cfg)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tacoreservice.main"],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"tcp://127.0.0.1:{fport}"
    ctx = zmq.Context.instance()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        s = ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        s.send(orjson.dumps({"method": "health.check"}))
        if s.poll(500):
            data = orjson.loads(s.recv())["data"]
            s.close()
            if data["workers"]["alive"] == workers:
                return proc, endpoint
        else:
            s.close()
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("service did not start")


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def throughput(endpoint: str, seconds: float, clients: int = 16, depth: int = 8) -> dict[str, Any]:
    procs_n = 2  # two load processes, so the clients are not the bottleneck of one GIL
    out: mp.Queue[tuple[int, int]] = mp.Queue()
    procs = [
        mp.Process(target=_load_generator, args=(endpoint, clients // procs_n, depth, seconds, out))
        for _ in range(procs_n)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 30) for _ in procs]
    for p in procs:
        p.join()
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    return {"ok": ok, "errors": errors, "rps": ok / seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "core.json"))
    args = parser.parse_args()
    n = 1000 if args.quick else 5000
    seconds = 3.0 if args.quick else 8.0
    tmp = Path(tempfile.mkdtemp(prefix="tacore-bench-"))
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "libzmq": zmq.zmq_version(),
            "pyzmq": zmq.__version__,
        }
    }

    port = free_port()
    echo = mp.Process(target=_echo_server, args=(port,), daemon=True)
    echo.start()
    time.sleep(0.3)
    proc, endpoint = start_service(4, True, tmp)
    try:
        # Interleave floor and service runs so drift on a noisy VM hits both alike.
        floor: list[float] = []
        health: list[float] = []
        market: list[float] = []
        for _ in range(3):
            floor += measure_latency(f"tcp://127.0.0.1:{port}", HEALTH, n // 3)
            health += measure_latency(endpoint, HEALTH, n // 3)
            market += measure_latency(endpoint, MARKET, n // 3)
    finally:
        stop_service(proc)
        echo.terminate()
    # The same worker round trip through the bare Python chain, and through the service with
    # a single worker (no LRU rotation over cold processes).
    fe, be = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    bare = [
        mp.Process(target=_bare_broker, args=(fe, be), daemon=True),
        mp.Process(target=_bare_worker, args=(be, HEALTH), daemon=True),
    ]
    for p in bare:
        p.start()
    time.sleep(0.5)
    chain = measure_latency(fe, MARKET, n)
    for p in bare:
        p.terminate()
    proc, endpoint = start_service(1, True, tmp)
    try:
        one_worker = measure_latency(endpoint, MARKET, n)
    finally:
        stop_service(proc)
    lat = {}
    for name, samples in (
        ("floor_req_rep_echo", floor),
        ("health_check", health),
        ("market_data_cached", market),
        ("bare_python_chain_1_worker", chain),
        ("market_data_cached_1_worker", one_worker),
    ):
        lat[name] = {
            "p50_us": round(statistics.median(samples), 1),
            "p99_us": round(percentile(samples, 99), 1),
            "n": len(samples),
        }
    for name in (
        "health_check",
        "market_data_cached",
        "bare_python_chain_1_worker",
        "market_data_cached_1_worker",
    ):
        lat[name]["p50_vs_floor"] = round(
            lat[name]["p50_us"] / lat["floor_req_rep_echo"]["p50_us"], 2
        )
    results["latency"] = lat

    tput = {}
    # Ceiling: the same load through the bare Python broker chain with 1 and 4 workers.
    sample_reply = orjson.dumps({"status": "success", "data": {"symbol": "AAPL"}})
    for workers in (1, 4):
        fe, be = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        procs = [mp.Process(target=_bare_broker, args=(fe, be), daemon=True)]
        procs += [
            mp.Process(target=_bare_worker, args=(be, sample_reply), daemon=True)
            for _ in range(workers)
        ]
        for p in procs:
            p.start()
        time.sleep(0.5)
        try:
            throughput(fe, 1.0)
            tput[f"bare_python_chain_{workers}_workers"] = throughput(fe, seconds)
        finally:
            for p in procs:
                p.terminate()
    for workers, request_log in ((1, True), (2, True), (4, True), (4, False)):
        proc, endpoint = start_service(workers, request_log, tmp)
        try:
            throughput(endpoint, 1.0)  # warm-up
            key = f"{workers}_workers" + ("" if request_log else "_no_request_log")
            tput[key] = throughput(endpoint, seconds)
        finally:
            stop_service(proc)
    results["throughput"] = tput

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print("\n| measure | p50 (us) | p99 (us) | p50 / floor |\n|---|---|---|---|")
    for name, v in lat.items():
        print(f"| {name} | {v['p50_us']} | {v['p99_us']} | {v.get('p50_vs_floor', 1.0)} |")
    print("\n| setup | requests/s | errors |\n|---|---|---|")
    for name, v in tput.items():
        print(f"| {name} | {v['rps']:.0f} | {v['errors']} |")


if __name__ == "__main__":
    main()
