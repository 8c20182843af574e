"""Where credentials come from, and which values every output must mask.

A credential (LLM API key, monitoring API token, exchange keys) is never a setting that can
live in config.yaml. It is read from the environment variable ``NAME``, or, when that is unset,
from the file named by ``NAME_FILE`` (the Docker / Kubernetes secrets convention:
``TACORE_LLM_API_KEY_FILE=/run/secrets/llm_key``), stripped of surrounding whitespace.

A ``NAME_FILE`` inside a git work tree is refused: a key file next to the code is one
``git add .`` away from being pushed. A world-readable file is accepted, because Docker mounts
its secrets with mode 0444 inside a container that only the service runs in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tacoreservice.config import ConfigError
from tacoreservice.security.redaction import url_credentials

if TYPE_CHECKING:
    from tacoreservice.config import Settings

__all__ = ["MIN_SECRET_LENGTH", "read_secret", "secret_values"]

# Shorter values would mask ordinary words and numbers all over the logs ("admin", "1234"),
# and a credential that short protects nothing anyway.
MIN_SECRET_LENGTH = 6


def _git_work_tree(path: Path) -> Path | None:
    """The folder holding ``.git`` (a folder, or a file for worktrees and submodules) above
    ``path`` as given or after following symlinks; None when there is none."""
    candidates = [path.absolute()]
    try:
        candidates.append(path.resolve())
    except OSError:  # a symlink loop: the read below reports the problem
        pass
    for candidate in candidates:
        for folder in candidate.parents:
            if (folder / ".git").exists():
                return folder
    return None


def read_secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of ``name`` in the environment, else the stripped content of the file named
    by ``name_FILE``; None when neither is set.

    Raises :class:`ConfigError` (naming the variable, never the value) when ``name_FILE`` lies
    inside a git work tree, does not exist, cannot be read or is empty.
    """
    env = os.environ if environ is None else environ
    value = env.get(name)
    if value:
        return value
    file_var = f"{name}_FILE"
    where = env.get(file_var)
    if not where:
        return None
    path = Path(where).expanduser()
    repo = _git_work_tree(path)
    if repo is not None:
        raise ConfigError(
            f"{file_var} points at {path}, inside the git work tree {repo}: a secret there is "
            "one 'git add' away from being committed. Move the file outside the repository "
            f"(e.g. /run/secrets/) and set {file_var} to its new path, or set {name} itself"
        )
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"{file_var} points at {path}, which does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file_var} points at {path}, which is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(
            f"{file_var} points at {path}, which cannot be read: {exc.strerror}"
        ) from None
    if not secret:
        raise ConfigError(f"{file_var} points at {path}, which is empty")
    return secret


def secret_values(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every credential this process knows, longest first, for masking outputs.

    The values of ``settings.security.secret_env_vars`` (or their ``_FILE``); for a value that
    is a URL (``REDIS_URL``) only its password and key/token query values, so the host stays
    readable; plus the credentials inside ``cache.redis_url`` and ``llm.base_url`` whatever
    their source (config.yaml included). Values shorter than :data:`MIN_SECRET_LENGTH` are
    left out. Raises :class:`ConfigError` as :func:`read_secret` does.
    """
    found: set[str] = set()
    for var in settings.security.secret_env_vars:
        value = read_secret(var, environ)
        if not value:
            continue
        parts = url_credentials(value)
        if parts or "://" in value:
            found.update(parts)
        else:
            found.add(value)
    for url in (settings.cache.redis_url, settings.llm.base_url):
        if url:
            found.update(url_credentials(url))
    return sorted((v for v in found if len(v) >= MIN_SECRET_LENGTH), key=lambda v: (-len(v), v))
