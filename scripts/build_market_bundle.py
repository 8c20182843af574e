"""Build tacoreservice/market_data/bundled/ from /work/shared/data/market (one-off, reproducible)."""

import csv
import gzip
import hashlib
import io
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The project's shared/ folder sits beside the checkout.
SRC = REPO.parent / "shared" / "data" / "market"
DST = REPO / "tacoreservice" / "market_data" / "bundled"

SOURCES = {
    "traderpro": {
        "repo": "AnirudhK005/TraderPro",
        "commit": "4a78c0669bf476ad342a00cb677168ef0892f3b2",
        "data_commit": "b0ad6e5b2dbb6d04a2d41c871b76b187bc05f5d0",
        "vendor": "Yahoo Finance via yfinance (yf.download(period='5y'), default auto_adjust=True)",
        "license": None,
    },
    "stock_predictor": {
        "repo": "Koi-west/stock-predictor",
        "commit": "79ed933362ca06cabc8157374134061fbb393414",
        "data_commit": "388d4b1701a4fba9d7e72b8c3f20bc9915f0248b",
        "vendor": "Yahoo Finance via yfinance (auto_adjust=True)",
        "license": None,
    },
    "stocktradebyz": {
        "repo": "SebastienZh/StockTradebyZ",
        "commit": "6d657ad61dac272a2f4ce53ec2d565daaecc4d99",
        "data_commit": "6d657ad61dac272a2f4ce53ec2d565daaecc4d99",
        "vendor": "Tushare Pro pro_bar, daily, adj='qfq'",
        "license": None,
    },
    "stocktradebyz_early": {
        "repo": "SebastienZh/StockTradebyZ",
        "commit": "492c4a755609c34fca7f68c71c03da8cff5b4eb8",
        "data_commit": "492c4a755609c34fca7f68c71c03da8cff5b4eb8",
        "vendor": "Tushare Pro pro_bar, daily, adj='qfq'",
        "license": None,
    },
    "finance_analysis": {
        "repo": "Nshiodis/finance-analysis-platform",
        "commit": "58cb1c3d584412c1521b9599b021ec77b70a5431",
        "data_commit": "6fee16ac660f1925208f7a3581f2a4596e6e8064",
        "vendor": "AkShare stock_zh_index_daily_em('sh000300') (Eastmoney)",
        "license": None,
    },
    "hopeffy": {
        "repo": "hopeffy/economics-project-algorithmic-trading-algorithms",
        "commit": "d47d8be0a6e0af23b0bf96f61e8a8c81ed4aea2d",
        "data_commit": "b2354d1b5db9a0838a1cc5b1fb2034bd755b5a5a",
        "vendor": "Binance spot via ccxt.binance().fetch_ohlcv",
        "license": None,
    },
    "yanniedog": {
        "repo": "yanniedog/binance-historical-OHLCV-data",
        "commit": "1a00f0748cc41ff0e476285ad927ce3bbc133893",
        "data_commit": "1a00f0748cc41ff0e476285ad927ce3bbc133893",
        "vendor": "Binance spot klines (download method undocumented; checked against Binance "
        "/api/v3/klines daily bars and its own hourly aggregation, see SOURCES.md section 7)",
        "license": None,
    },
    "sp500_financials": {
        "repo": "datasets/s-and-p-500-companies-financials",
        "commit": "44d0ca307550c1615663da85fae5e79efbc7b3a1",
        "data_commit": "44d0ca307550c1615663da85fae5e79efbc7b3a1",
        "vendor": "Wikipedia constituents + Yahoo Finance financials",
        "license": "ODC-PDDL-1.0",
    },
    "sp500": {
        "repo": "datasets/s-and-p-500-companies",
        "commit": "56509dd80619e4d8e1410c2260d68ddd3eab6068",
        "data_commit": "56509dd80619e4d8e1410c2260d68ddd3eab6068",
        "vendor": "Wikipedia 'List of S&P 500 companies'",
        "license": "ODC-PDDL-1.0",
    },
}

