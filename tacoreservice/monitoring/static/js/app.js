// TACoreService dashboard: plain JavaScript modules, no build step, no third-party code.
//
// Pages (hash routes): #/ operations, #/jobs, #/requests, #/portfolio, #/decisions,
// #/analysis/SYMBOL. The operations data streams all the time (its disconnected state is
// visible from every page); the other pages load when opened and refresh while open.

import { loadAnalysis } from "./analysis.js";
import { $, Unauthorized, getToken, setToken, whenUnauthorized } from "./core.js";
import { closeJob, refreshJobs, showJob } from "./jobs.js";
import { redrawCharts, startOps, stopLive } from "./ops.js";
import { loadRequests } from "./requests.js";
import { loadDecisions, loadPortfolio } from "./trading.js";

const PAGES = ["ops", "jobs", "requests", "portfolio", "decisions", "analysis"];
const REFRESH_MS = { jobs: 2000, portfolio: 10000, decisions: 10000 };
let refreshTimer = null;
let current = null;

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const page = PAGES.includes(parts[0]) ? parts[0] : "ops";
  return { page, arg: parts[1] || "" };
}

async function load(page, arg, refresh = false) {
  if (page === "jobs") {
    await refreshJobs(); // re-reads the open job too
    if (refresh) return;
    if (arg) await showJob(arg);
    else closeJob();
  } else if (page === "requests") {
    if (!refresh) await loadRequests();
  } else if (page === "portfolio") await loadPortfolio();
  else if (page === "decisions") await loadDecisions();
  else if (page === "analysis") await loadAnalysis(arg);
}

function show() {
  const { page, arg } = route();
  for (const name of PAGES) $(`#page-${name}`).hidden = name !== page;
  for (const link of document.querySelectorAll("nav.tabs a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.body.dataset.page = page;
  current = page;
  clearInterval(refreshTimer);
  if (page === "ops") redrawCharts();
  load(page, arg).catch(() => {});
  if (REFRESH_MS[page]) {
    refreshTimer = setInterval(() => {
      if (current === page && !document.hidden) load(page, arg, true).catch(() => {});
    }, REFRESH_MS[page]);
  }
}

// --- token prompt ---------------------------------------------------------------------------

function askForToken(message) {
  stopLive();
  const ind = $("#live-indicator");
  ind.dataset.state = "unauthorized";
  ind.querySelector(".live-text").textContent = "token needed";
  const err = $("#token-error");
  err.textContent = message || "";
  err.hidden = !message;
  $("#token-panel").hidden = false;
  $("#content").hidden = true;
  $("#token-input").focus();
}

whenUnauthorized(() => {
  if ($("#token-panel").hidden) askForToken(getToken() ? "That token was refused; check TACORE_API_TOKEN." : "");
});

$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = $("#token-input").value.trim();
  if (!value) return;
  setToken(value);
  $("#token-input").value = "";
  $("#token-panel").hidden = true;
  $("#content").hidden = false;
  start();
});

async function start() {
  try {
    await startOps();
    show();
  } catch (err) {
    if (err instanceof Unauthorized) {
      const hadToken = Boolean(getToken());
      setToken("");
      askForToken(hadToken ? "That token was refused; check TACORE_API_TOKEN." : "");
    }
  }
}

window.addEventListener("hashchange", show);
document.body.dataset.connection = "live";
start();
