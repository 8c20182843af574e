"""Workers on other hosts: the broker and its workers in two network namespaces.

The broker listens on a non-loopback address (so CURVE must be on), two workers connect to
it from another namespace over a veth pair, and a client in the broker's namespace
(tests/support/netns_probe.py) checks what the broker sees. Pulling the cable (the worker
end of the veth down) must get both workers evicted within the heartbeat window; a request
sent meanwhile must be answered, not lost; putting the cable back must bring the same
worker processes back.

Needs root and iproute2 (`ip`). Where the kernel refuses a namespace or a veth pair the
tests skip with ip's own message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest

from tacoreservice.security.keys import generate_keys
from tests.support.netns import NetnsUnavailable, RemoteWorkerService, VethLink, net_namespace_of
from tests.support.service import pid_alive

# Generous bounds: the point is "evicted, then back", not a timing race on a busy 2-core box.
EVICTION_BOUND_S = 10.0
# The worker's reconnect back-off doubles per lost session up to reconnect_max_ms (8 s).
RETURN_BOUND_S = 30.0


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteWorkerService]:
    try:
        link = VethLink.create(str(os.getpid()), f"10.231.{1 + os.getpid() % 253}")
    except NetnsUnavailable as exc:
        pytest.skip(f"network namespaces unavailable: {exc}")
    service = RemoteWorkerService(link, tmp_path_factory.mktemp("netns"))
    try:
        service.start()
        yield service
    finally:
        service.stop()
        link.remove()


def _echo_pids(remote: RemoteWorkerService, count: int) -> set[int]:
    pids = set()
    for i in range(count):
        reply = remote.health_probe.request("test.echo", {"payload": i}, timeout_ms=5000)
        assert reply["status"] == "success", reply
        assert reply["data"]["payload"] == i
        pids.add(reply["data"]["pid"])
    return pids


def test_workers_in_another_namespace_register_over_curve_and_serve(
    remote: RemoteWorkerService,
) -> None:
    link = remote.link
    assert remote.broker is not None
    # Three network stacks: the test's, the broker's and the workers'.
    broker_net = net_namespace_of(remote.broker.pid)
    worker_nets = {net_namespace_of(pid) for pid in remote.worker_pids()}
    assert len(worker_nets) == 1 and broker_net not in worker_nets
    assert net_namespace_of(os.getpid()) not in {broker_net, *worker_nets}
    assert not link.broker_addr.startswith("127.")

    health = remote.wait_workers(remote.worker_pids(), timeout=10)
    assert health["workers"]["alive"] == 2
    assert {w["worker_id"] for w in health["worker_list"]} == {"remote-0", "remote-1"}
    assert all(w["host"] for w in health["worker_list"])
    # Idle workers are taken least recently used first, so four calls reach both.
    assert _echo_pids(remote, 4) == remote.worker_pids()

    # CURVE on the real network path: a key the broker does not know gets no answer at all.
    stranger_keys = remote.tmp / "stranger-keys"
    generate_keys(stranger_keys, ["console"])
    stranger = remote.probe(stranger_keys / "private" / "console.key_secret")
    refused = stranger.request("test.echo", {"payload": "x"}, timeout_ms=800)
    assert refused["status"] == "timeout", refused
    security = remote.health_probe.health()
    assert security is not None
    assert security["security"]["refusals"].get("frontend:unknown_key", 0) >= 1, security


def test_cutting_the_link_evicts_the_workers_and_restoring_it_brings_them_back(
    remote: RemoteWorkerService,
    record_property: Callable[[str, object], None],
) -> None:
    link, probe = remote.link, remote.health_probe
    pids = remote.worker_pids()
    before = remote.wait_workers(pids, timeout=10)
    waiting = remote.probe()

    # Cut: only the worker end goes down, as when a worker host drops off the network.
    cut_at = time.monotonic()
    link.set_worker_side(up=False)
    gone = remote.wait_workers(set(), timeout=EVICTION_BOUND_S)
    eviction_s = time.monotonic() - cut_at
    assert gone["workers"]["alive"] == 0 and gone["status"] == "degraded"
    assert gone["worker_events"]["evicted"] - before["worker_events"]["evicted"] == 2
    assert all(pid_alive(pid) for pid in pids)  # evicted by the broker, not dead

    # While nobody serves: a request whose timeout_ms runs out in the queue is answered
    # DEADLINE_EXCEEDED by the broker; one with a longer timeout_ms waits in the queue.
    expired = waiting.request("test.echo", {"payload": "late"}, timeout_ms=5000, deadline_ms=300)
    assert expired["status"] == "error", expired
    assert expired["error"]["code"] == "DEADLINE_EXCEEDED"
    assert "not started" in expired["error"]["message"]
    queued_deadline_ms = int(RETURN_BOUND_S * 1000)
    waiting.send(
        "test.echo",
        {"payload": "queued"},
        timeout_ms=queued_deadline_ms + 10_000,
        deadline_ms=queued_deadline_ms,
    )
    deadline = time.monotonic() + 5
    while (queued := probe.health()) is None or queued["queue_depth"] != 1:
        assert time.monotonic() < deadline, f"request never queued: {queued}"
        time.sleep(0.02)
    assert queued["workers"]["alive"] == 0

    # Restore: same address (the kernel keeps IPv4 addresses on a downed link; put it back
    # if not), the connected route returns with the link.
    restored_at = time.monotonic()
    link.set_worker_side(up=True)
    readded = link.ensure_worker_address()
    back = remote.wait_workers(pids, timeout=RETURN_BOUND_S)
    return_s = time.monotonic() - restored_at
    assert back["workers"]["alive"] == 2
    assert back["worker_events"]["registered"] - gone["worker_events"]["registered"] >= 2
    assert remote.worker_pids() == pids  # the same processes, still running

    answer = waiting.receive(timeout=15)
    assert answer["status"] == "success", answer
    assert answer["data"] == {"payload": "queued", "pid": answer["data"]["pid"]}
    assert answer["data"]["pid"] in pids
    assert _echo_pids(remote, 4) == pids

    record_property("eviction_s", round(eviction_s, 3))
    record_property("return_s", round(return_s, 3))
    print(
        f"\nheartbeat window {remote.heartbeat_window_s:.1f} s: evicted {eviction_s:.3f} s "
        f"after the cut, back {return_s:.3f} s after the restore"
        f"{' (address re-added)' if readded else ''}"
    )


class StaleRoutingId(AssertionError):
    """The broker ignores a worker because a dead connection still holds its identity."""


def test_a_replacement_host_reusing_a_worker_id_is_taken_after_the_old_host_vanished(
    remote: RemoteWorkerService,
) -> None:
    """The old worker host drops off the network for good (cable out, then it dies: its
    FIN never arrives, as after a power cut), and a new host starts a worker under the old
    host's --worker-id next to one under a fresh id. Both must be taken.

    Runs last in this module: it leaves the original worker namespace without workers.
    """
    link, probe = remote.link, remote.health_probe
    remote.wait_workers(remote.worker_pids(), timeout=10)
    link.set_worker_side(up=False)
    remote.wait_workers(set(), timeout=EVICTION_BOUND_S)
    for proc in remote.worker_procs:
        proc.kill()
        proc.wait()
    tag = f"{os.getpid()}n"
    host = VethLink.create(tag, f"10.232.{1 + os.getpid() % 253}", broker_ns=link.broker_ns)
    try:
        reused = remote.spawn_worker(host.worker_ns, "remote-0")
        fresh = remote.spawn_worker(host.worker_ns, "fresh-0")
        # The control: the new host reaches the broker at all (start-up is slow under load).
        deadline = time.monotonic() + 60
        while True:
            health = probe.health()
            registered = {w["pid"] for w in (health or {}).get("worker_list", [])}
            if fresh.pid in registered:
                break
            assert time.monotonic() < deadline, f"fresh worker never registered: {health}"
            time.sleep(0.05)
        # Both started together; the reused id gets a generous 15 s more.
        deadline = time.monotonic() + 15
        while reused.pid not in registered:
            if time.monotonic() > deadline:
                raise StaleRoutingId(
                    f"worker remote-0 (pid {reused.pid}) on the new host never registered; "
                    f"registered pids: {sorted(registered)}"
                )
            time.sleep(0.1)
            health = probe.health()
            registered = {w["pid"] for w in (health or {}).get("worker_list", [])}
    finally:
        remote.stop_workers()
        host.remove()
