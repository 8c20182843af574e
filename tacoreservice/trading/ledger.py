"""The paper account's ledger in SQLite: cash, positions, orders and fills.

Several worker processes share one database file, so everything that changes the account runs
inside :meth:`Ledger.transaction` (``BEGIN IMMEDIATE``: the write lock is taken before the
first read, so two workers never both decide on the same state). An order, its fill and the
cash and position update commit together or not at all: a worker killed mid-order leaves
either the whole order or nothing.

Accounting (what keeps ``cash + sum(quantity * avg_cost) == initial_cash - commissions +
realised_pnl`` exact): average cost is the quantity-weighted fill price *without*
commission; a buy pays ``quantity * price + commission``; a sell receives ``quantity * price -
commission`` and realises ``(price - avg_cost) * quantity``. Commissions are counted apart.
Positions are long only: the broker's pre-trade check refuses selling more than is held, and
:meth:`Ledger.record_fill` refuses it again as a last line of defence.

A connection belongs to the thread that opened it; :func:`ledger_for` keeps one per thread
and database path.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.protocol.messages import utc_timestamp
from tacoreservice.storage.database import BUSY_TIMEOUT_MS, open_database
from tacoreservice.storage.disk_reserve import DiskReserve
from tacoreservice.storage.file_watch import DatabaseWatch, storage_error

__all__ = ["Account", "Ledger", "OrderRecord", "Position", "ledger_for"]

ACCOUNT_ID = "paper"
# A position whose quantity falls below this after a sell is flat: float dust from fractional
# fills (0.1 + 0.2 - 0.3) must not linger as a position.
_FLAT = 1e-9

_ORDER_COLUMNS = (
    "order_id, request_id, client_order_id, fingerprint, symbol, action, order_type, quantity, "
    "filled_quantity, price, stop_price, time_in_force, status, stop_triggered, risk, reasons, "
    "as_of, created_at, updated_at, seq"
)
_FILL_COLUMNS = (
    "fill_id, order_id, symbol, action, quantity, price, reference_price, commission, slippage, "
    "realised_pnl, as_of, price_bar, created_at"
)


@dataclass(frozen=True)
class Account:
    initial_cash: float
    cash: float
    clock: str  # YYYY-MM-DD: the paper market's "today"
    peak_equity: float
    realised_pnl: float
    commissions: float
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class Position:
    symbol: str
    quantity: float
    avg_cost: float
    realised_pnl: float


@dataclass
class OrderRecord:
    order_id: str
    request_id: str | None
    client_order_id: str | None
    fingerprint: str
    symbol: str
    action: str
    order_type: str
    quantity: float
    filled_quantity: float
    price: float | None
    stop_price: float | None
    time_in_force: str
    status: str
    stop_triggered: bool
    risk: dict[str, Any] | None
    reasons: list[str]
    as_of: str
    created_at: str
    updated_at: str
    seq: int = 0


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _order(row: tuple[Any, ...]) -> OrderRecord:
    return OrderRecord(
        order_id=row[0],
        request_id=row[1],
        client_order_id=row[2],
        fingerprint=row[3],
        symbol=row[4],
        action=row[5],
        order_type=row[6],
        quantity=row[7],
        filled_quantity=row[8],
        price=row[9],
        stop_price=row[10],
        time_in_force=row[11],
        status=row[12],
        stop_triggered=bool(row[13]),
        risk=_loads(row[14]),
        reasons=_loads(row[15]) or [],
        as_of=row[16],
        created_at=row[17],
        updated_at=row[18],
        seq=row[19],
    )


def _fill(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(_FILL_COLUMNS.split(", "), row, strict=True))


class Ledger:
    """One connection to the ledger tables, used from one thread."""

    def __init__(self, path: str | Path, reserve: DiskReserve | None = None):
        self.conn: sqlite3.Connection = open_database(path)
        # Explicit BEGIN/COMMIT below; the sqlite3 module must not open transactions itself.
        self.conn.isolation_level = None
        self.watch = DatabaseWatch(path)  # a file deleted or replaced under us: refuse writes
        # Room on the disk for orders when something else fills it.
        self.reserve = reserve if reserve is not None else DiskReserve(path, 0)

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[Ledger]:
        """A write transaction: the lock is held from the first read to the commit.

        Waiting longer than the busy timeout for the lock answers OVERLOADED, a disk or file
        that cannot take the write STORAGE_UNAVAILABLE: either way nothing was written, and a
        retry with the same request_id is safe.
        """
        self.watch.check("the paper ledger")
        self.reserve.before_write()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise storage_error(exc, "the paper ledger") from exc
            raise ServiceError(
                ErrorCode.OVERLOADED,
                f"the paper ledger stayed locked by other orders for {BUSY_TIMEOUT_MS} ms; "
                "nothing was written, retry with the same request_id",
            ) from exc
        try:
            yield self
            self._commit()
        except BaseException as exc:
            if self.conn.in_transaction:
                with suppress(sqlite3.Error):  # a failed disk may fail the rollback too
                    self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise storage_error(exc, "the paper ledger") from exc
            raise

    def _commit(self) -> None:
        self.conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[Ledger]:
        """A read transaction: several reads see one committed state."""
        self.conn.execute("BEGIN")
        try:
            yield self
        finally:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")

    # ------------------------------------------------------------------ account

    def account(self) -> Account | None:
        row = self.conn.execute(
            "SELECT initial_cash, cash, clock, peak_equity, realised_pnl, commissions,"
            " created_at, updated_at FROM paper_account WHERE account_id = ?",
            (ACCOUNT_ID,),
        ).fetchone()
        return None if row is None else Account(*row)

    def open_account(self, initial_cash: float, clock: str) -> Account:
        """The account, created with ``initial_cash`` at ``clock`` if there is none yet."""
        now = utc_timestamp()
        self.conn.execute(
            "INSERT OR IGNORE INTO paper_account (account_id, initial_cash, cash, clock,"
            " peak_equity, realised_pnl, commissions, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?)",
            (ACCOUNT_ID, initial_cash, initial_cash, clock, initial_cash, now, now),
        )
        account = self.account()
        assert account is not None
        return account

    def reset(self, initial_cash: float, clock: str) -> Account:
        """Wipe orders, fills and positions and start the account again."""
        for table in ("fills", "orders", "positions", "paper_account"):
            self.conn.execute(f"DELETE FROM {table}")  # table names are constants above
        return self.open_account(initial_cash, clock)

    def set_clock(self, clock: str) -> None:
        self.conn.execute(
            "UPDATE paper_account SET clock = ?, updated_at = ? WHERE account_id = ?",
            (clock, utc_timestamp(), ACCOUNT_ID),
        )

    def note_equity(self, equity: float) -> None:
        """Raise the equity peak (for the drawdown limit) when ``equity`` is above it."""
        self.conn.execute(
            "UPDATE paper_account SET peak_equity = MAX(peak_equity, ?) WHERE account_id = ?",
            (equity, ACCOUNT_ID),
        )

    # ------------------------------------------------------------------ positions

    def positions(self) -> dict[str, Position]:
        """Open positions (quantity > 0), by symbol."""
        rows = self.conn.execute(
            "SELECT symbol, quantity, avg_cost, realised_pnl FROM positions"
            " WHERE quantity > 0 ORDER BY symbol"
        ).fetchall()
        return {r[0]: Position(*r) for r in rows}

    def position(self, symbol: str) -> Position | None:
        row = self.conn.execute(
            "SELECT symbol, quantity, avg_cost, realised_pnl FROM positions WHERE symbol = ?",
            (symbol,),
        ).fetchone()
        return None if row is None else Position(*row)

    # ------------------------------------------------------------------ orders

    def find_order(
        self,
        *,
        order_id: str | None = None,
        request_id: str | None = None,
        client_order_id: str | None = None,
    ) -> OrderRecord | None:
        """The order with any of the given keys (the first of them that matches)."""
        for column, value in (
            ("order_id", order_id),
            ("request_id", request_id),
            ("client_order_id", client_order_id),
        ):
            if value is None:
                continue
            row = self.conn.execute(
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE {column} = ?", (value,)
            ).fetchone()
            if row is not None:
                return _order(row)
        return None

    def insert_order(self, order: OrderRecord) -> OrderRecord:
        cur = self.conn.execute(
            "INSERT INTO orders (order_id, request_id, client_order_id, fingerprint, symbol,"
            " action, order_type, quantity, filled_quantity, price, stop_price, time_in_force,"
            " status, stop_triggered, risk, reasons, as_of, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order.order_id,
                order.request_id,
                order.client_order_id,
                order.fingerprint,
                order.symbol,
                order.action,
                order.order_type,
                order.quantity,
                order.filled_quantity,
                order.price,
                order.stop_price,
                order.time_in_force,
                order.status,
                int(order.stop_triggered),
                _dumps(order.risk),
                _dumps(order.reasons),
                order.as_of,
                order.created_at,
                order.updated_at,
            ),
        )
        order.seq = int(cur.lastrowid or 0)
        return order

    def update_order(
        self,
        order_id: str,
        *,
        status: str | None = None,
        stop_triggered: bool | None = None,
        reasons: list[str] | None = None,
        risk: dict[str, Any] | None = None,
    ) -> None:
        sets: list[str] = ["updated_at = ?"]
        args: list[Any] = [utc_timestamp()]
        if status is not None:
            sets.append("status = ?")
            args.append(status)
        if stop_triggered is not None:
            sets.append("stop_triggered = ?")
            args.append(int(stop_triggered))
        if reasons is not None:
            sets.append("reasons = ?")
            args.append(_dumps(reasons))
        if risk is not None:
            sets.append("risk = ?")
            args.append(_dumps(risk))
        self.conn.execute(
            f"UPDATE orders SET {', '.join(sets)} WHERE order_id = ?", (*args, order_id)
        )

    def open_orders(self) -> list[OrderRecord]:
        rows = self.conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE status = 'open' ORDER BY seq"
        ).fetchall()
        return [_order(r) for r in rows]

    def list_orders(
        self, status: str | None, symbol: str | None, limit: int, offset: int
    ) -> tuple[list[OrderRecord], int]:
        """A page of orders, newest first, and how many match in all."""
        clauses, args = [], []
        if status is not None:
            clauses.append("status = ?")
            args.append(status)
        if symbol is not None:
            clauses.append("symbol = ?")
            args.append(symbol)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        total = int(self.conn.execute(f"SELECT COUNT(*) FROM orders {where}", args).fetchone()[0])
        rows = self.conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ).fetchall()
        return [_order(r) for r in rows], total

    def count_orders(self, status: str) -> int:
        row = self.conn.execute("SELECT COUNT(*) FROM orders WHERE status = ?", (status,))
        return int(row.fetchone()[0])

    # ------------------------------------------------------------------ fills

    def fills_for(self, order_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {oid: [] for oid in order_ids}
        if not order_ids:
            return out
        marks = ", ".join("?" for _ in order_ids)
        rows = self.conn.execute(
            f"SELECT {_FILL_COLUMNS} FROM fills WHERE order_id IN ({marks})"
            " ORDER BY created_at, fill_id",
            order_ids,
        ).fetchall()
        for row in rows:
            out[row[1]].append(_fill(row))
        return out

    def all_fills(self) -> list[dict[str, Any]]:
        """Every fill of the account, oldest first (by market day, then as written)."""
        rows = self.conn.execute(
            f"SELECT {_FILL_COLUMNS} FROM fills ORDER BY as_of, created_at, fill_id"
        ).fetchall()
        return [_fill(row) for row in rows]

    def record_fill(
        self,
        order: OrderRecord,
        *,
        price: float,
        reference_price: float,
        commission: float,
        as_of: str,
        price_bar: str,
    ) -> dict[str, Any]:
        """Fill the whole order: the fill row, the position, cash and the account totals.

        Call inside :meth:`transaction`. Raises ``ValueError`` for a sell of more than is held.
        """
        qty = order.quantity
        pos = self.position(order.symbol)
        held = pos.quantity if pos is not None else 0.0
        avg = pos.avg_cost if pos is not None else 0.0
        realised_total = pos.realised_pnl if pos is not None else 0.0
        if order.action == "buy":
            new_qty = held + qty
            new_avg = (held * avg + qty * price) / new_qty
            realised = 0.0
            cash_delta = -(qty * price) - commission
        else:
            if qty > held + _FLAT:
                raise ValueError(f"sell of {qty} {order.symbol} but only {held} held")
            new_qty = held - qty
            realised = (price - avg) * qty
            new_avg = avg
            if new_qty <= _FLAT:
                new_qty, new_avg = 0.0, 0.0
            cash_delta = qty * price - commission
        now = utc_timestamp()
        self.conn.execute(
            "INSERT INTO positions (symbol, quantity, avg_cost, realised_pnl, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(symbol) DO UPDATE SET quantity = excluded.quantity,"
            " avg_cost = excluded.avg_cost, realised_pnl = excluded.realised_pnl,"
            " updated_at = excluded.updated_at",
            (order.symbol, new_qty, new_avg, realised_total + realised, now),
        )
        self.conn.execute(
            "UPDATE paper_account SET cash = cash + ?, realised_pnl = realised_pnl + ?,"
            " commissions = commissions + ?, updated_at = ? WHERE account_id = ?",
            (cash_delta, realised, commission, now, ACCOUNT_ID),
        )
        fill = {
            "fill_id": "fill-" + uuid.uuid4().hex,
            "order_id": order.order_id,
            "symbol": order.symbol,
            "action": order.action,
            "quantity": qty,
            "price": price,
            "reference_price": reference_price,
            "commission": commission,
            "slippage": abs(price - reference_price) * qty,
            "realised_pnl": realised,
            "as_of": as_of,
            "price_bar": price_bar,
            "created_at": now,
        }
        self.conn.execute(
            f"INSERT INTO fills ({', '.join(fill)}) VALUES ({', '.join('?' for _ in fill)})",
            tuple(fill.values()),
        )
        self.conn.execute(
            "UPDATE orders SET status = 'filled', filled_quantity = quantity, updated_at = ?"
            " WHERE order_id = ?",
            (now, order.order_id),
        )
        order.status, order.filled_quantity, order.updated_at = "filled", qty, now
        return fill


_local = threading.local()


def ledger_for(path: str | Path, reserve: DiskReserve | None = None) -> Ledger:
    """This thread's ledger connection to the database at ``path`` (opened on first use),
    keeping ``reserve`` for it on the disk (none by default)."""
    ledgers: dict[str, Ledger] | None = getattr(_local, "ledgers", None)
    if ledgers is None:
        ledgers = _local.ledgers = {}
    key = str(Path(path).expanduser().resolve()) if str(path) != ":memory:" else ":memory:"
    ledger = ledgers.get(key)
    if ledger is None:
        ledger = ledgers[key] = Ledger(path, reserve)
    return ledger
