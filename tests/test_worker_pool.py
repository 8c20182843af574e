"""The worker pool's dispatch order: idle workers least recently used first, then workers
with room under their credit whose held requests the broker accepts to wait behind; and the
broker's rule for that (what is held must usually take under prefetch_below_ms in all)."""

from __future__ import annotations

from tacoreservice.broker.worker_pool import WorkerPool, WorkerRecord

QUICK = {"get.market_data", "health.check"}


def _quick(methods: list[str]) -> bool:
    return all(m in QUICK for m in methods)


def _pool(credit: int, *names: str) -> WorkerPool:
    pool = WorkerPool(expiry_s=10.0, credit=credit)
    for name in names:
        pool.add(WorkerRecord(identity=name.encode(), worker_id=name), now=0.0)
    return pool


def _give(pool: WorkerPool, record: WorkerRecord, key: bytes, method: str) -> None:
    pool.assign(record, key, method, now=0.0)


def test_idle_workers_go_first_least_recently_used_first() -> None:
    pool = _pool(4, "a", "b")
    first = pool.take_idle()
    assert first is not None and first.worker_id == "a"
    _give(pool, first, b"k1", "get.market_data")
    second = pool.take_idle()
    assert second is not None and second.worker_id == "b"
    assert pool.take_idle() is None


def test_a_worker_takes_up_to_its_credit_of_quick_requests() -> None:
    pool = _pool(4, "a")
    record = pool.take_idle()
    assert record is not None
    _give(pool, record, b"k1", "get.market_data")
    for i in range(2, 5):
        taken = pool.take_with_room(_quick)
        assert taken is record
        _give(pool, record, f"k{i}".encode(), "health.check")
    assert pool.take_with_room(_quick) is None  # four held: the credit
    assert pool.release(record, b"k1", now=1.0)
    assert pool.take_with_room(_quick) is record  # room again


def test_nothing_waits_behind_a_slow_request_anywhere_in_a_worker() -> None:
    # The running request is quick but the one waiting behind it is not: a third would wait
    # behind the slow one, so the worker takes no more.
    pool = _pool(4, "a")
    record = pool.take_idle()
    assert record is not None
    _give(pool, record, b"k1", "get.market_data")
    assert pool.take_with_room(_quick) is record
    _give(pool, record, b"k2", "analyze.stock")
    assert pool.take_with_room(_quick) is None
    pool.release(record, b"k2", now=1.0)
    assert pool.take_with_room(_quick) is record


def test_credit_one_never_queues_in_a_worker() -> None:
    pool = _pool(1, "a")
    record = pool.take_idle()
    assert record is not None
    _give(pool, record, b"k1", "get.market_data")
    assert pool.take_with_room(_quick) is None


def test_room_goes_round_the_workers() -> None:
    # Among workers with room, the one that got its last request longest ago goes first, so
    # what waits in workers spreads over them.
    pool = _pool(3, "a", "b")
    for key in (b"k1", b"k2"):
        record = pool.take_idle()
        assert record is not None
        _give(pool, record, key, "get.market_data")
    order = []
    for key in (b"k3", b"k4"):
        record = pool.take_with_room(_quick)
        assert record is not None
        order.append(record.worker_id)
        _give(pool, record, key, "get.market_data")
    assert order == ["a", "b"]


def test_the_broker_lets_a_request_wait_only_behind_a_small_total() -> None:
    # The typical times the broker learnt from replies: 3 ms and 30 ms, a 20 ms budget.
    from tacoreservice.broker.broker import Broker
    from tacoreservice.config import Settings

    broker = Broker.__new__(Broker)  # the rule alone: no sockets, no files
    broker.cfg = Settings().broker
    assert broker.cfg.prefetch_below_ms == 20
    broker._cost = {"get.market_data": 3.0, "analyze.stock": 30.0}
    assert broker._may_wait_behind(["get.market_data"])
    assert broker._may_wait_behind(["get.market_data"] * 6)  # 18 ms in all
    assert not broker._may_wait_behind(["get.market_data"] * 7)  # 21 ms: over the budget
    assert not broker._may_wait_behind(["analyze.stock"])
    assert not broker._may_wait_behind(["get.market_data", "scan.market"])  # never seen: unknown
