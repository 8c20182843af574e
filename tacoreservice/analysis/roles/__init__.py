"""The roles of the TradingAgents graph: pure functions of the evidence and earlier roles.

Each role returns a plain dict (a *role output*) with its structured figures, a markdown
``report`` and an ``evidence`` dict of exactly the numbers it used. Nothing here reads data:
every figure comes from :func:`tacoreservice.analysis.evidence.compute_evidence`'s answer,
above all its calibrated ``forecast``, and where that answer has none the role says so.

Flow (graph.py drives it): analysts (:mod:`.analysts`) -> bull/bear turns for N rounds ->
research manager (:mod:`.debate`) -> trader -> aggressive/neutral/conservative turns for M
rounds -> portfolio manager (:mod:`.trading`). No weight or threshold in them is chosen by
hand: signal weights, the drift and the forecast's uncertainty come from the market's
calibration before the decision date, sizes from the Kelly rule on that forecast, ratings
from the size.
"""

from tacoreservice.analysis.roles.analysts import (
    analyst,
    fundamentals_analyst,
    market_analyst,
    news_analyst,
    sentiment_analyst,
)
from tacoreservice.analysis.roles.common import (
    ANALYST_ROLE,
    ANALYSTS,
    HOLD_NO_TAKE_PROFIT,
    MAX_POSITION_PCT,
    RATING_EXPOSURE,
    RATINGS,
    RoleOutput,
    action_for_rating,
    rating_for_exposure,
    stance_for_score,
)
from tacoreservice.analysis.roles.debate import (
    POINTS_PER_TURN,
    bear_turn,
    bull_turn,
    debate_points,
    research_manager,
)
from tacoreservice.analysis.roles.trading import (
    RISK_TURNS,
    portfolio_manager,
    risk_score,
    risk_turn,
    trade_levels,
    trader,
)

__all__ = [
    "ANALYSTS",
    "ANALYST_ROLE",
    "HOLD_NO_TAKE_PROFIT",
    "MAX_POSITION_PCT",
    "POINTS_PER_TURN",
    "RATINGS",
    "RATING_EXPOSURE",
    "RISK_TURNS",
    "RoleOutput",
    "action_for_rating",
    "analyst",
    "bear_turn",
    "bull_turn",
    "debate_points",
    "fundamentals_analyst",
    "market_analyst",
    "news_analyst",
    "portfolio_manager",
    "rating_for_exposure",
    "research_manager",
    "risk_score",
    "risk_turn",
    "sentiment_analyst",
    "stance_for_score",
    "trade_levels",
    "trader",
]
