"""``tacore llm serve``: a local model for the llm engine (llama-cpp-python, loopback)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from tacoreservice.cli.common import ConfigOpt, app, fail_from, load_settings_or_exit

llm_app = typer.Typer(help="A local model for the llm engine (llama-cpp-python, loopback).")
app.add_typer(llm_app, name="llm")


@llm_app.command("serve")
def llm_serve(
    model: Annotated[
        str | None,
        typer.Option(help="smollm2 (the llm-local extra's model) or a GGUF file path."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: free).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: cores).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve a local GGUF model on loopback (OpenAI API) until Ctrl+C or SIGTERM.

    `tacore serve` starts one by itself when llm.local_model is set; this is for
    anything else (a lone worker, another tool): set TACORE_LLM_BASE_URL to the printed URL.
    """
    import signal
    import threading

    from tacoreservice.analysis.engines.llm_server import server_for

    settings = load_settings_or_exit(
        config,
        {
            "llm.local_model": model or "smollm2",
            "llm.local_port": port,
            "llm.local_threads": threads,
        },
    )
    llm = settings.llm
    try:
        server = server_for(llm, settings.logging.dir).start(llm.local_start_timeout_s)
    except Exception as exc:  # ServiceError: not installed, no such file, crashed at start
        fail_from(exc)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    sys.stdout.write(
        f"serving {server.model} (pid {server.pid}); log: {server.log_path}\n"
        f"TACORE_LLM_BASE_URL={server.base_url}\n"
        f"TACORE_LLM_QUICK_MODEL={server.alias}\nTACORE_LLM_DEEP_MODEL={server.alias}\n"
    )
    sys.stdout.flush()
    try:
        done.wait()
    finally:
        server.stop()


def llm_usage_lines(engine_name: str | None, settings: Any) -> tuple[dict[str, Any], list[str]]:
    """Token use of the llm engine over a backtest run (the engine is cached per process)."""
    from tacoreservice.analysis.engines import load_engine

    if (engine_name or settings.analysis.default_engine) != "llm":
        return {}, []
    totals = load_engine("llm", settings).usage_totals()  # type: ignore[attr-defined]
    o = totals["outputs"]
    return {"llm_usage": totals}, [
        f"LLM: {totals['analyses']} analyses, {totals['calls']} calls, "
        f"{totals['tokens_used']:,} tokens ({totals['prompt_tokens']:,} prompt, "
        f"{totals['completion_tokens']:,} completion) in {totals['llm_seconds']:.1f} s; "
        f"role outputs used {o['used']}, repaired {o['repaired']}, fell back {o['fell_back']}"
    ]
