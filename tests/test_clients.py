"""What the sync and async clients share (client/base.py): one constructor, one set of rules."""

from __future__ import annotations

import pytest

from tacoreservice.client import AsyncTACoreClient, TACoreClient


@pytest.mark.parametrize("cls", [TACoreClient, AsyncTACoreClient])
def test_both_clients_refuse_an_empty_endpoint_list(cls: type) -> None:
    with pytest.raises(ValueError, match="at least one endpoint"):
        cls([])


@pytest.mark.parametrize("cls", [TACoreClient, AsyncTACoreClient])
def test_both_clients_read_endpoints_and_options_alike(
    cls: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TACORE_ENDPOINT", "tcp://10.0.0.5:5555, tcp://10.0.0.6:5555")
    client = cls(timeout_ms=1234, retries=7, client_name="scanner")
    assert client.endpoints == ["tcp://10.0.0.5:5555", "tcp://10.0.0.6:5555"]
    assert (client.timeout_ms, client.retries, client.client_name) == (1234, 7, "scanner")
    assert cls("tcp://127.0.0.1:1").endpoints == ["tcp://127.0.0.1:1"]
    # The frame is built the same way by both: the caller's name travels with the request.
    rid, body = client._encode("health.check", None, "rid-1", 500)
    assert rid == "rid-1"
    assert (
        body
        == b'{"request_id":"rid-1","method":"health.check","params":{},"timeout_ms":500,"client":"scanner"}'
    )
