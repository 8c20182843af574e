"""The ``tacore`` commands as a person at an 80-column terminal sees them, against a real
service: tables that fit without a word cut in two, rounded prices, the exit-code table, and a
stopped service reported at once with how to start it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from rich.cells import cell_len

from tests.support.service import REPO, ServiceProcesses, free_port, wait_job

BOX = "│╭╮╰╯├┤┬┴┼─"


def tacore(
    svc: ServiceProcesses, *args: str, columns: int = 80
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tacoreservice", *args],
        env={**svc.env, "TACORE_ENDPOINT": svc.endpoint, "COLUMNS": str(columns)},
        capture_output=True,
        text=True,
        timeout=180,
        cwd=svc.tmp,
    )


def table_tokens(text: str) -> list[str]:
    """The words inside table rows (lines drawn with a vertical bar), box characters removed."""
    out = []
    for line in text.splitlines():
        if "│" in line:
            out += re.sub(f"[{BOX}]", " ", line).split()
    return out


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcesses]:
    service = ServiceProcesses(
        tmp_path_factory.mktemp("cli"), workers=2, TACORE_ALLOW_PORTFOLIO_RESET="1"
    )
    service.start_main()
    with service.client() as c:
        c.call("portfolio.reset", {"as_of": "2025-09-02"})
        for symbol, qty in (("AAPL", 10), ("KO", 25), ("BTCUSDT", 0.5)):
            c.call("execute.order", {"symbol": symbol, "action": "buy", "quantity": qty})
        c.call("execute.order", {"symbol": "AAPL", "action": "buy", "quantity": 5, "price": 100})
        rejected = c.call("execute.order", {"symbol": "KO", "action": "sell", "quantity": 10**6})
        assert rejected["status"] == "rejected"
        c.call("clock.advance", {"bars": 10})
        job = c.call("job.submit", {"method": "analyze.stock", "params": {"symbol": "MSFT"}})
        wait_job(c, job["job_id"], {"succeeded"}, timeout=120)
    yield service
    service.stop()


# The main tables, as a user types them; each runs at 80 columns and at 250.
COMMANDS = [
    ("scan", "--market", "US", "--limit", "8"),
    ("health", "--detailed"),
    ("portfolio",),
    ("orders",),
    ("jobs",),
    ("analyze", "AAPL"),
    ("backtest", "--symbols", "AAPL,KO", "--start", "2024-03-01", "--end", "2024-03-28"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_tables_fit_80_columns_without_cutting_a_word(
    svc: ServiceProcesses, args: tuple[str, ...]
) -> None:
    narrow = tacore(svc, *args, columns=80)
    assert narrow.returncode == 0, narrow.stderr
    too_wide = [line for line in narrow.stdout.splitlines() if cell_len(line) > 80]
    assert too_wide == [], "\n".join(too_wide)
    assert "…" not in narrow.stdout  # rich's mark of a cut cell
    wide = tacore(svc, *args, columns=250)
    assert wide.returncode == 0, wide.stderr
    # Every word of the 80-column tables is a whole word of the same tables drawn wide, where
    # nothing wraps: a word split over two lines would leave fragments that are not. (Figures
    # that change between two runs, uptime or CPU, are left out of the comparison; numeric
    # columns never wrap.)
    narrow_words, wide_words = table_tokens(narrow.stdout), set(table_tokens(wide.stdout))
    assert narrow_words, narrow.stdout
    fragments = [w for w in narrow_words if w not in wide_words and re.search("[A-Za-z]", w)]
    assert fragments == [], f"cut words {fragments}:\n{narrow.stdout}"
    # Prices are rounded: no figure with six decimals, as the raw data has them.
    assert not re.search(r"\d\.\d{5,}", narrow.stdout), narrow.stdout


def test_scan_says_how_many_it_shows(svc: ServiceProcesses) -> None:
    run = tacore(svc, "scan", "--market", "US", "--limit", "5")
    data = orjson.loads(tacore(svc, "scan", "--market", "US", "--limit", "5", "--json").stdout)
    assert f"top 5 of {data['matched']} matches" in run.stdout
    assert f"--limit {data['matched']} shows them all" in run.stdout


def test_portfolio_orders_and_jobs_show_the_account(svc: ServiceProcesses) -> None:
    portfolio = tacore(svc, "portfolio", columns=120)
    assert portfolio.returncode == 0, portfolio.stderr
    words = table_tokens(portfolio.stdout)
    assert {"AAPL", "KO", "BTCUSDT", "equity", "unrealised"} <= set(words)
    orders = orjson.loads(tacore(svc, "orders", "--json").stdout)["orders"]
    assert [o["status"] for o in orders].count("rejected") == 1
    listed = tacore(svc, "orders", "--status", "filled", columns=120)
    assert listed.stdout.count(" filled ") == 3 and "rejected" not in listed.stdout
    # `orders show` takes the short id the table shows; the fills and the pre-trade rows.
    rejected = next(o for o in orders if o["status"] == "rejected")
    shown = tacore(svc, "orders", "show", rejected["order_id"][4:12], columns=120)
    assert shown.returncode == 0, shown.stderr
    assert "pre-trade checks" in shown.stdout and "sufficient_holdings" in shown.stdout
    assert " NO " in shown.stdout  # the failed check
    jobs = tacore(svc, "jobs", "--state", "succeeded", columns=120)
    assert "analyze.stock" in jobs.stdout and "succeeded" in jobs.stdout


def test_jobs_cancel_and_show(svc: ServiceProcesses) -> None:
    with svc.client() as c:
        job = c.call("job.submit", {"method": "test.steps", "params": {"steps": 200, "delay": 0.1}})
        wait_job(c, job["job_id"], {"running"}, timeout=30)
    shown = tacore(svc, "jobs", "show", job["job_id"][4:12], columns=120)
    assert shown.returncode == 0 and "running" in shown.stdout and "ETA" in shown.stdout
    done = tacore(svc, "jobs", "cancel", job["job_id"][4:12])
    assert done.returncode == 0 and job["job_id"] in done.stdout
    with svc.client() as c:
        assert wait_job(c, job["job_id"], {"cancelled"}, timeout=30)["state"] == "cancelled"
    missing = tacore(svc, "jobs", "show", "ffffffff")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_analyze_report_exports(svc: ServiceProcesses, tmp_path: Path) -> None:
    for suffix in ("md", "html", "pdf"):
        out = tmp_path / f"aapl.{suffix}"
        run = tacore(svc, "analyze", "AAPL", "--report", str(out))
        assert run.returncode == 0, run.stderr
        assert out.stat().st_size > 2000 and (tmp_path / "aapl.png").is_file()
    html = (tmp_path / "aapl.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    assert html.index("Rating") < html.index("Market analyst")  # the summary comes first
    assert (tmp_path / "aapl.pdf").read_bytes().startswith(b"%PDF")
    bad = tacore(svc, "analyze", "AAPL", "--report", str(tmp_path / "aapl.txt"))
    assert bad.returncode == 2 and ".md, .html or .pdf" in bad.stderr


def test_exit_codes_are_one_table(svc: ServiceProcesses) -> None:
    assert tacore(svc, "call", "health.check").returncode == 0
    assert tacore(svc, "call", "get.market_data", "symbol=NOPE1").returncode == 1
    assert tacore(svc, "call", "get.market_data", "--json", "[1]").returncode == 2
    assert tacore(svc, "scan", "--price-range", "10").returncode == 2
    assert tacore(svc, "orders", "--status", "nonsense").returncode == 1  # INVALID_PARAMS
    assert tacore(svc, "no-such-verb").returncode == 2


@pytest.mark.parametrize(
    "args", [("call", "health.check"), ("portfolio",), ("jobs",), ("scan",), ("health",)]
)
def test_a_stopped_service_fails_within_2_s_with_the_hint(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    port = free_port()  # nothing listens here: a service that is not running
    env = {"PYTHONPATH": str(REPO), "TACORE_ENDPOINT": f"tcp://127.0.0.1:{port}", "COLUMNS": "80"}
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "tacoreservice", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    took = time.monotonic() - started
    assert run.returncode == 3, run.stderr
    assert f"nothing is listening on tcp://127.0.0.1:{port}" in run.stderr
    assert "./scripts/serve.sh" in run.stderr
    assert took < 2.0, f"took {took:.2f} s"


def test_serve_sh_is_quiet_on_a_warm_start() -> None:
    """The README's first command installs once; later starts print nothing before the
    service's own lines (here `--help`, so nothing starts)."""
    env = {**os.environ, "TACORE_VENV": sys.prefix}
    first = subprocess.run(
        [str(REPO / "scripts" / "serve.sh"), "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert first.returncode == 0, first.stderr
    again = subprocess.run(
        [str(REPO / "scripts" / "serve.sh"), "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert "Run everything on this host" in again.stdout
