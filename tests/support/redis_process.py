"""A real redis-server on a free loopback port, for fixtures that need one of their own."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.service import free_port


def _answers(port: int, password: str | None) -> bool:
    hello = (f"AUTH {password}\r\n" if password else "") + "PING\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(hello.encode())
            return b"+PONG" in s.recv(128)
    except OSError:
        return False


@contextmanager
def redis_process(workdir: Path, password: str | None = None) -> Iterator[str]:
    """Start redis-server without persistence; yield its URL (with the password, if any)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.skip("redis-server not found; install it with `apt-get install redis-server`")
    extra = ["--requirepass", password] if password else []
    # Another process can take the port between free_port() and the bind: try a few.
    for _attempt in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", *extra]
            + ["--save", "", "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10.0
        while proc.poll() is None and time.monotonic() < deadline:
            if _answers(port, password):
                break
            time.sleep(0.02)
        if proc.poll() is None and _answers(port, password):
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail("redis-server did not start answering PING")
    auth = f":{password}@" if password else ""
    try:
        yield f"redis://{auth}127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
