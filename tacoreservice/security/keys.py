"""CURVE key files: writing them (``tacore keys generate``), loading them, and the key rings
the broker checks connecting peers against.

Layout under ``keys_dir`` (the file format is ZeroMQ's certificate format, which
``zmq.auth.load_certificate`` and every other ZeroMQ binding's tooling read):

    server.key            the broker's public key: give it to every client and worker
    server.key_secret     the broker's secret key (mode 0600)
    clients/NAME.key      public keys of the clients the broker lets in; NAME is the client's
                          name in permissions and rate limits
    workers/NAME.key      public keys of the workers the broker lets register
    private/NAME.key_secret  each client's or worker's secret key (mode 0600): hand each file
                          to that module only, then delete it here if you like

Adding or removing a file in clients/ or workers/ takes effect without a restart (the broker
re-reads the folder every ``security.reload_interval_s``).
"""

from __future__ import annotations

import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth

from tacoreservice.config import ConfigError
from tacoreservice.protocol.messages import CLIENT_NAME_PATTERN

__all__ = [
    "KEY_NAME_PATTERN",
    "CurveKeys",
    "GeneratedKeys",
    "apply_curve",
    "load_curve_keys",
    "KeyRing",
    "generate_keys",
    "load_key_pair",
    "load_public_key",
]

log = logging.getLogger(__name__)

KEY_NAME_PATTERN = CLIENT_NAME_PATTERN  # a client key file is named as its client
_CERT = """#   ****  Generated on {when} by tacore keys generate  ****
#   ZeroMQ CURVE {kind} Certificate
#   {advice}

metadata
curve
    public-key = "{public}"
{secret_line}"""


def _write_certificate(path: Path, public: bytes, secret: bytes | None) -> None:
    kind = "**Secret**" if secret else "Public"
    advice = (
        "DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions."
        if secret
        else "Exchange securely, or verify the contents of this file after exchange."
    )
    text = _CERT.format(
        when=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        kind=kind,
        advice=advice,
        public=public.decode("ascii"),
        secret_line=f'    secret-key = "{secret.decode("ascii")}"\n' if secret else "",
    )
    tmp = path.with_name(path.name + ".tmp")
    # Created 0600 from the first byte: a secret must never be readable by others, not even
    # for the moment between writing and a chmod.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text)
    os.replace(tmp, path)


@dataclass
class GeneratedKeys:
    keys_dir: Path
    created: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def _check_name(name: str) -> None:
    if not KEY_NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"key name {name!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-'"
        )


def _pair(keys_dir: Path, public: Path, secret: Path, force: bool, out: GeneratedKeys) -> None:
    if public.exists() and secret.exists() and not force:
        out.kept.extend([public, secret])
        return
    pub, sec = zmq.curve_keypair()
    _write_certificate(secret, pub, sec)
    _write_certificate(public, pub, None)
    out.created.extend([public, secret])


def generate_keys(
    keys_dir: str | Path,
    clients: list[str],
    workers: list[str] | None = None,
    force: bool = False,
) -> GeneratedKeys:
    """Write the server pair and one pair per client and worker name.

    Existing pairs are kept unless ``force``: running it again to add a client must not lock
    every other module out by replacing the server key.
    """
    workers = ["worker"] if workers is None else workers
    for name in [*clients, *workers]:
        _check_name(name)
    both = set(clients) & set(workers)
    if both:
        raise ValueError(
            f"{sorted(both)} named both as client and as worker: their secret files would share "
            "private/NAME.key_secret; give the worker another name"
        )
    if not zmq.has("curve"):
        raise RuntimeError("this libzmq was built without CURVE support")
    root = Path(keys_dir)
    for folder, mode in (
        (root, 0o755),
        (root / "clients", 0o755),
        (root / "workers", 0o755),
        (root / "private", 0o700),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, mode)
    out = GeneratedKeys(root)
    _pair(root, root / "server.key", root / "server.key_secret", force, out)
    for name in clients:
        _pair(
            root,
            root / "clients" / f"{name}.key",
            root / "private" / f"{name}.key_secret",
            force,
            out,
        )
    for name in workers:
        _pair(
            root,
            root / "workers" / f"{name}.key",
            root / "private" / f"{name}.key_secret",
            force,
            out,
        )
    return out


