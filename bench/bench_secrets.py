"""What keeping secrets out of outputs costs: request-log redaction and the log masking filter.

    python bench/bench_secrets.py               # 2000 runs of each micro case
    python bench/bench_secrets.py --runs 10000

- ``redact body``: :class:`BodyRedactor` on one body, as the request-log writer thread does it,
  with the default ``security.redact_fields`` and 8 secret values: a small request without a
  credential field (the cheap path: substring checks only), the same with ``api_key`` and a
  nested ``password`` (parsed, rewritten), and a real ``analyze.stock`` reply (quant engine,
  about 12 KB) without credential fields (scanned for the 13 quoted field names and the 8
  values, not parsed).
- ``writer``: a real :class:`RequestLogWriter` on a SQLite file in a temporary folder, 20,000
  rows (request + reply bodies as the broker hands them over, bytes), without and with
  redaction: wall time from the first ``record()`` to ``flush()`` returning, as rows/s.
- ``log record``: one ``logger.info`` with two %-args through a StreamHandler into memory,
  without and with :class:`SecretMaskingFilter` (8 secrets, none in the message).

Medians (p50) and p95 of ``--runs`` timed calls; the writer case is one run of 20,000 rows.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import Row, percentile, uncached_context  # noqa: E402
from tacoreservice.config import Settings  # noqa: E402
from tacoreservice.security.log_masking import SecretMaskingFilter  # noqa: E402
from tacoreservice.security.redaction import BodyRedactor  # noqa: E402
from tacoreservice.service.registry import call_method  # noqa: E402
from tacoreservice.storage.request_log import RequestLogEntry, RequestLogWriter  # noqa: E402

SECRETS = [f"planted-secret-value-{i:02d}-{'x' * i}" for i in range(8)]
FIELDS = Settings().security.redact_fields


def _time(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    fn()  # warm up
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    return percentile(samples, 50), percentile(samples, 95)


def bench_redact_body(args: argparse.Namespace) -> list[Row]:
    redactor = BodyRedactor(FIELDS, SECRETS)
    plain = json.dumps(
        {"request_id": "r-1", "method": "get.market_data", "params": {"symbol": "AAPL"}}
    )
    creds = json.dumps(
        {
            "request_id": "r-2",
            "method": "get.market_data",
            "params": {"symbol": "AAPL", "api_key": "k" * 32, "nested": {"password": "p" * 16}},
        }
    )
    ctx = uncached_context()
    reply = json.dumps(
        {"status": "success", "data": call_method("analyze.stock", {"symbol": "AAPL"}, ctx)}
    )
    rows = []
    for case, body in (
        ("small request, no credential field", plain),
        ("small request, api_key + nested password", creds),
        (f"analyze.stock reply ({len(reply) / 1024:.0f} KB)", reply),
    ):
        p50, p95 = _time(lambda body=body: redactor.text(body), args.runs)  # type: ignore[misc]
        rows.append({"benchmark": "redact body", "case": case, "p50_us": p50, "p95_us": p95})
    return rows


def bench_writer(args: argparse.Namespace) -> list[Row]:
    n = 20_000
    request = json.dumps(
        {"request_id": "r", "method": "get.market_data", "params": {"symbol": "AAPL"}}
    ).encode()
    response = json.dumps({"status": "success", "data": {"symbol": "AAPL", "close": 1.0}}).encode()
    rows = []
    cases: tuple[tuple[str, dict[str, Any]], ...] = (
        ("no redaction", {}),
        ("redact_fields + 8 secret values", {"redact_fields": FIELDS, "mask_values": SECRETS}),
    )
    for case, kwargs in cases:
        with tempfile.TemporaryDirectory() as tmp:
            writer = RequestLogWriter(Path(tmp) / "bench.db", Settings().request_log, **kwargs)
            with writer:
                t0 = time.perf_counter()
                for i in range(n):
                    writer.record(
                        RequestLogEntry(f"r{i}", "m", "w", request, response, 1.0, "success")
                    )
                assert writer.flush(timeout=120)
                elapsed = time.perf_counter() - t0
        rows.append(
            {
                "benchmark": "writer",
                "case": f"{case}: {n / elapsed:,.0f} rows/s",
                "p50_us": elapsed / n * 1e6,
                "p95_us": float("nan"),
            }
        )
    return rows


def bench_log_record(args: argparse.Namespace) -> list[Row]:
    rows = []
    for case, masked in (("no filter", False), ("SecretMaskingFilter, 8 secrets", True)):
        handler = logging.StreamHandler(io.StringIO())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        if masked:
            handler.addFilter(SecretMaskingFilter(SECRETS))
        logger = logging.getLogger(f"bench.secrets.{masked}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        p50, p95 = _time(
            lambda logger=logger: logger.info("worker %s ready (pid %d)", "w-1234", 4321),  # type: ignore[misc]
            args.runs,
        )
        rows.append({"benchmark": "log record", "case": case, "p50_us": p50, "p95_us": p95})
    return rows


BENCHMARKS = [bench_redact_body, bench_writer, bench_log_record]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()}"
    )
    print("| benchmark | case | p50 µs | p95 µs |")
    print("|---|---|---:|---:|")
    for bench in BENCHMARKS:
        for r in bench(args):
            p95 = "-" if r["p95_us"] != r["p95_us"] else f"{r['p95_us']:.2f}"  # NaN: one run
            print(f"| {r['benchmark']} | {r['case']} | {r['p50_us']:.2f} | {p95} |")


if __name__ == "__main__":
    main()
