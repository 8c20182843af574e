"""Write a Redis ``dump.rdb`` from ``DUMP`` payloads, so a backup's keys load into any Redis.

``tacore backup`` snapshots our keys with ``DUMP`` (see backup.py): each payload is already a
value in RDB serialisation, followed by the RDB version (2 bytes, little-endian) and a CRC-64
of the payload. An RDB file is the same encoding with a header and key names:

    "REDIS" + 4-digit version
    SELECTDB (0xFE) + db number
    per key: [EXPIRETIME_MS (0xFC) + 8-byte little-endian Unix ms] + type byte + key + value
    EOF (0xFF) + CRC-64 (little-endian) of everything before it

The checksum is Redis's CRC-64 (Jones polynomial, reflected, as in redis/src/crc64.c); the
payloads' own trailers, computed by the server, double as its test vectors. The file's version
is the payloads' (a server refuses a version newer than its own, and every payload of one
snapshot comes from one server), 9 when there are no keys. A key whose TTL has already run out
at writing time is left out; the others keep their absolute expiry.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

__all__ = ["crc64", "encode_length", "write_rdb"]

_POLY = 0x95AC9329AC4BC9B5  # 0xad93d23594c935a9 reflected
_TABLE: list[int] = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)

_SELECTDB = 0xFE
_EXPIRETIME_MS = 0xFC
_EOF = 0xFF
_EMPTY_VERSION = 9


def crc64(data: bytes, crc: int = 0) -> int:
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def encode_length(n: int) -> bytes:
    """RDB length encoding: 6, 14, 32 or 64 bits."""
    if n < 0x40:
        return bytes([n])
    if n < 0x4000:
        return bytes([0x40 | (n >> 8), n & 0xFF])
    if n <= 0xFFFFFFFF:
        return b"\x80" + struct.pack(">I", n)
    return b"\x81" + struct.pack(">Q", n)


def _split(payload: bytes) -> tuple[bytes, int]:
    """(type byte + value, RDB version) of a DUMP payload, after checking its CRC."""
    if len(payload) < 11:
        raise ValueError("a DUMP payload has at least a type byte and a 10-byte trailer")
    body, trailer = payload[:-10], payload[-10:]
    (version,) = struct.unpack("<H", trailer[:2])
    (expected,) = struct.unpack("<Q", trailer[2:])
    if crc64(body + trailer[:2]) != expected:
        raise ValueError("DUMP payload fails its CRC-64")
    return body, version


def write_rdb(
    path: str | Path, keys: Iterable[tuple[bytes, bytes, int]], now_ms: int, db: int = 0
) -> int:
    """Write ``(key, dump payload, pttl_ms)`` rows (pttl -1: no expiry) as an RDB file;
    return how many keys it holds."""
    records: list[bytes] = []
    version = 0
    for key, payload, pttl_ms in keys:
        body, v = _split(payload)
        version = max(version, v)
        prefix = b""
        if pttl_ms >= 0:
            if pttl_ms == 0:
                continue  # expired while the snapshot ran
            prefix = bytes([_EXPIRETIME_MS]) + struct.pack("<Q", now_ms + pttl_ms)
        records.append(prefix + body[:1] + encode_length(len(key)) + key + body[1:])
    out = b"REDIS%04d" % (version or _EMPTY_VERSION)
    out += bytes([_SELECTDB]) + encode_length(db) + b"".join(records) + bytes([_EOF])
    Path(path).write_bytes(out + struct.pack("<Q", crc64(out)))
    return len(records)
