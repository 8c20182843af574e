"""Does a rating mean what it says, and a confidence of 0.8 come true 80 % of the time?

From month-end snapshots at one horizon: per rating, the number of decisions, the mean
forward return and the hit rate; per confidence bucket, the mean confidence beside the hit
rate actually seen (a reliability table). A decision *hits* when its forward return has the
sign it bet on (up for BUY/OVERWEIGHT, down for UNDERWEIGHT/SELL, the forecast's sign for a
HOLD); a zero return is a miss. The quant engine's confidence is the calibrated chance of
exactly that, so the two columns should agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tacoreservice.evaluation.snapshots import RATING_SCORE, Snapshot

__all__ = ["CONFIDENCE_BUCKETS", "by_confidence", "by_rating", "plot_reliability"]

CONFIDENCE_BUCKETS: tuple[float, ...] = (0.0, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 1.0001)


def _hit(s: Snapshot, horizon: int) -> bool | None:
    r = s.forward.get(horizon)
    if r is None or s.direction == 0:
        return None
    return bool(r * s.direction > 0)


def _row(items: list[Snapshot], horizon: int) -> dict[str, Any]:
    fwd = [float(r) for s in items if (r := s.forward.get(horizon)) is not None]
    hits = [h for h in (_hit(s, horizon) for s in items) if h is not None]
    conf = [float(s.confidence) for s in items if s.confidence is not None]
    return {
        "count": len(items),
        "mean_forward_return": round(float(np.mean(fwd)), 5) if fwd else None,
        "hit_rate": round(float(np.mean(hits)), 4) if hits else None,
        "mean_confidence": round(float(np.mean(conf)), 4) if conf else None,
    }


def by_rating(snapshots: Sequence[Snapshot], horizon: int = 21) -> list[dict[str, Any]]:
    usable = [s for s in snapshots if s.forward.get(horizon) is not None]
    return [
        {"rating": rating} | _row([s for s in usable if s.rating == rating], horizon)
        for rating in RATING_SCORE
    ]


def by_confidence(snapshots: Sequence[Snapshot], horizon: int = 21) -> list[dict[str, Any]]:
    usable = [
        s for s in snapshots if s.forward.get(horizon) is not None and s.confidence is not None
    ]
    rows = []
    for lo, hi in zip(CONFIDENCE_BUCKETS[:-1], CONFIDENCE_BUCKETS[1:], strict=True):
        items = [s for s in usable if lo <= float(s.confidence or 0.0) < hi]
        label = f"{lo:.2f}-{min(hi, 1.0):.2f}"
        rows.append({"bucket": label} | _row(items, horizon))
    return rows


def plot_reliability(
    snapshots: Sequence[Snapshot], path: str | Path, horizon: int = 21, title: str = ""
) -> Path:
    """A PNG: hit rate against mean confidence per bucket (with counts), and the mean forward
    return per rating. Needs matplotlib (``pip install 'tacoreservice[plot]'``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = [r for r in by_confidence(snapshots, horizon) if r["count"]]
    ratings = [r for r in by_rating(snapshots, horizon) if r["count"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.plot([0.4, 1.0], [0.4, 1.0], color="#999999", linestyle="--", label="perfect calibration")
    xs = [r["mean_confidence"] for r in conf if r["hit_rate"] is not None]
    ys = [r["hit_rate"] for r in conf if r["hit_rate"] is not None]
    left.scatter(
        xs, ys, s=[max(20, min(400, r["count"])) for r in conf if r["hit_rate"] is not None]
    )
    for r in conf:
        if r["hit_rate"] is not None:
            left.annotate(str(r["count"]), (r["mean_confidence"], r["hit_rate"]), fontsize=8)
    left.set_xlabel("mean confidence in the bucket")
    left.set_ylabel(f"hit rate ({horizon}-bar forward return)")
    left.set_title("confidence vs what happened")
    left.legend(loc="upper left")
    names = [r["rating"] for r in ratings]
    values = [100.0 * (r["mean_forward_return"] or 0.0) for r in ratings]
    right.bar(names, values, color=["#2e7d32" if v >= 0 else "#c62828" for v in values])
    for i, r in enumerate(ratings):
        right.annotate(f"n={r['count']}", (i, values[i]), ha="center", fontsize=8)
    right.axhline(0, color="#555555", linewidth=0.8)
    right.set_ylabel(f"mean {horizon}-bar forward return, %")
    right.set_title("forward return by rating")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
