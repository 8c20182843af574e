"""``tacore watchdog``: restart an unhealthy service and tell a webhook, as the ops guide has it.

Every ``interval_s`` it asks the broker ``health.check`` (one try, ``probe_timeout_ms``). A probe
fails when nothing answers in time, the answer is an error, or no worker is alive. After
``failures`` failed probes in a row it runs the restart command (for example
``docker compose restart tacoreservice`` or ``systemctl restart tacoreservice``), POSTs a JSON
event to the webhook when one is set, and then leaves the service ``grace_s`` to come back
before probing again. A service that answers again is reported once (``recovered``).

The webhook gets ``{"event": "restart" | "restart_failed" | "recovered", "service", "reason",
"failures", "restart_command", "exit_code", "timestamp"}``; a webhook that fails is logged and
never stops the watchdog. Docker's own ``restart: unless-stopped`` restarts a process that
exits; this catches the one that is up but not serving (a wedged broker, no worker left).
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["Watchdog", "WatchdogOptions", "probe"]

log = logging.getLogger("tacoreservice.watchdog")


@dataclass
class WatchdogOptions:
    endpoints: list[str]
    restart_command: str
    webhook: str | None = None
    interval_s: float = 15.0
    failures: int = 3
    grace_s: float = 60.0
    probe_timeout_ms: int = 2000
    restart_timeout_s: float = 120.0
    max_restarts: int | None = None  # stop after this many restarts (None: never)
    service: str = "tacoreservice"


def probe(endpoints: list[str], timeout_ms: int, client_kwargs: dict[str, Any]) -> str | None:
    """None when the service is healthy, else why not."""
    from tacoreservice.client import TACoreClient, TACoreError

    try:
        with TACoreClient(endpoints, timeout_ms=timeout_ms, retries=0, **client_kwargs) as c:
            health = c.health()
    except TACoreError as exc:
        return str(exc)
    alive = (health.get("workers") or {}).get("alive", 0)
    return None if alive else "the broker answers but no worker is alive"


class Watchdog:
    def __init__(
        self,
        options: WatchdogOptions,
        client_kwargs: dict[str, Any] | None = None,
        say: Callable[[str], None] = log.info,
    ) -> None:
        self.o = options
        self.client_kwargs = client_kwargs or {}
        self.say = say
        self.restarts = 0
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def _notify(self, event: str, **fields: Any) -> None:
        if not self.o.webhook:
            return
        body = {
            "event": event,
            "service": self.o.service,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            **fields,
        }
        request = urllib.request.Request(
            self.o.webhook,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            # The operator's own URL (scheme checked at start): not user input.
            with urllib.request.urlopen(request, timeout=10) as reply:  # nosec B310
                reply.read()
        except OSError as exc:
            self.say(f"webhook {self.o.webhook} failed: {exc}")

    def _restart(self, reason: str, failures: int) -> None:
        self.say(f"unhealthy {failures} times ({reason}); running: {self.o.restart_command}")
        try:
            done = subprocess.run(  # nosec B603 - the operator's own command
                shlex.split(self.o.restart_command),
                timeout=self.o.restart_timeout_s,
                capture_output=True,
                text=True,
                check=False,
            )
            code: int | None = done.returncode
            output = (done.stdout + done.stderr).strip()[-500:]
        except (OSError, subprocess.TimeoutExpired) as exc:
            code, output = None, str(exc)
        self.restarts += 1
        event = "restart" if code == 0 else "restart_failed"
        self.say(f"{event}: exit code {code}{': ' + output if output else ''}")
        self._notify(
            event,
            reason=reason,
            failures=failures,
            restart_command=self.o.restart_command,
            exit_code=code,
            output=output,
        )

    def run(self) -> int:
        failures = 0
        restarted = False
        while not self._stop:
            reason = probe(self.o.endpoints, self.o.probe_timeout_ms, self.client_kwargs)
            if reason is None:
                if restarted:
                    self.say("service healthy again")
                    self._notify("recovered", reason=None, failures=0)
                failures, restarted = 0, False
            else:
                failures += 1
                self.say(f"probe failed ({failures}/{self.o.failures}): {reason}")
                if failures >= self.o.failures:
                    self._restart(reason, failures)
                    failures, restarted = 0, True
                    if self.o.max_restarts is not None and self.restarts >= self.o.max_restarts:
                        self.say(f"{self.restarts} restart(s): --max-restarts reached, stopping")
                        return 0 if self._wait_healthy() else 1
                    self._sleep(self.o.grace_s)
                    continue
            self._sleep(self.o.interval_s)
        return 0

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + self.o.grace_s
        while time.monotonic() < deadline and not self._stop:
            if probe(self.o.endpoints, self.o.probe_timeout_ms, self.client_kwargs) is None:
                self.say("service healthy again")
                self._notify("recovered", reason=None, failures=0)
                return True
            self._sleep(min(self.o.interval_s, 1.0))
        return False

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stop and time.monotonic() < end:
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))
