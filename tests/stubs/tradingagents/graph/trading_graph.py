"""Stand-in TradingAgentsGraph: records how it was built and called, answers in a dialect."""

from __future__ import annotations

from typing import Any

from tradingagents.default_config import DEFAULT_CONFIG


class TradingAgentsGraph:
    instances: list[TradingAgentsGraph] = []
    calls: list[dict[str, Any]] = []

    def __init__(
        self,
        selected_analysts: list[str] | tuple[str, ...] = (
            "market",
            "social",
            "news",
            "fundamentals",
        ),
        debug: bool = False,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.selected_analysts = list(selected_analysts)
        self.config = dict(config or DEFAULT_CONFIG)
        TradingAgentsGraph.instances.append(self)

    def propagate(self, company_name: str, trade_date: str) -> tuple[dict[str, Any], Any]:
        if self.config.get("stub_error"):
            # As a real client library does, the error message quotes the endpoint it used.
            raise RuntimeError(
                f"{self.config['stub_error']} (backend {self.config.get('backend_url')})"
            )
        TradingAgentsGraph.calls.append(
            {
                "symbol": company_name,
                "date": trade_date,
                "analysts": list(self.selected_analysts),
                "config": dict(self.config),
                "graph": id(self),
            }
        )
        state: dict[str, Any] = {
            "company_of_interest": company_name,
            "trade_date": trade_date,
            "investment_debate_state": {
                "bull_history": "Bull Analyst: momentum is intact.",
                "bear_history": "Bear Analyst: valuation is stretched.",
                "history": "Bull Analyst: momentum is intact.\nBear Analyst: valuation is stretched.",
                "judge_decision": "The bull case is stronger.",
            },
            "trader_investment_plan": "Buy in two tranches.",
            "risk_debate_state": {
                "risky_history": "Risky Analyst: size up.",
                "safe_history": "Safe Analyst: keep it small.",
                "neutral_history": "Neutral Analyst: moderate size.",
                "history": "...",
                "judge_decision": "Moderate position.",
            },
            "final_trade_decision": "FINAL TRANSACTION PROPOSAL: **BUY**",
        }
        for name in self.selected_analysts:
            key = "sentiment_report" if name == "social" else f"{name}_report"
            state[key] = f"{name} report for {company_name} on {trade_date}"
        if self.config.get("stub_dialect") == "cn":
            decision: Any = {
                "action": self.config.get("stub_action", "买入"),
                "target_price": self.config.get("stub_target", 123.45),
                "confidence": self.config.get("stub_confidence", 0.72),
                "risk_score": self.config.get("stub_risk", 0.35),
                "reasoning": "技术面向好，基本面稳健。",
            }
        else:
            decision = self.config.get("stub_rating", "OVERWEIGHT")
        return state, decision
