"""Risk: portfolio statistics (``evaluate.risk``) and the pre-trade checks shared with orders."""

from tacoreservice.risk.pretrade import (
    CHECK_NAMES,
    CheckResult,
    PortfolioState,
    PreTradeResult,
    ProposedTrade,
    check_trade,
)

__all__ = [
    "CHECK_NAMES",
    "CheckResult",
    "PortfolioState",
    "PreTradeResult",
    "ProposedTrade",
    "check_trade",
]
