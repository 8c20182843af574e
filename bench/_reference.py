"""Reference servers for the routing benchmark: the same reply bytes served by FastAPI + uvicorn
and by grpcio, with load generators shaped like the ZeroMQ one (connections x requests in
flight). Both stacks are optional: :func:`available` says which are installed.

- HTTP: ``GET /quote`` answered by an ``async`` FastAPI route returning the bytes as they are,
  ``uvicorn --workers N`` (httptools and uvloop when installed, as ``uvicorn[standard]``
  would). The load generator keeps ``depth`` requests pipelined on each keep-alive HTTP/1.1
  connection, over raw sockets, so the client side costs little.
- gRPC: a generic unary method ``/bench.Quote/Get`` on ``grpc.aio`` servers, N processes on one
  port (``SO_REUSEPORT``: the kernel spreads connections over them). The load generator keeps
  ``depth`` calls in flight on each channel, every channel its own connection.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BODY_ENV = "TACORE_BENCH_BODY_FILE"
_HTTP_REQUEST = b"GET /quote HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def available() -> dict[str, bool]:
    def has(*names: str) -> bool:
        return all(importlib.util.find_spec(n) is not None for n in names)

    return {
        "fastapi": has("fastapi", "uvicorn"),
        "httptools": has("httptools", "uvloop"),
        "grpcio": has("grpc"),
    }


# ------------------------------------------------------------------------------ FastAPI


def _make_app() -> Any:
    from fastapi import FastAPI, Response

    body = Path(os.environ[BODY_ENV]).read_bytes()
    api = FastAPI()

    @api.get("/quote")
    async def quote() -> Response:
        return Response(content=body, media_type="application/json")

    return api


app: Any = _make_app() if os.environ.get(BODY_ENV) else None  # what uvicorn imports


def start_uvicorn(port: int, workers: int, body_file: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO), **{BODY_ENV: str(body_file)})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench._reference:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],  # fmt: skip
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(_HTTP_REQUEST)
                if s.recv(65536).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("uvicorn did not start")


def _responses(buf: bytearray) -> tuple[int, int]:
    """Complete responses at the start of ``buf`` (removed from it): (ok, errors)."""
    ok = errors = 0
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return ok, errors
        head = bytes(buf[:end]).lower()
        at = head.find(b"content-length:")
        stop = head.find(b"\r\n", at)
        length = int(head[at + 15 : stop if stop > 0 else None]) if at >= 0 else 0
        if len(buf) < end + 4 + length:
            return ok, errors
        if head.startswith(b"http/1.1 200"):
            ok += 1
        else:
            errors += 1
        del buf[: end + 4 + length]


def http_load(port: int, clients: int, depth: int, seconds: float, out: Any) -> None:
    sel = selectors.DefaultSelector()
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(_HTTP_REQUEST * depth)
        sel.register(s, selectors.EVENT_READ, bytearray())
    ok = errors = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for key, _ in sel.select(0.1):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            key.data.extend(sock.recv(262144))
            done, bad = _responses(key.data)
            ok, errors = ok + done, errors + bad
            if done + bad:
                sock.sendall(_HTTP_REQUEST * (done + bad))
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    out.put((ok, errors))


# ------------------------------------------------------------------------------ gRPC

_GRPC_METHOD = "/bench.Quote/Get"


def _grpc_server(port: int, body: bytes) -> None:
    import grpc

    async def get(request: bytes, context: Any) -> bytes:
        return body

    async def serve() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
        handler = grpc.method_handlers_generic_handler(
            "bench.Quote", {"Get": grpc.unary_unary_rpc_method_handler(get)}
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


def start_grpc(port: int, processes: int, body: bytes) -> list[Any]:
    import multiprocessing as mp

    procs = [
        mp.Process(target=_grpc_server, args=(port, body), daemon=True) for _ in range(processes)
    ]
    for p in procs:
        p.start()
    import grpc

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                channel.unary_unary(_GRPC_METHOD)(b"", timeout=1)
                return procs
            except grpc.RpcError:
                time.sleep(0.2)
    for p in procs:
        p.kill()
    raise RuntimeError("grpc servers did not start")


def grpc_load(
    port: int, clients: int, depth: int, seconds: float, out: Any, request: bytes = b""
) -> None:
    import grpc

    counts = [0, 0]

    async def run() -> None:
        end = time.perf_counter() + seconds
        channels = [
            # A local subchannel pool each: every channel its own TCP connection.
            grpc.aio.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(clients)
        ]

        async def caller(channel: Any) -> None:
            call = channel.unary_unary(_GRPC_METHOD)
            while time.perf_counter() < end:
                try:
                    await call(request, timeout=10)
                    counts[0] += 1
                except grpc.aio.AioRpcError:
                    counts[1] += 1

        await asyncio.gather(*(caller(c) for c in channels for _ in range(depth)))
        for c in channels:
            await c.close()

    asyncio.run(run())
    out.put((counts[0], counts[1]))
