// The trader's pages: the paper portfolio (equity curve from the ledger, drawdown, positions,
// cash, realised and unrealised P&L), its orders with fills and pre-trade rows, and the latest
// decision per symbol.

import { SeriesChart } from "./charts.js";
import {
  $,
  api,
  byTestId,
  cell,
  cellWith,
  el,
  fmtDateTime,
  fmtInt,
  fmtMoney,
  fmtPct,
  fmtPrice,
  fmtSigned,
  isNum,
  renderRows,
  setCard,
} from "./core.js";

const fmtAxisMoney = (v) => (Math.abs(v) >= 1e6 ? `${(v / 1e6).toFixed(3)}M` : Math.abs(v) >= 1e4 ? `${Math.round(v / 1000)}k` : fmtMoney(v));

const equityChart = new SeriesChart(byTestId("chart-equity"), { colorVar: "--series-requests", fmt: fmtAxisMoney, fill: true, empty: "no fills yet" });
const drawdownChart = new SeriesChart(byTestId("chart-drawdown"), { colorVar: "--series-errors", fmt: (v, step) => `${(v * 100).toFixed(step !== undefined && step * 100 < 0.1 ? 2 : 1)}%`, fill: true, zeroBased: true, empty: "no fills yet" });

const pnlLevel = (v) => (isNum(v) && v < 0 ? "bad" : "");

function renderAccount(p, history) {
  setCard("card-equity", { value: fmtMoney(p.equity), raw: p.equity, sub: `initial ${fmtMoney(p.initial_cash)}` });
  setCard("card-cash", { value: fmtMoney(p.cash), raw: p.cash, sub: `${fmtInt(p.open_orders)} open orders` });
  setCard("card-realised", { value: fmtSigned(p.realised_pnl), raw: p.realised_pnl, sub: `commissions ${fmtMoney(p.commissions)}`, level: pnlLevel(p.realised_pnl) });
  setCard("card-unrealised", { value: fmtSigned(p.unrealised_pnl), raw: p.unrealised_pnl, sub: `total ${fmtSigned(p.total_pnl)}`, level: pnlLevel(p.unrealised_pnl) });
  setCard("card-drawdown", {
    value: fmtPct(p.drawdown, 2),
    raw: p.drawdown,
    sub: `max ${fmtPct(history.max_drawdown, 2)} · peak ${fmtMoney(p.peak_equity)}`,
    level: p.drawdown > 0.1 ? "bad" : p.drawdown > 0 ? "warn" : "",
  });
  setCard("card-clock", { value: p.clock || "–", raw: p.clock, sub: `valued at ${p.valued_at} · data to ${p.data_end}` });
  const points = history.points || [];
  equityChart.set(points.map((pt) => ({ label: pt.date, value: pt.equity })), [{ label: "initial", value: history.initial_cash, colorVar: "--muted", dash: true }]);
  drawdownChart.set(points.map((pt) => ({ label: pt.date, value: -pt.drawdown })));
  $("#equity-note").textContent = points.length ? `${points[0].date} .. ${points[points.length - 1].date} · ${fmtInt(history.fills)} fills` : "";

  const positions = Object.entries(p.positions || {}).sort((a, b) => (b[1].market_value || 0) - (a[1].market_value || 0));
  renderRows(
    $("#positions-table"),
    positions,
    ([sym]) => sym,
    ([sym, pos]) => [
      cellWith("mono", [el("a", { href: `#/analysis/${encodeURIComponent(sym)}`, text: sym })]),
      cell(fmtNum4(pos.quantity), "num"),
      cell(fmtPrice(pos.avg_cost), "num"),
      cell(fmtPrice(pos.price), "num"),
      cell(fmtMoney(pos.market_value), "num"),
      cell(fmtSigned(pos.unrealised_pnl), `num ${pos.unrealised_pnl < 0 ? "bad" : "good"}`),
      cell(fmtSigned(pos.realised_pnl), "num"),
      cell(fmtPct(pos.weight), "num"),
      cell(pos.price_bar || "–"),
    ],
    ([sym]) => ({ testid: "position-row", symbol: sym }),
    "no positions",
    9,
  );
}

const fmtNum4 = (v) => (isNum(v) ? (Number.isInteger(v) ? v.toLocaleString("en-US") : v.toFixed(4)) : "–");

function fillText(order) {
  const fills = order.fills || [];
  if (!fills.length) return "–";
  const qty = fills.reduce((n, f) => n + f.quantity, 0);
  const avg = fills.reduce((n, f) => n + f.quantity * f.price, 0) / qty;
  return `${fmtNum4(qty)} @ ${fmtPrice(avg)}`;
}

function renderOrders(data) {
  const orders = data.orders || [];
  $("#orders-count").textContent = `${fmtInt(orders.length)} of ${fmtInt(data.total)}`;
  renderRows(
    $("#orders-table"),
    orders,
    (o) => o.order_id,
    (o) => [
      cell(o.as_of),
      cellWith("mono", [el("a", { href: "#", className: "order-link", dataset: { orderId: o.order_id }, text: o.order_id.replace(/^ord-/, "").slice(0, 8), title: o.order_id })]),
      cell(o.symbol, "mono"),
      cell(o.action, o.action === "buy" ? "good" : "bad"),
      cell(o.order_type),
      cell(fmtNum4(o.quantity), "num"),
      cell(isNum(o.price) ? fmtPrice(o.price) : "–", "num"),
      cell(fillText(o), "num"),
      cellWith("", [el("span", { className: `state state-order-${o.status}`, text: o.status })]),
      cell((o.reasons || []).join("; "), "wrap"),
    ],
    (o) => ({ testid: "order-row", status: o.status, orderId: o.order_id, symbol: o.symbol }),
    "no orders",
    10,
  );
  ordersById = new Map(orders.map((o) => [o.order_id, o]));
}