ETF_NAMES = {
    "SPY": "SPDR S&P 500 ETF Trust",
    "QQQ": "Invesco QQQ Trust (Nasdaq-100)",
    "XLK": "Technology Select Sector SPDR Fund",
    "XLF": "Financial Select Sector SPDR Fund",
    "XLV": "Health Care Select Sector SPDR Fund",
    "XLE": "Energy Select Sector SPDR Fund",
    "XLI": "Industrial Select Sector SPDR Fund",
}
CRYPTO_NAMES = {
    "BTCUSDT": "Bitcoin / TetherUS (BTC/USDT)",
    "ETHUSDT": "Ethereum / TetherUS (ETH/USDT)",
    "ADAUSDT": "Cardano / TetherUS (ADA/USDT)",
    "DOTUSDT": "Polkadot / TetherUS (DOT/USDT)",
}
# SOURCES.md section 7: Binance outages (missing hours) and flat zero-volume bars in the files.
BINANCE_NOTES = {
    ("ADAUSDT", "1h"): "25 gaps (88 missing hours, Binance outages), all but 2023-03-24 13:00 "
    "before 2022; flat zero-volume bars 2019-06-07 21:00, 2021-02-11 03:00 and 2023-03-24 12:00",
    ("DOTUSDT", "1h"): "10 gaps (20 missing hours, Binance outages), the last 2023-03-24 13:00; "
    "flat zero-volume bars 2021-02-11 03:00 and 2023-03-24 12:00",
}


def read_csv(path):
    text = path.read_bytes().decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text, newline="")))


def gz(src, rel):
    out = DST / (rel + ".gz")
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = src.read_bytes()
    # mtime=0 and no file name keep the archive byte-identical across rebuilds.
    with (
        open(out, "wb") as fh,
        gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=9, mtime=0) as g,
    ):
        g.write(raw)
    return raw