def _load(path: Path, what: str) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise ConfigError(
            f"{what} {path} does not exist: run `tacore keys generate` (or set the path in "
            "security.* / the environment; see SECURITY.md)"
        )
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} {path} is not a ZeroMQ CURVE certificate: {exc}") from None
    if public is None or len(public) != 40:
        raise ConfigError(f"{what} {path} holds no valid public-key line")
    return public, secret


def load_public_key(path: str | os.PathLike[str], what: str = "public key") -> bytes:
    """The Z85 public key in a certificate file (``server.key`` for clients and workers)."""
    return _load(Path(path), what)[0]


def load_key_pair(path: str | os.PathLike[str], what: str = "secret key") -> tuple[bytes, bytes]:
    """The Z85 (public, secret) pair of a ``.key_secret`` file."""
    p = Path(path)
    public, secret = _load(p, what)
    if secret is None or len(secret) != 40:
        raise ConfigError(
            f"{what} {p} holds no secret-key line: pass the .key_secret file, not the .key one"
        )
    mode = p.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "%s %s is readable by group or others (mode %o): chmod 600 it", what, p, mode & 0o777
        )
    return public, secret


class KeyRing:
    """The public keys in one folder, by key, with the name each file gives its holder.

    ``reload_if_changed`` is cheap (one scandir of a small folder) so the broker can call it
    every couple of seconds: adding or removing a key needs no restart.
    """

    def __init__(self, folder: str | Path, what: str):
        self.folder = Path(folder)
        self.what = what
        self.names: dict[bytes, str] = {}
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self.reload_if_changed()

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        try:
            entries = [
                (e.name, e.stat().st_mtime_ns, e.stat().st_size)
                for e in os.scandir(self.folder)
                if e.name.endswith(".key") and e.is_file()
            ]
        except FileNotFoundError:
            return ()
        return tuple(sorted(entries))

    def reload_if_changed(self) -> bool:
        signature = self._scan()
        if signature == self._signature:
            return False
        names: dict[bytes, str] = {}
        for name, _, _ in signature:
            path = self.folder / name
            try:
                public, _ = zmq.auth.load_certificate(path)
            except (OSError, ValueError) as exc:
                log.warning("%s: %s skipped, not a CURVE certificate: %s", self.what, path, exc)
                continue
            if public is None or len(public) != 40:
                log.warning("%s: %s skipped, no valid public-key line", self.what, path)
                continue
            names[public] = name[: -len(".key")]
        if self._signature is not None:
            added = set(names.values()) - set(self.names.values())
            removed = set(self.names.values()) - set(names.values())
            log.info(
                "%s reloaded from %s: %d keys (added %s, removed %s)",
                self.what,
                self.folder,
                len(names),
                sorted(added) or "none",
                sorted(removed) or "none",
            )
        elif not names:
            log.warning("%s: no public keys in %s; nobody can connect", self.what, self.folder)
        self.names = names  # one assignment: the ZAP thread sees the old or the new ring
        self._signature = signature
        return True

    def name_for(self, public_z85: bytes) -> str | None:
        return self.names.get(public_z85)


CurveKeys = tuple[bytes, bytes, bytes]  # server public, client public, client secret (Z85)


def load_curve_keys(
    server_key: str | os.PathLike[str] | None,
    client_key: str | os.PathLike[str] | None,
    who: str = "this client",
) -> CurveKeys | None:
    """Read the broker's public key and this client's key pair once, at construction.

    ``server_key`` is the broker's ``server.key``; ``client_key`` this module's (or worker's)
    ``NAME.key_secret`` (both written by ``tacore keys generate``). Neither: no CURVE.
    """
    if server_key is None and client_key is None:
        return None
    if server_key is None or client_key is None:
        raise ValueError(
            "CURVE needs both server_key (the broker's server.key) and client_key (this "
            "module's NAME.key_secret)"
        )
    server = load_public_key(server_key, "the broker's public key")
    public, secret = load_key_pair(client_key, f"{who}'s secret key")
    return server, public, secret


def apply_curve(sock: zmq.Socket, keys: CurveKeys | None) -> None:
    """Make ``sock`` a CURVE client of the broker (before it connects); no-op without keys."""
    if keys is not None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, keys[0])
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys[1])
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys[2])
