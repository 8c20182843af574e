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

from collections.abc import Mapping
from typing import TYPE_CHECKING

# read_secret lives in config (a credential is a setting read from the environment or a
# file); it is re-exported here beside secret_values, its other half.
from tacoreservice.config import read_secret
from tacoreservice.security.redaction import url_credentials

if TYPE_CHECKING:
    from tacoreservice.config import Settings

__all__ = ["MIN_SECRET_LENGTH", "read_secret", "secret_values"]

# Shorter values would mask ordinary words and numbers all over the logs ("admin", "1234"),
# and a credential that short protects nothing anyway.
MIN_SECRET_LENGTH = 6


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