def main():
    if DST.exists():
        for p in DST.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    DST.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SRC / "SOURCES.md", DST / "SOURCES.md")

    sp = {r[0]: r for r in read_csv(SRC / "fundamentals/us_sp500_constituents.csv")[1:]}
    cnl = {r[1]: r for r in read_csv(SRC / "fundamentals/cn_stocklist.csv")[1:]}

    files, symbols = {}, {}
    for path in sorted(SRC.glob("*/*.csv")):
        rel = f"{path.parent.name}/{path.name}"
        market = path.parent.name
        raw = gz(path, rel)
        rows = read_csv(path)
        header, body = rows[0], rows[1:]
        entry = {
            "kind": "fundamentals" if market == "fundamentals" else "bars",
            "source_file": rel,
            "header": header,
            "columns": "read from the header by name; positions differ between sources",
            "rows": len(body),
            "bytes": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "line_endings": "CRLF" if b"\r\n" in raw else "LF",
            "encoding": "utf-8",
        }
        if market == "fundamentals":
            key = {
                "cn_stocklist.csv": "stocktradebyz",
                "us_sp500_constituents.csv": "sp500",
                "us_sp500_constituents_financials.csv": "sp500_financials",
            }[path.name]
            entry["source"] = {
                **SOURCES[key],
                "path": {
                    "cn_stocklist.csv": "stocklist.csv",
                    "us_sp500_constituents.csv": "data/constituents.csv",
                    "us_sp500_constituents_financials.csv": "data/constituents-financials.csv",
                }[path.name],
            }
            entry["snapshot_date"] = {
                "cn_stocklist.csv": "2025-10-09",
                "us_sp500_constituents.csv": "2026-08-08",
                "us_sp500_constituents_financials.csv": "2026-08-22",
            }[path.name]
            entry["point_in_time"] = False
            if path.name == "us_sp500_constituents_financials.csv":
                entry["notes"] = (
                    "Sector column is the GICS sub-industry; Market Cap and EBITDA in raw USD; "
                    "Dividend Yield is a fraction; single snapshot ~2026-08-21/22, after the price files end."
                )
            files[rel + ".gz"] = entry
            continue

        stem = path.stem
        if market == "crypto":
            symbol, timeframe = stem.split("_")
        else:
            symbol, timeframe = stem, "1d"
        first, last = body[0][0], body[-1][0]
        entry.update(market=market, symbol=symbol, timeframe=timeframe, first=first, last=last)
        notes = []
        if market == "us":
            src = "stock_predictor" if symbol == "TSLA" else "traderpro"
            entry.update(
                currency="USD",
                volume_unit="shares",
                adjustment="yfinance auto_adjust",
                time_basis="exchange-local trading date (America/New_York)",
                partial_last_bar=symbol == "TSLA",
            )
            if symbol == "TSLA":
                notes.append(
                    "last row 2026-03-26 is an intraday partial bar (committed ~1h after the US open, volume 10.3M vs ~55-60M)"
                )
        elif market == "cn":
            if symbol == "CSI300":
                src = "finance_analysis"
                entry.update(adjustment="raw", source_path="data/000300.csv")
                notes.append("index level; amount column in CNY")
            else:
                src = "stocktradebyz_early" if symbol in ("000858", "300750") else "stocktradebyz"
                entry.update(adjustment="tushare qfq")
            entry.update(
                currency="CNY",
                volume_unit="lots of 100 shares",
                time_basis="exchange-local trading date (Asia/Shanghai)",
                partial_last_bar=False,
            )
            if symbol in ("000858", "300750"):
                notes.append(
                    "taken from the earlier auto-update commit; 'amount' column empty except the last 6 rows "
                    "(from 2025-08-27), where it is in thousands of CNY (Tushare unit); the loader ignores it"
                )
            if symbol == "600030":
                notes.append("no rows 2022-01-19..26 (suspension)")
            if symbol == "600900":
                notes.append("no rows 2021-11-29..12-10 and 2022-10-26 (suspension)")
        else:
            src = "yanniedog" if symbol in ("ADAUSDT", "DOTUSDT") else "hopeffy"
            entry.update(
                currency="USDT",
                volume_unit="base asset units",
                adjustment="raw",
                time_basis="UTC bar-open time",
                partial_last_bar=True,
            )
            notes.append(f"last bar ({last}) is partial; volume far below normal")
            if (symbol, timeframe) in BINANCE_NOTES:
                notes.append(BINANCE_NOTES[symbol, timeframe])
            elif timeframe == "1h":
                notes.append(
                    "one hourly bar missing in the source: 2023-03-24 13:00 (Binance spot halt)"
                )
        default_path = path.name if src == "yanniedog" else f"data/{path.name}"
        entry["source"] = {**SOURCES[src], "path": entry.pop("source_path", default_path)}
        if notes:
            entry["notes"] = "; ".join(notes)
        files[rel + ".gz"] = entry

        info = symbols.setdefault(symbol, {"market": market, "series": {}})
        info["series"][timeframe] = rel + ".gz"
        if market == "us":
            if symbol in ETF_NAMES:
                info.update(kind="etf", name=ETF_NAMES[symbol], sector=None, industry=None)
            else:
                r = sp[symbol]
                info.update(kind="stock", name=r[1], sector=r[2], industry=r[3])
            info.update(exchange="US", currency="USD")
        elif market == "cn":
            if symbol == "CSI300":
                info.update(
                    kind="index",
                    name="沪深300 (CSI 300 Index)",
                    exchange="SH",
                    sector=None,
                    industry=None,
                )
            else:
                r = cnl[symbol]
                # Tushare has one classification level; it serves as both sector and industry.
                info.update(
                    kind="stock", name=r[2], exchange=r[0].split(".")[1], sector=r[4], industry=r[4]
                )
            info["currency"] = "CNY"
        else:
            info.update(
                kind="crypto",
                name=CRYPTO_NAMES[symbol],
                exchange="BINANCE",
                currency="USDT",
                sector=None,
                industry=None,
            )

    manifest = {
        "format": 1,
        "description": "Real historical market data bundled with tacoreservice; see SOURCES.md for provenance.",
        "built_from": "/work/shared/data/market (byte-for-byte, gzip level 9, mtime 0)",
        "benchmarks": {"us": "SPY", "cn": "CSI300", "crypto": "BTCUSDT"},
        "symbols": dict(sorted(symbols.items())),
        "files": files,
    }
    (DST / "manifest.json").write_text(
        json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
