"""What flows through the chain, as one readable line per event.

Every component reports each hop to an ``emit(event)`` callback; an event is a dict with a
``hop`` key (scan, scan_failed, received, analysed, risk, order, resumed, retry, final,
notified, error) and the fields of that hop. ``python -m examples.scanpulse`` prints these
lines; ``tacore demo pipeline`` renders the same events with colour.
"""

from __future__ import annotations

from typing import Any

__all__ = ["describe"]


def _price(value: Any) -> str:
    """A price as a quote board shows it (2 decimals, more below 1)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{x:.2f}" if abs(x) >= 1 else f"{x:.4f}" if abs(x) >= 0.01 else f"{x:.6f}"


def _num(x: Any, fmt: str = ".2f") -> str:
    return format(x, fmt) if isinstance(x, int | float) else str(x)


def describe(e: dict[str, Any]) -> str:
    hop = e.get("hop")
    sym = e.get("symbol", "")
    if hop == "scan":
        opps = ", ".join(f"{o['symbol']} {_num(o['score'])}" for o in e["opportunities"])
        return (
            f"scan {e['scan_id']} as of {e['as_of']}: {e['results']} results, "
            f"{len(e['opportunities'])} opportunities with score >= {e['min_score']}"
            + (f": {opps}" if opps else "")
        )
    if hop == "scan_failed":
        return f"scan {e['scan_id']} failed: {e['error']}"
    if hop == "received":
        return (
            f"  {sym}: opportunity {e['opportunity_id']} via {e['via']} (score {_num(e['score'])})"
        )
    if hop == "analysed":
        return (
            f"  {sym}: analysed -> {e['decision']} (rating {e['rating']}, "
            f"confidence {_num(e['confidence'])})"
        )
    if hop == "risk":
        verdict = "approved" if e["approved"] else "NOT approved: " + "; ".join(e["reasons"])
        return f"  {sym}: risk for buy {_num(e['quantity'], 'g')} -> {verdict}"
    if hop == "order":
        dup = ", duplicate: the existing order" if e.get("duplicate") else ""
        if e["status"] == "filled":
            return (
                f"  {sym}: order {e['order_id']} filled {_num(e['quantity'], 'g')} @ "
                f"{_price(e['price'])}{dup}"
            )
        reasons = "; ".join(e.get("reasons") or [])
        return f"  {sym}: order {e['order_id']} {e['status']}{dup} {reasons}".rstrip()
    if hop == "resumed":
        return f"  {sym}: resumed after a restart: order found by its client_order_id"
    if hop == "retry":
        return f"  {sym}: attempt {e['attempts']} failed, will retry from Redis: {e['error']}"
    if hop == "final":
        reason = f": {e['reason']}" if e.get("reason") else ""
        return f"  {sym}: {e['state']}{reason}"
    if hop == "notified":
        return (
            f"  {sym}: notification recorded for order {e['order_id']} "
            f"({e['action']} {_num(e['quantity'], 'g')} @ {_price(e['price'])}, via {e['via']})"
        )
    if hop == "error":
        return f"error in {e.get('where', e.get('opportunity_id', '?'))}: {e['error']}"
    return str(e)
