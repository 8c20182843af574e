"""A CURVE client that runs inside a network namespace, driven over stdin/stdout.

The test process cannot join a namespace cleanly (setns applies per thread and would drag
pytest's own sockets along), so it starts this script with ``ip netns exec NS python
netns_probe.py ENDPOINT SERVER_KEY CLIENT_KEY`` and talks to it in JSON lines:

    in:  {"method": "health.check", "params": {...}, "timeout_ms": 1000, "deadline_ms": null}
    out: the service's reply object, or {"status": "timeout", "message": ...} when no reply
         came within timeout_ms (the client does not retry: the test decides what to do).

The first line out is {"ready": true} once the imports are done, so the test's timing never
includes interpreter start-up.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from tacoreservice.client import TACoreClient, TACoreTimeout


def answer(client: TACoreClient, line: bytes) -> dict[str, Any]:
    order = orjson.loads(line)
    try:
        reply: dict[str, Any] = client.request(
            order["method"],
            order.get("params") or {},
            timeout_ms=int(order.get("timeout_ms") or 1000),
            deadline_ms=order.get("deadline_ms"),
            retries=0,
        )
    except TACoreTimeout as exc:
        return {"status": "timeout", "message": str(exc)}
    return reply


def main(endpoint: str, server_key: str, client_key: str) -> int:
    client = TACoreClient(endpoint, server_key=server_key, client_key=client_key, retries=0)
    out = sys.stdout.buffer
    out.write(orjson.dumps({"ready": True}) + b"\n")
    out.flush()
    for line in sys.stdin.buffer:
        if line.strip():
            out.write(orjson.dumps(answer(client, line)) + b"\n")
            out.flush()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
