"""A minimal stand-in for TradingAgents / TradingAgents-CN, for the adapter's tests.

It exposes what the adapter uses: ``tradingagents.graph.trading_graph.TradingAgentsGraph``
(``selected_analysts``, ``config``; ``propagate(symbol, date) -> (state, decision)``) and
``tradingagents.default_config.DEFAULT_CONFIG``. ``config["stub_dialect"]`` picks the decision
dialect: ``"en"`` (TradingAgents' rating string, ``config["stub_rating"]``) or ``"cn"``
(TradingAgents-CN's dict with 买入/持有/卖出). ``config["stub_error"]`` makes ``propagate``
raise a RuntimeError with that text and the backend URL, as a failing LLM client would.
"""

__version__ = "0.0.0-stub"
