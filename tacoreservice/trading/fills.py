"""How a paper order fills: the price it gets on a bar, and what the fill costs.

Pure functions of the order, the bar and ``TradingCosts``; the ledger and the broker call them.

Market orders fill at the reference close (the last close at or before the clock) moved
``slippage_bps`` against the taker. Resting orders are matched against each later daily bar:

==============  ==========================  ==================================
order           triggers on a bar when      fills at
==============  ==========================  ==================================
buy limit       low <= limit                min(open, limit)
sell limit      high >= limit               max(open, limit)
buy stop        high >= stop                max(open, stop) + slippage
sell stop       low <= stop                 min(open, stop) - slippage
buy stop_limit  high >= stop, then a buy limit (see below)
sell stop_limit low <= stop, then a sell limit
==============  ==========================  ==================================

A stop_limit whose stop triggers fills on that same bar only if the trigger price (the stop,
or the open when the bar gapped through it) is within its limit, at that trigger price: the bar
does not say whether its low came before or after the stop was hit, so a later dip is not
assumed. Otherwise it rests as a plain limit order from the next bar on.

Limit fills take no slippage: a limit price is the worst price the order accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tacoreservice.config import TradingCosts

__all__ = ["BarMatch", "commission_for", "market_fill_price", "match_bar"]

_BPS = 1e-4
# Stored prices carry 1e-6: finer than any tick, and rounding before storing keeps the ledger's
# cash and cost figures computed from exactly the numbers reported.
PRICE_DECIMALS = 6


def _slipped(price: float, action: str, costs: TradingCosts) -> float:
    factor = 1.0 + costs.slippage_bps * _BPS if action == "buy" else 1.0 - costs.slippage_bps * _BPS
    return round(price * factor, PRICE_DECIMALS)


def market_fill_price(reference: float, action: str, costs: TradingCosts) -> float:
    """A market order's fill price: the reference close moved against the taker."""
    return _slipped(reference, action, costs)


def commission_for(quantity: float, price: float, costs: TradingCosts) -> float:
    """``max(commission_min, rate * notional + per_share * quantity)``, in cents."""
    raw = costs.commission_rate * quantity * price + costs.commission_per_share * quantity
    return round(max(costs.commission_min, raw), 2)


@dataclass(frozen=True)
class BarMatch:
    """What one bar did to a resting order."""

    outcome: Literal["none", "fill", "triggered"]  # triggered: a stop_limit became a limit
    price: float = 0.0  # fill price (slippage included)
    reference: float = 0.0  # the price before slippage, for the fill's slippage figure


def _limit_match(action: str, limit: float, open_: float, high: float, low: float) -> BarMatch:
    if action == "buy" and low <= limit:
        px = round(min(open_, limit), PRICE_DECIMALS)
        return BarMatch("fill", px, px)
    if action == "sell" and high >= limit:
        px = round(max(open_, limit), PRICE_DECIMALS)
        return BarMatch("fill", px, px)
    return BarMatch("none")


def _stop_trigger(action: str, stop: float, open_: float, high: float, low: float) -> float | None:
    if action == "buy" and high >= stop:
        return max(open_, stop)
    if action == "sell" and low <= stop:
        return min(open_, stop)
    return None


def match_bar(
    *,
    order_type: str,
    action: str,
    limit: float | None,
    stop: float | None,
    stop_triggered: bool,
    open_: float,
    high: float,
    low: float,
    costs: TradingCosts,
) -> BarMatch:
    """Match one resting order against one bar (the table in the module docstring)."""
    if order_type == "limit" or (order_type == "stop_limit" and stop_triggered):
        assert limit is not None
        return _limit_match(action, limit, open_, high, low)
    assert stop is not None
    trigger = _stop_trigger(action, stop, open_, high, low)
    if trigger is None:
        return BarMatch("none")
    if order_type == "stop":
        return BarMatch("fill", _slipped(trigger, action, costs), trigger)
    assert limit is not None
    within = trigger <= limit if action == "buy" else trigger >= limit
    if within:
        px = round(trigger, PRICE_DECIMALS)
        return BarMatch("fill", px, px)
    return BarMatch("triggered")
