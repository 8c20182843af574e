"""Taking credentials out of text and JSON bodies before they are stored or shown.

Three tools, for three kinds of output:

- :func:`mask_values`: every occurrence of known secret values (see
  :func:`tacoreservice.security.secrets.secret_values`) becomes ``***``. Used on log records and
  on request-log bodies.
- :class:`BodyRedactor`: request-log bodies; the value of any key named like a credential
  (``security.redact_fields``) becomes ``"[REDACTED]"`` at any depth, then known secret values
  are masked.
- :func:`redact` and :func:`public_url`: error messages and URLs from an HTTP client, where the
  secret may be one we do not know in advance (a bearer token or ``?api_key=`` in a URL).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

import orjson

# public_url is defined beside the settings whose URLs it cleans (config imports nothing of
# this package); it belongs to this module's public surface all the same.
from tacoreservice.config import public_url

__all__ = [
    "MASK",
    "REDACTED",
    "BodyRedactor",
    "mask_values",
    "public_url",
    "redact",
    "redact_fields",
    "url_credentials",
]

MASK = "***"
REDACTED = "[REDACTED]"


def mask_values(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``.

    Pass the secrets longest first (as ``secret_values`` returns them), so a secret that
    contains another is masked whole rather than leaving its remainder behind.
    """
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


# Query parameters whose values are credentials (``?api_key=``, ``?token=``, ``?sig=``...);
# other parameters (``api-version=2024-02-01``) stay readable.
_SECRET_QUERY_NAME = re.compile(r"(?i)key|token|secret|pass|auth|sig|credential")


def url_credentials(url: str) -> set[str]:
    """The secret parts of a URL: the password of its user info and the values of its
    key/token query parameters, as written and percent-decoded. Empty for a URL without any,
    and for text that is not a URL."""
    try:
        u = urlparse(url)
        password = u.password
    except ValueError:
        return set()
    if not (u.scheme and u.netloc):
        return set()
    found: set[str] = set()
    if password:
        found.update((password, unquote(password)))
    for part in u.query.split("&"):
        name, _, raw = part.partition("=")
        if raw and _SECRET_QUERY_NAME.search(unquote(name)):
            # As printed (encoded) and as a server or client library sees it (decoded).
            found.update((raw, unquote(raw.replace("+", " "))))
    return {v for v in found if v}


_USERINFO = re.compile(r"(?<=//)[^/@\s]+@")
_SECRET_PARAM = re.compile(
    r"(?i)\b((?:api[-_]?key|apikey|key|token|access[-_]?token|secret|password|auth|sig|"
    r"signature)=)[^&\s#'\"]+"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with credentials masked: each of ``secrets`` (for a URL: its password, query
    string and query values), any URL user info, key/token query parameters and bearer
    tokens."""
    words: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        try:
            u = urlparse(secret)
            is_url = bool(u.scheme and u.netloc)
            password = u.password
        except ValueError:
            is_url, password = False, None
        if not is_url:
            words.add(secret)
            continue
        parts = [password, u.query] + [v for _k, v in parse_qsl(u.query)]
        words.update(p for p in parts if p and len(p) >= 4)
    text = mask_values(text, sorted(words, key=len, reverse=True))
    text = _USERINFO.sub("***@", text)
    text = _SECRET_PARAM.sub(r"\1***", text)
    return _BEARER.sub(r"\1***", text)


def redact_fields(value: Any, fields: frozenset[str]) -> tuple[Any, bool]:
    """A copy of ``value`` in which every dict entry whose lower-cased key is in ``fields`` has
    its value (whatever it holds) replaced by ``"[REDACTED]"``, at any depth; and whether
    anything was replaced. Unchanged parts are shared, not copied."""
    if isinstance(value, dict):
        changed = False
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and key.lower() in fields:
                out[key] = REDACTED
                changed = True
            else:
                out[key], sub = redact_fields(item, fields)
                changed = changed or sub
        return (out, True) if changed else (value, False)
    if isinstance(value, list):
        items = [redact_fields(item, fields) for item in value]
        if any(sub for _item, sub in items):
            return [item for item, _sub in items], True
        return value, False
    return value, False


def _mask_strings(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return mask_values(value, secrets)
    if isinstance(value, dict):
        return {
            mask_values(k, secrets) if isinstance(k, str) else k: _mask_strings(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask_strings(item, secrets) for item in value]
    return value


def _cover(names: Iterable[str], shortest: int = 3) -> tuple[str, ...]:
    """Substrings of at least ``shortest`` characters such that each name contains one:
    greedily, the one in the most names still uncovered (the longest of those, as rarer)."""
    left = set(names)
    picked: list[str] = []
    while left:
        counts: Counter[str] = Counter()
        for name in left:
            size = min(shortest, len(name))
            counts.update(
                {
                    name[i : i + k]
                    for k in range(size, len(name) + 1)
                    for i in range(len(name) - k + 1)
                }
            )
        best = max(counts, key=lambda part: (counts[part], len(part)))
        picked.append(best)
        left = {name for name in left if best not in name}
    return tuple(picked)


class BodyRedactor:
    """Redacts request-log bodies: credential-named fields, then known secret values.

    Meant for the request-log writer thread: parsing is skipped unless some field name occurs
    in the lower-cased text, so the common body costs a few substring searches.
    """

    def __init__(self, fields: Iterable[str] = (), secrets: Iterable[str] = ()) -> None:
        self.fields = frozenset(f.strip().lower() for f in fields if f and f.strip())
        # A JSON key is always quoted: '"token"' does not fire on "tokens_used" the way a bare
        # 'token' would, so most bodies skip the parse.
        self._needles = tuple(f'"{field}"' for field in self.fields)
        # A few substrings one of which every name contains: a body with none of them needs
        # no look for the quoted names, and most bodies have none.
        self._prefilter = _cover(self.fields)
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self.fields or self.secrets)

    def text(self, text: str) -> str:
        """A JSON (or any) body as text, redacted. Text that is not JSON keeps its shape and
        only has secret values masked: a field name cannot be told apart from prose there."""
        if self.fields:
            lowered = text.lower()
            if any(part in lowered for part in self._prefilter) and any(
                needle in lowered for needle in self._needles
            ):
                text = self._redact_json(text)
        return mask_values(text, self.secrets)

    def _redact_json(self, text: str) -> str:
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            try:  # integers beyond 64 bits, NaN: valid for Python's json, not for orjson
                parsed = json.loads(text)
            except (ValueError, RecursionError):
                return text
        try:
            redacted, changed = redact_fields(parsed, self.fields)
        except RecursionError:  # ~1000 levels deep: treated like a body that is not JSON
            return text
        if not changed:
            return text  # keep the body byte for byte
        return json.dumps(redacted, ensure_ascii=False, separators=(",", ":"))

    def value(self, value: Any) -> Any:
        """An already parsed body (dict or list), redacted; secret values are masked by the
        caller on the encoded text."""
        if self.fields:
            value, _changed = redact_fields(value, self.fields)
        return value

    def parsed(self, value: Any) -> Any:
        """An already parsed body, redacted and with known secret values masked in every
        string, for a caller that answers with the value itself (not encoded text)."""
        return _mask_strings(self.value(value), self.secrets) if self.secrets else self.value(value)
