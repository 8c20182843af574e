"""Long protocol fuzz run against a running service: the properties of tests/test_fuzz.py, more.

    python bench/fuzz_protocol.py --examples 100000       # spread over the six properties
    python bench/fuzz_protocol.py --examples 2000 --seed 7 --only deep

Each case is sent to a real service (broker + 2 workers, TACORE_MAX_MESSAGE_BYTES=65536; the
burst property uses a second service with rate limiting on), every reply is checked against
the protocol model of tests/support/fuzz_harness.py, and a well-formed probe follows each case.
A failure is recorded and the run goes on with a fresh seed; a dead broker is recorded and
replaced, so one bug does not hide the next. At the end: cases, wall time, failures, outcomes,
and the state of the broker and its workers. Raw figures go to bench/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.support.fuzz_harness import FuzzService, FuzzTarget  # noqa: E402
from tests.support.fuzz_strategies import (  # noqa: E402
    FuzzCase,
    Probe,
    deep_cases,
    frame_cases,
    probes,
    rate_limit_cases,
    request_cases,
    sized_cases,
    socket_cases,
)
from tests.test_fuzz import MAX_MESSAGE_BYTES, RATE_LIMIT_ENV  # noqa: E402

# name -> (strategy, share of the examples (the test module's defaults), service)
PROPERTIES: dict[str, tuple[st.SearchStrategy[FuzzCase], int, str]] = {
    "frames": (frame_cases(), 150, "main"),
    "json": (request_cases(), 300, "main"),
    "deep": (deep_cases(), 150, "main"),
    "sizes": (sized_cases(MAX_MESSAGE_BYTES), 80, "main"),
    "sockets": (socket_cases(), 150, "main"),
    "bursts": (rate_limit_cases(), 25, "rate_limited"),
}


def _signature(text: str) -> str:
    """What went wrong, without the case: failures of one kind count together."""
    first = text.split("\n", 1)[0]
    match = re.search(r"\]\): \[\d+\] (.*?)(?::\s*b['\"]|$)", first)
    reason = match.group(1) if match else first
    reason = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", reason)
    return re.sub(r"\[b'.*", "", reason)[:160]


def _runner(target: FuzzTarget) -> Callable[[FuzzCase, Probe], None]:
    def one_example(case: FuzzCase, probe: Probe) -> None:
        target.run_case(case)
        target.probe(probe)

    return one_example


def run_property(
    name: str, service: FuzzService, examples: int, base_seed: int, failures: list[dict[str, Any]]
) -> int:
    """Run ``examples`` cases of one property; returns the cases sent."""
    strategy = PROPERTIES[name][0]
    done = 0
    session = 0
    while done < examples:
        session += 1
        target = service.current()  # a fresh service if the last failure killed the broker
        before = target.stats["cases"]

        one_example = settings(
            max_examples=examples - done,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],
        )(seed(base_seed * 1000 + session)(given(case=strategy, probe=probes())(_runner(target))))

        try:
            one_example()
        except BaseException as exc:  # noqa: BLE001 - a failure is a result, the run goes on
            if isinstance(exc, KeyboardInterrupt):
                raise
            text = str(exc)
            failures.append(
                {
                    "property": name,
                    "after_cases": done + target.stats["cases"] - before,
                    "broker_died": not service.alive(),
                    "error": text[:3000],
                    "signature": _signature(text),
                }
            )
            print(f"  FAILURE in {name}: {text.splitlines()[0][:200]}", flush=True)
            if not service.alive():
                print("  broker died; going on with a fresh service", flush=True)
        sent = target.stats["cases"] - before
        done += sent
        if sent == 0:  # hypothesis had nothing more to generate
            break
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--examples", type=int, default=10_000, help="cases in all")
    parser.add_argument("--seed", type=int, default=None, help="reproduce a run")
    parser.add_argument("--only", choices=sorted(PROPERTIES), action="append")
    args = parser.parse_args()
    base_seed = args.seed if args.seed is not None else random.randrange(1, 10**6)
    names = args.only or list(PROPERTIES)
    weight = sum(PROPERTIES[n][1] for n in names)
    shares = {n: max(1, round(args.examples * PROPERTIES[n][1] / weight)) for n in names}

    print(f"fuzz run: {sum(shares.values())} cases, seed {base_seed}, shares {shares}")
    print(
        f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    failures: list[dict[str, Any]] = []
    per_property: dict[str, dict[str, Any]] = {}
    root = Path(tempfile.mkdtemp(prefix="tacore-fuzz-"))
    services: dict[str, FuzzService] = {}
    started = time.perf_counter()
    try:
        for name in names:
            kind = PROPERTIES[name][2]
            if kind not in services:
                limited = kind == "rate_limited"
                services[kind] = FuzzService(
                    root / kind,
                    workers=1 if limited else 2,
                    max_bytes=MAX_MESSAGE_BYTES,
                    rate_limited=limited,
                    **(RATE_LIMIT_ENV if limited else {"TACORE_RATE_LIMIT_ENABLED": "false"}),
                )
            t0 = time.perf_counter()
            cases = run_property(name, services[kind], shares[name], base_seed, failures)
            elapsed = time.perf_counter() - t0
            per_property[name] = {"cases": cases, "seconds": round(elapsed, 1)}
            print(f"{name:8s} {cases:7d} cases in {elapsed:7.1f} s ({cases / elapsed:6.1f}/s)")
        wall = time.perf_counter() - started
        status: dict[str, Any] = {}
        outcomes: Counter[str] = Counter()
        for kind, service in services.items():
            try:
                status[kind] = service.current().status()
            except AssertionError as exc:
                status[kind] = {"broker_alive": service.alive(), "error": str(exc)[:500]}
            status[kind]["services_replaced"] = service.replaced
            lost = not status[kind].get("same_worker_pids", False)
            for problem, bad in (
                ("broker or worker not intact at the end", lost),
                ("jobs crashed (INTERNAL / WORKER_LOST)", bool(status[kind].get("job_crashes"))),
            ):
                if bad:
                    failures.append({"property": kind, "signature": problem, "error": problem})
    finally:
        for service in services.values():
            service.stop()
            outcomes += service.totals
    total = sum(p["cases"] for p in per_property.values())
    signatures = Counter(f["signature"] for f in failures)
    print()
    print(f"cases: {total}   wall time: {wall:.0f} s ({total / wall:.1f} cases/s)")
    print(f"failures: {len(failures)} ({len(signatures)} distinct)")
    for sig, count in signatures.most_common():
        print(f"  {count:4d} x {sig}")
    print("outcomes:", dict(outcomes.most_common()))
    for kind, st_ in status.items():
        print(f"{kind} service at the end:", json.dumps(st_, default=str))
    out = REPO / "bench" / "results" / "fuzz.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "seed": base_seed,
                "cases": total,
                "wall_s": round(wall, 1),
                "per_property": per_property,
                "failures": failures,
                "outcomes": dict(outcomes),
                "status": status,
            },
            indent=2,
            default=str,
        )
    )
    print(f"raw results: {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
