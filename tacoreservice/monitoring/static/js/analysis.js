// One symbol's analysis: the summary block (the same rows as `tacore analyze` and the report),
// the price up to the decision's day with its entry, stop and target drawn on it, the
// reasoning, each role's report and the debate, turn by turn.

import { SeriesChart } from "./charts.js";
import { $, ApiFailure, api, byTestId, el, fmtDateTime, fmtPrice, renderMarkdown } from "./core.js";

const priceChart = new SeriesChart(byTestId("chart-price"), { colorVar: "--series-requests", fmt: fmtPrice, empty: "no prices" });

// Roles whose reports are shown one by one; the debaters appear under "Debate".
const REPORT_ROLES = ["market_analyst", "fundamentals_analyst", "news_analyst", "sentiment_analyst", "research_manager", "trader", "portfolio_manager"];
const title = (role) => role.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());

function turn(t) {
  const who = [title(t.role || t.stance || "turn"), t.round ? `round ${t.round}` : ""].filter(Boolean).join(", ");
  const body = t.report ? renderMarkdown(String(t.report).replace(/^#+ .*\n+/, ""), { headingShift: 2 }) : el("p", { text: JSON.stringify(t) });
  return el("article", { className: `turn turn-${t.side || t.stance || "neutral"}`, dataset: { testid: "debate-turn", role: t.role || "" } }, [el("h4", { text: who }), body]);
}

function render(view) {
  const d = view.decision;
  const box = $("#analysis-body");
  $("#analysis-symbol").value = d.symbol;
  const levels = [
    { label: "entry", value: d.price, colorVar: "--text" },
    { label: "stop", value: d.stop_loss, colorVar: "--bad", dash: true },
    { label: "target", value: d.target_price, colorVar: "--ok", dash: true },
    { label: "take profit", value: d.take_profit, colorVar: "--series-p50", dash: true },
  ];
  priceChart.set((view.history || []).map((b) => ({ label: b.time, value: b.close })), levels);
  $("#price-note").textContent = view.history_error || (view.history.length ? `${view.history[0].time} .. ${view.history[view.history.length - 1].time}, daily closes` : "");

  const summary = el(
    "table",
    { className: "summary", dataset: { testid: "analysis-summary" } },
    [el("tbody", {}, view.summary.map((row) => el("tr", { dataset: { label: row.label } }, [el("th", { text: row.label }), el("td", { text: row.value })])))],
  );
  const notes = [];
  if (view.stale_warning) notes.push(el("p", { className: "warning", dataset: { testid: "stale-warning" }, text: view.stale_warning }));
  for (const note of view.notes || []) notes.push(el("p", { className: "note", text: note }));

  const reports = d.reports || {};
  const sections = REPORT_ROLES.filter((r) => reports[r]).map((role) =>
    el("section", { className: "report", dataset: { testid: "role-report", role } }, [renderMarkdown(reports[role], { headingShift: 1 })]),
  );
  const debate = d.debate || {};
  const investment = debate.investment || [];
  const risk = debate.risk || [];
  const rm = debate.research_manager;
  const debateBox = el("section", { className: "debate", dataset: { testid: "debate" } }, [
    el("h3", { text: `Investment debate (${investment.length} turns)` }),
    ...investment.map(turn),
    rm ? el("p", { className: "job-meta", text: `Research manager: ${rm.recommendation} (score ${rm.score}, confidence ${rm.confidence})` }) : null,
    el("h3", { text: `Risk debate (${risk.length} turns)` }),
    ...risk.map(turn),
  ]);

  box.replaceChildren(
    el("div", { className: "analysis-head" }, [
      el("h2", { className: "plain" }, [`${d.symbol}${d.name && d.name !== d.symbol ? ` (${d.name})` : ""}: `, el("span", { className: `rating rating-${String(d.rating).toLowerCase()}`, text: d.rating }), ` as of ${String(d.as_of).slice(0, 10)}`]),
      el("span", { className: "job-meta", text: `decided ${fmtDateTime(d.decided_at)} · ${d.source || "just now"}` }),
    ]),
    el("div", { className: "analysis-top" }, [el("div", { className: "table-wrap" }, [summary]), el("div", {}, notes)]),
    d.reasoning ? el("p", { className: "reasoning", text: d.reasoning }) : null,
  );
  $("#analysis-reports").replaceChildren(...sections);
  $("#analysis-debate").replaceChildren(debateBox);
  $("#analysis-panels").hidden = false;
  const page = $("#page-analysis");
  page.dataset.symbol = d.symbol;
  page.dataset.rating = d.rating;
}

function empty(message) {
  $("#analysis-panels").hidden = true;
  $("#analysis-body").replaceChildren(el("p", { className: "jobs-empty", dataset: { testid: "analysis-empty" }, text: message }));
  delete $("#page-analysis").dataset.symbol;
}

export async function loadAnalysis(symbol) {
  if (!symbol) {
    empty("Pick a symbol: type one above, or open one from the Decisions or Portfolio page.");
    return;
  }
  $("#analysis-symbol").value = symbol;
  $("#analysis-status").textContent = "loading…";
  try {
    render(await api(`api/analysis/${encodeURIComponent(symbol)}`));
    $("#analysis-status").textContent = "";
  } catch (err) {
    $("#analysis-status").textContent = "";
    if (err instanceof ApiFailure && err.status === 404) empty(`No analysis of ${symbol} is recorded yet. "Analyse now" runs one.`);
    else empty(`could not load the analysis: ${err.message}`);
  }
}

async function analyseNow() {
  const symbol = $("#analysis-symbol").value.trim();
  if (!symbol) return;
  const button = $("#analysis-run");
  button.disabled = true;
  $("#analysis-status").textContent = `analysing ${symbol}…`;
  try {
    const view = await api(`api/analysis/${encodeURIComponent(symbol)}`, { method: "POST" });
    render({ ...view, decision: { ...view.decision, decided_at: new Date().toISOString() } });
    $("#analysis-status").textContent = "";
    history.replaceState(null, "", `#/analysis/${encodeURIComponent(view.decision.symbol)}`);
  } catch (err) {
    $("#analysis-status").textContent = `analysis failed: ${err.message}`;
  } finally {
    button.disabled = false;
  }
}

$("#analysis-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const symbol = $("#analysis-symbol").value.trim();
  if (symbol) location.hash = `#/analysis/${encodeURIComponent(symbol)}`;
});
$("#analysis-run").addEventListener("click", analyseNow);
