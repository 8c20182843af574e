"""Methods for the test-suite only, loaded into workers with TACORE_PLUGINS.

They let tests count executions across processes (a marker file gets one line per run),
hold a worker busy, and make handlers fail or crash on purpose.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from tacoreservice.service.registry import MethodContext, method


class _Lenient(BaseModel):
    """Test methods keep any extra key (tests pass markers, payloads and planted secrets
    through them); the service's own methods refuse keys they do not read."""

    model_config = ConfigDict(extra="allow")


class SleepParams(_Lenient):
    seconds: float = 0.5
    marker: str | None = None


@method("test.sleep", SleepParams)
def sleep(params: SleepParams, ctx: MethodContext) -> dict[str, Any]:
    if params.marker:
        with open(params.marker, "a") as f:
            f.write(f"{os.getpid()} {ctx.request_id}\n")
    time.sleep(params.seconds)
    return {"slept": params.seconds, "pid": os.getpid()}


class EchoParams(_Lenient):
    payload: Any = None


@method("test.echo", EchoParams)
def echo(params: EchoParams, ctx: MethodContext) -> dict[str, Any]:
    return {"payload": params.payload, "pid": os.getpid()}


class Empty(_Lenient):
    pass


@method("test.fail", Empty)
def fail(params: Empty, ctx: MethodContext) -> None:
    raise RuntimeError("deliberate failure in test.fail")


@method("test.crash", Empty)
def crash(params: Empty, ctx: MethodContext) -> None:
    os._exit(3)


class StepsParams(_Lenient):
    steps: int = 5
    delay: float = 0.1
    marker: str | None = None


@method("test.steps", StepsParams)
def steps(params: StepsParams, ctx: MethodContext) -> dict[str, Any]:
    """A long computation in steps, reporting progress and honouring cancellation."""
    if params.marker:
        with open(params.marker, "a") as f:
            f.write(f"start {os.getpid()} {ctx.request_id}\n")
    roles = {f"step{i + 1}": "pending" for i in range(params.steps)}
    for i in range(params.steps):
        ctx.check_cancelled()
        roles[f"step{i + 1}"] = "running"
        ctx.progress(f"step{i + 1}", 100.0 * i / params.steps, {"roles": dict(roles)})
        time.sleep(params.delay)
        roles[f"step{i + 1}"] = "done"
        if params.marker:
            with open(params.marker, "a") as f:
                f.write(f"done step{i + 1}\n")
    return {"steps": params.steps, "pid": os.getpid()}