let ordersById = new Map();

// One order: its fills and the pre-trade check rows it was admitted (or refused) with.
function showOrder(orderId) {
  const o = ordersById.get(orderId);
  const panel = $("#order-detail");
  if (!o) return;
  const checks = (o.risk && o.risk.checks) || [];
  const limitText = (v) => (v === null || v === undefined ? "off" : typeof v === "object" ? JSON.stringify(v) : typeof v === "number" ? (Math.abs(v) < 1 ? v.toPrecision(4) : fmtMoney(v)) : String(v));
  panel.replaceChildren(
    el("div", { className: "detail-head" }, [
      el("h2", {}, ["Order ", el("span", { className: "mono", text: o.order_id })]),
      el("button", { type: "button", text: "Close", onclick: () => (panel.hidden = true) }),
    ]),
    el("p", { text: `${o.action} ${fmtNum4(o.quantity)} ${o.symbol} (${o.order_type}, ${o.time_in_force}) on ${o.as_of}: ${o.status}` + ((o.reasons || []).length ? ` · ${o.reasons.join("; ")}` : "") }),
    el("h3", { text: `Fills (${(o.fills || []).length})` }),
    el("div", { className: "table-wrap" }, [
      el("table", { dataset: { testid: "fills-table" } }, [
        el("thead", {}, [el("tr", {}, ["Day", "Quantity", "Price", "Reference", "Commission", "Slippage", "Realised"].map((h) => el("th", { text: h, className: h === "Day" ? "" : "num" })))]),
        el("tbody", {}, (o.fills || []).map((f) => el("tr", {}, [f.as_of, fmtNum4(f.quantity), fmtPrice(f.price), fmtPrice(f.reference_price), fmtMoney(f.commission), fmtMoney(f.slippage), fmtSigned(f.realised_pnl)].map((t, i) => el("td", { text: t, className: i ? "num" : "" }))))),
      ]),
    ]),
    el("h3", { text: `Pre-trade checks (${checks.length})` }),
    el("div", { className: "table-wrap" }, [
      el("table", { dataset: { testid: "checks-table" } }, [
        el("thead", {}, [el("tr", {}, ["Check", "Passed", "Limit", "After", "Reason"].map((h) => el("th", { text: h })))]),
        el(
          "tbody",
          {},
          checks.map((c) =>
            el("tr", { dataset: { testid: "check-row", passed: String(Boolean(c.passed)) } }, [
              el("td", { className: "mono", text: c.name }),
              el("td", { className: c.passed ? "good" : "bad", text: c.passed ? "yes" : "NO" }),
              el("td", { className: "wrap", text: limitText(c.limit) }),
              el("td", { text: limitText(c.value_after) }),
              el("td", { className: "wrap", text: c.reason || "" }),
            ]),
          ),
        ),
      ]),
    ]),
  );
  panel.dataset.orderId = o.order_id;
  panel.hidden = false;
  panel.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

document.addEventListener("click", (ev) => {
  const link = ev.target.closest("a.order-link");
  if (!link) return;
  ev.preventDefault();
  showOrder(link.dataset.orderId);
});

export async function loadPortfolio() {
  const status = $("#portfolio-status");
  try {
    const status_ = $("#orders-status").value;
    const [account, orders] = await Promise.all([api("api/portfolio"), api(`api/orders?limit=100${status_ ? `&status=${status_}` : ""}`)]);
    renderAccount(account.portfolio, account.history);
    renderOrders(orders);
    status.textContent = `updated ${fmtDateTime(Date.now() / 1000)}`;
    status.dataset.loaded = "1";
  } catch (err) {
    status.textContent = `could not load the account: ${err.message}`;
  }
}

$("#orders-status").addEventListener("change", () => loadPortfolio());

export async function loadDecisions() {
  const status = $("#decisions-status");
  try {
    const data = await api("api/decisions");
    renderRows(
      $("#decisions-table"),
      data.decisions,
      (d) => d.symbol,
      (d) => [
        cellWith("mono", [el("a", { href: `#/analysis/${encodeURIComponent(d.symbol)}`, text: d.symbol })]),
        cell(d.name || "", "wrap"),
        cellWith("", [el("span", { className: `rating rating-${String(d.rating).toLowerCase()}`, text: d.rating })]),
        cell(isNum(d.confidence) ? fmtPct(d.confidence, 0) : "–", "num"),
        cell(fmtPrice(d.price), "num"),
        cell(fmtPrice(d.stop_loss), "num"),
        cell(fmtPrice(d.target_price), "num"),
        cell(isNum(d.take_profit) ? fmtPrice(d.take_profit) : d.rating === "HOLD" ? "none (HOLD)" : "–", "num"),
        cell(isNum(d.position_size_pct) ? `${d.position_size_pct.toFixed(1)}%` : "–", "num"),
        cell(isNum(d.risk_score) ? `${Math.round(d.risk_score)}/100` : "–", "num"),
        cell(d.as_of || "–"),
        cell(d.engine || "–"),
        cell(fmtDateTime(d.decided_at)),
      ],
      (d) => ({ testid: "decision-row", symbol: d.symbol, rating: d.rating }),
      "no analysis recorded yet: run one from the Analysis page or `tacore analyze SYMBOL`",
      13,
    );
    status.textContent = `${fmtInt(data.decisions.length)} symbols`;
  } catch (err) {
    status.textContent = `could not load the decisions: ${err.message}`;
  }
}
