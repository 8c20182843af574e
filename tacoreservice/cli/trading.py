"""``tacore portfolio`` and ``tacore orders``: the paper account as a trader reads it."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from tacoreservice.cli.calls import print_json
from tacoreservice.cli.common import (
    EndpointOpt,
    ExitCode,
    app,
    call_service,
    console,
    fail,
)
from tacoreservice.cli.tables import money, new_table, number, pct, price, show

AsJsonOpt = Annotated[bool, typer.Option("--json", help="Print the service's answer as JSON.")]


def short_id(full: str | None, prefix: str) -> str:
    """``ord-bbee232f7b16...`` -> ``bbee232f``: enough to tell orders apart, as git does."""
    text = str(full or "")
    return text[len(prefix) : len(prefix) + 8] if text.startswith(prefix) else text[:8]


@app.command()
def portfolio(endpoint: EndpointOpt = None, as_json: AsJsonOpt = False) -> None:
    """Cash, equity, P&L, drawdown and the positions of the paper account."""
    data = call_service(endpoint, "portfolio.get")
    if as_json:
        print_json(data)
        return
    summary = new_table(f"Paper account at the close of {data.get('valued_at')}", show_header=False)
    summary.add_column("field", no_wrap=True, style="bold")
    summary.add_column("value", justify="right", no_wrap=True)
    summary.add_column("field ", no_wrap=True, style="bold")
    summary.add_column("value ", justify="right", no_wrap=True)
    summary.add_row("equity", money(data.get("equity")), "cash", money(data.get("cash")))
    summary.add_row(
        "realised P&L",
        money(data.get("realised_pnl")),
        "unrealised P&L",
        money(data.get("unrealised_pnl")),
    )
    summary.add_row(
        "total P&L", money(data.get("total_pnl")), "commissions", money(data.get("commissions"))
    )
    summary.add_row(
        "drawdown",
        pct(data.get("drawdown")),
        "open orders",
        str(data.get("open_orders", 0)),
    )
    show(summary, console)
    positions = data.get("positions") or {}
    if not positions:
        console.print("no positions")
        return
    table = new_table(f"{len(positions)} positions")
    table.add_column("symbol", no_wrap=True)
    for col in ("quantity", "avg cost", "price", "value", "unrealised", "weight"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("bar", no_wrap=True)
    for sym, p in sorted(positions.items(), key=lambda kv: -(kv[1].get("market_value") or 0)):
        table.add_row(
            escape(sym),
            number(p.get("quantity"), 0 if float(p.get("quantity") or 0).is_integer() else 4),
            price(p.get("avg_cost")),
            price(p.get("price")),
            money(p.get("market_value")),
            money(p.get("unrealised_pnl")),
            pct(p.get("weight")),
            str(p.get("price_bar")),
        )
    show(table, console, drop=("bar", "avg cost", "weight"))


def _fill_text(order: dict[str, Any]) -> str:
    fills = order.get("fills") or []
    if not fills:
        return "-"
    qty = sum(float(f.get("quantity") or 0) for f in fills)
    avg = sum(float(f.get("quantity") or 0) * float(f.get("price") or 0) for f in fills) / qty
    return f"{qty:g} @ {price(avg)}"


orders_app = typer.Typer(
    help="Orders of the paper account, newest first.", invoke_without_command=True
)
app.add_typer(orders_app, name="orders")


@orders_app.callback(invoke_without_command=True)
def orders(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="open, filled, cancelled, rejected or expired.")
    ] = None,
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Rows to show.")] = 20,
    endpoint: EndpointOpt = None,
    as_json: AsJsonOpt = False,
) -> None:
    """List orders (id, symbol, side, quantity, fill, status); `tacore orders show ID`."""
    if ctx.invoked_subcommand is not None:
        return
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if symbol:
        params["symbol"] = symbol
    data = call_service(endpoint, "order.list", params)
    if as_json:
        print_json(data)
        return
    items = data.get("orders") or []
    table = new_table(f"orders: {len(items)} of {data.get('total', len(items))}, newest first")
    table.add_column("id", no_wrap=True)
    table.add_column("day", no_wrap=True)
    table.add_column("symbol", no_wrap=True)
    table.add_column("side", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("qty", justify="right", no_wrap=True)
    table.add_column("limit", justify="right", no_wrap=True)
    table.add_column("fill", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("why")
    for o in items:
        table.add_row(
            short_id(o.get("order_id"), "ord-"),
            str(o.get("as_of")),
            escape(str(o.get("symbol"))),
            str(o.get("action")),
            str(o.get("order_type")),
            f"{float(o.get('quantity') or 0):g}",
            price(o.get("price")) if o.get("price") is not None else "-",
            _fill_text(o),
            str(o.get("status")),
            escape("; ".join(o.get("reasons") or [])),
        )
    show(table, console, drop=("why", "type", "limit", "day"))
    if not items:
        console.print("no orders" + (" with these filters" if status or symbol else ""))


def _resolve(endpoint: str | None, ref: str, method: str, key: str, prefix: str) -> str:
    """A full id from an id or its first characters (as the tables show them)."""
    if ref.startswith(prefix) and len(ref) > len(prefix) + 8:
        return ref
    data = call_service(endpoint, method, {"limit": 500})
    items = data.get(key) or []
    id_field = "order_id" if key == "orders" else "job_id"
    found = [
        i[id_field] for i in items if str(i[id_field]).startswith(prefix + ref.removeprefix(prefix))
    ]
    if len(found) == 1:
        return str(found[0])
    if not found:
        fail(
            ExitCode.FAILED, f"NOT_FOUND: no {key[:-1]} id starts with {ref!r} (of the newest 500)"
        )
    fail(ExitCode.USAGE, f"{ref!r} matches {len(found)} {key}; give more of the id")


@orders_app.command("show")
def orders_show(
    order_id: Annotated[str, typer.Argument(help="The order id, or its first characters.")],
    endpoint: EndpointOpt = None,
    as_json: AsJsonOpt = False,
) -> None:
    """One order with its fills and its pre-trade check rows."""
    full = _resolve(endpoint, order_id, "order.list", "orders", "ord-")
    order = call_service(endpoint, "order.status", {"order_id": full})
    if as_json:
        print_json(order)
        return
    head = new_table(f"order {order.get('order_id')}", show_header=False)
    head.add_column("field", no_wrap=True, style="bold")
    head.add_column("value")
    for label, value in (
        ("symbol", order.get("symbol")),
        (
            "side",
            f"{order.get('action')} {float(order.get('quantity') or 0):g} "
            f"({order.get('order_type')}, {order.get('time_in_force')})",
        ),  # fmt: skip
        ("limit / stop", f"{price(order.get('price'))} / {price(order.get('stop_price'))}"),
        ("status", order.get("status")),
        ("day", order.get("as_of")),
        ("reasons", "; ".join(order.get("reasons") or []) or "-"),
    ):
        head.add_row(label, escape(str(value)))
    show(head, console)
    fills = order.get("fills") or []
    if fills:
        ft = new_table("fills")
        for col in ("day", "quantity", "price", "commission", "slippage", "realised"):
            ft.add_column(col, justify="left" if col == "day" else "right", no_wrap=True)
        for f in fills:
            ft.add_row(
                str(f.get("as_of")),
                f"{float(f.get('quantity') or 0):g}",
                price(f.get("price")),
                money(f.get("commission")),
                money(f.get("slippage")),
                money(f.get("realised_pnl")),
            )
        show(ft, console, drop=("slippage",))
    risk = order.get("risk") if isinstance(order.get("risk"), dict) else {}
    checks = risk.get("checks") or []
    if checks:
        rt = new_table("pre-trade checks")
        rt.add_column("check", no_wrap=True)
        rt.add_column("passed", no_wrap=True)
        rt.add_column("limit", justify="right", no_wrap=True)
        rt.add_column("after", justify="right", no_wrap=True)
        rt.add_column("reason")
        for row in checks:
            rt.add_row(
                str(row.get("name")),
                "yes" if row.get("passed") else "NO",
                _value(row.get("limit")),
                _value(row.get("value_after")),
                escape(str(row.get("reason") or "")),
            )
        show(rt, console, drop=("reason", "limit"))


def _value(v: Any) -> str:
    if v is None:
        return "off"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, dict):
        return escape(
            "; ".join(
                f"{k} {', '.join(map(str, x)) if isinstance(x, list) else x}"
                for k, x in v.items()
                if x
            )
            or "-"
        )
    if isinstance(v, int | float):
        return f"{v:.4g}" if abs(v) < 1 else number(v, 2 if abs(v) < 1000 else 0)
    return escape(str(v))
