// The operations page: cards, throughput and latency, workers, methods, the model, running jobs,
// recent requests and failures grouped by code. Loads once, then follows the `snapshot` events
// of /api/events (server-sent events, one a second). When they stop, the page says so: the
// badge turns red, the figures grey out, and a banner counts the time since the last update.

import { TimeChart, readPalette } from "./charts.js";
import {
  $,
  Unauthorized,
  api,
  byTestId,
  cell,
  cellWith,
  el,
  fmtAge,
  fmtClock,
  fmtDateTime,
  fmtDuration,
  fmtInt,
  fmtMiB,
  fmtMs,
  fmtNum,
  fmtPct,
  fmtProcPct,
  fmtWindow,
  getToken,
  isNum,
  progressBar,
  renderRows,
  setCard,
} from "./core.js";
import { requestLink } from "./requests.js";

const CHART_WINDOW_S = 900;
// A snapshot arrives every second; after this long without one the link is presumed dead even
// if the socket has not noticed (a hung broker keeps the TCP connection open).
const STALE_AFTER_MS = 5000;
const RECONNECT_AFTER_MS = 10000;
// Each snapshot carries the newest closed second only; a late snapshot skips one, which a gap
// check repairs at once, and this periodic re-read keeps the charts equal to the server's.
const HISTORY_REFRESH_MS = 30000;

// --- overview -------------------------------------------------------------------------------

function renderStatus(st) {
  $("#service-meta").textContent = [st.version && `v${st.version}`, st.host].filter(Boolean).join(" · ");
  if (!lostSince) {
    const badge = $("#service-status");
    badge.textContent = st.status || "unknown";
    badge.dataset.state = st.status || "unknown";
    badge.title = "";
  }
  $("#draining-badge").hidden = !st.draining;

  setCard("card-uptime", {
    value: fmtDuration(st.uptime_s),
    raw: st.uptime_s,
    sub: st.started_at ? `since ${fmtDateTime(st.started_at)}` : "",
  });

  const w = st.workers || {};
  const workerNotes = [`${fmtInt(w.idle)} idle`];
  if (w.draining) workerNotes.push(`${fmtInt(w.draining)} draining`);
  if (w.dead) workerNotes.push(`${fmtInt(w.dead)} dead`);
  setCard("card-workers", {
    value: `${fmtInt(w.alive)} / ${fmtInt(w.busy)}`,
    raw: w.alive,
    sub: workerNotes.join(" · "),
    level: !w.alive ? "bad" : w.dead ? "warn" : "",
  });

  const depth = st.queue_depth;
  const cap = st.max_queue_size;
  setCard("card-queue", {
    value: fmtInt(depth),
    raw: depth,
    sub: `of ${fmtInt(cap)} · ${fmtInt(st.in_flight)} in flight`,
    level: isNum(depth) && isNum(cap) && cap > 0 && depth >= cap * 0.5 ? "warn" : "",
  });

  const rates = st.rates || {};
  const windowText = `last ${fmtInt(rates.window_s)} s`;
  setCard("card-rps", { value: fmtNum(rates.requests_per_s, 2), raw: rates.requests_per_s, sub: windowText });

  // total = ok + client errors + service errors + retries + in progress (broker/counters.py).
  const req = st.requests || {};
  const parts = [`${fmtInt(req.success)} ok`, `${fmtInt(req.client_errors)} client errors`];
  parts.push(`${fmtInt(req.service_errors)} service errors`);
  if (req.retries) parts.push(`${fmtInt(req.retries)} retries`);
  if (req.in_progress) parts.push(`${fmtInt(req.in_progress)} in progress`);
  setCard("card-requests-total", {
    value: fmtInt(req.total),
    raw: req.total,
    sub: parts.join(" · "),
    level: req.service_errors ? "warn" : "",
  });
  const card = byTestId("card-requests-total");
  for (const key of ["success", "client_errors", "service_errors", "retries", "in_progress"]) {
    card.dataset[key.replace(/_(\w)/g, (_m, c) => c.toUpperCase())] = String(req[key] ?? "");
  }

  const er = rates.error_rate;
  setCard("card-error-rate", {
    value: fmtPct(er),
    raw: er,
    sub: isNum(er) ? windowText : `no requests in the ${windowText}`,
    level: isNum(er) && er >= 0.2 ? "bad" : isNum(er) && er > 0 ? "warn" : "",
  });

  setCard("card-p95", {
    value: isNum(rates.p95_ms) ? `${fmtMs(rates.p95_ms)} ms` : "–",
    raw: rates.p95_ms,
    sub: isNum(rates.p95_ms) ? `p50 ${fmtMs(rates.p50_ms)} · p99 ${fmtMs(rates.p99_ms)} ms` : `no requests in the ${windowText}`,
  });

  const cache = st.cache || {};
  setCard("card-cache-hit-rate", {
    value: fmtPct(cache.hit_rate),
    raw: cache.hit_rate,
    sub: isNum(cache.hit_rate) ? `${fmtInt(cache.hits)} hits · ${fmtInt(cache.misses)} misses` : "no cache lookups yet",
  });

  // Each process measures itself (monitoring/process_stats.py); alerts at 80 % / 85 %.
  const proc = st.process || {};
  setCard("card-broker-process", {
    value: fmtProcPct(proc.cpu_percent),
    raw: proc.cpu_percent,
    sub: isNum(proc.memory_percent) ? `memory ${fmtProcPct(proc.memory_percent)} · ${fmtMiB(proc.rss_bytes)}` : "memory not measured here",
    level: procLevel(proc),
  });
}

function procLevel(proc) {
  if (!proc) return "";
  return proc.memory_percent > 85 || proc.cpu_percent > 80 ? "bad" : "";
}

// --- workers --------------------------------------------------------------------------------

const STATE_ORDER = { busy: 0, idle: 1, draining: 2, dead: 3 };

function renderWorkers(data) {
  const workers = [...(data.workers || [])].sort(
    (a, b) => (STATE_ORDER[a.state] ?? 9) - (STATE_ORDER[b.state] ?? 9) || String(a.worker_id).localeCompare(String(b.worker_id)),
  );
  const dead = workers.filter((w) => w.state === "dead").length;
  $("#workers-count").textContent = `${fmtInt(data.alive)} alive` + (dead ? ` · ${dead} dead (kept 10 min)` : "");
  renderRows(
    $("#workers-table"),
    workers,
    (w) => [w.worker_id, w.pid, w.registered_at, w.state, w.ended_at].join("|"),
    (w) => {
      const stateChildren = [el("span", { className: `state state-${w.state}`, text: w.state })];
      if (w.state === "dead") {
        const why = [w.end_reason, w.ended_at && `at ${fmtClock(w.ended_at)}`].filter(Boolean).join(" ");
        if (why) stateChildren.push(el("span", { className: "end-reason", text: why }));
      }
      const current = w.current_method ? `${w.current_method} (${fmtAge(w.current_age_s)})` : "–";
      const gone = w.state === "dead";
      return [
        cell(w.worker_id, "mono"),
        cell(w.host ?? "–"),
        cell(w.pid ?? "–", "num"),
        cellWith("state-cell", stateChildren),
        cell(gone ? "–" : fmtAge(w.heartbeat_age_s), "num"),
        cell(fmtInt(w.served), "num"),
        // The worker's own failures; clients' mistakes (INVALID_PARAMS, ...) are apart.
        cell(fmtInt(w.failed), w.failed ? "num bad" : "num"),
        cell(fmtInt(w.client_errors), "num"),
        cell(gone ? "–" : fmtProcPct((w.process || {}).cpu_percent), "num"),
        cell(gone ? "–" : fmtProcPct((w.process || {}).memory_percent), "num"),
        cell(current, "mono"),
        cell(fmtDateTime(w.started_at || w.registered_at)),
      ];
    },
    (w) => ({ testid: "worker-row", state: w.state, pid: w.pid ?? "", workerId: w.worker_id }),
    "no workers registered",
    12,
  );
}

// --- methods and model ----------------------------------------------------------------------

function renderMethods(data) {
  const methods = [...(data.methods || [])].sort((a, b) => (b.count || 0) - (a.count || 0) || String(a.method).localeCompare(b.method));
  $("#methods-window").textContent = isNum(data.window_s) ? `last ${fmtWindow(data.window_s)}` : "";
  renderRows(
    $("#methods-table"),
    methods,
    (m) => m.method,
    (m) => [
      cell(m.method, "mono"),
      cell(fmtInt(m.count), "num"),
      cell(fmtInt(m.errors), "num"),
      cell(fmtPct(m.error_rate), "num"),
      cell(fmtMs(m.p50_ms), "num"),
      cell(fmtMs(m.p95_ms), "num"),
      cell(fmtMs(m.p99_ms), "num"),
    ],
    (m) => ({ method: m.method }),
    "no requests in the window",
    7,
  );
}

export function renderModel(data) {
  const items = data.calibrations || [];
  $("#model-note").textContent = `${items.length} stored calibration${items.length === 1 ? "" : "s"}`;
  renderRows(
    $("#model-table"),
    items,
    (c) => `${c.market}/${c.fit_day}/${c.source}`,
    (c) => {
      const ic = c.ic || {};
      const top = Object.entries(c.weights || {})
        .sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]))
        .slice(0, 3)
        .map(([name, w]) => {
          const rec = ic[name] || {};
          const icText = isNum(rec.mean) ? ` (${rec.mean >= 0 ? "+" : ""}${fmtNum(rec.mean, 3)})` : "";
          return `${name} ${w >= 0 ? "+" : ""}${fmtNum(w, 3)}${icText}`;
        })
        .join(", ");
      return [
        cell(String(c.market).toUpperCase()),
        cell(c.fit_day, "mono"),
        cell((c.window || []).join(" .. "), "mono"),
        cell(fmtInt(c.months), "num"),
        cell(isNum(c.drift) ? fmtNum(c.drift, 3) : "–", "num"),
        cell(top || c.status, "wrap"),
        cell(c.source, "mono"),
      ];
    },
    (c) => ({ market: c.market }),
    "no stored calibration: decisions use walk-forward fits",
    7,
  );
}

// --- recent requests and failures -----------------------------------------------------------

function renderRecent(items) {
  renderRows(
    $("#recent-requests"),
    items || [],
    (r) => r.request_id,
    (r) => [
      cell(fmtClock(r.created_at)),
      cellWith("mono", [requestLink(r)]),
      cell(r.status, `status-${r.status === "success" ? "success" : "error"}`),
      cell(fmtMs(r.processing_time_ms), "num"),
      cell(r.client_id ?? "–", "mono"),
      cell(r.worker_id ?? "–", "mono"),
    ],
    (r) => ({ testid: "request-row", status: r.status, requestId: r.request_id }),
    "no requests yet",
    6,
  );
}

// One row per error code: how often, client's or service's, and the latest example.
function renderFailureGroups(groups) {
  const list = groups || [];
  const client = list.filter((g) => g.kind === "client").reduce((n, g) => n + g.count, 0);
  const service = list.filter((g) => g.kind === "service").reduce((n, g) => n + g.count, 0);
  $("#failures-count").textContent = list.length ? `${fmtInt(service)} service · ${fmtInt(client)} client` : "";
  renderRows(
    $("#recent-failures"),
    list,
    (g) => g.error_code,
    (g) => {
      const latest = g.latest || {};
      const error = el("div", { className: "err" }, [
        el("span", { className: "err-code", text: g.error_code }),
        el("span", { className: `kind kind-${g.kind}`, text: g.kind === "client" ? "client" : "service" }),
        latest.error_message && el("span", { className: "err-msg", title: latest.error_message, text: latest.error_message }),
      ]);
      return [
        cell(fmtInt(g.count), "num count-cell"),
        cellWith("wrap", [error]),
        cellWith("mono", latest.request_id ? [requestLink(latest)] : []),
        cell(fmtClock(g.last_at)),
      ];
    },
    (g) => ({
      testid: "failure-row",
      errorCode: g.error_code,
      kind: g.kind,
      count: g.count,
      requestId: (g.latest || {}).request_id || "",
    }),
    "no failures",
    4,
  );
}

function renderRunningJobs(jobs) {
  const active = (jobs || []).filter((j) => j.state === "running" || j.state === "queued");
  active.sort((a, b) => (a.state === "running" ? 0 : 1) - (b.state === "running" ? 0 : 1) || String(a.created_at).localeCompare(String(b.created_at)));
  const box = $("#jobs");
  $("#jobs-count").textContent = active.length
    ? `${active.filter((j) => j.state === "running").length} running · ${active.filter((j) => j.state === "queued").length} queued`
    : "";
  if (!active.length) {
    box.replaceChildren(el("p", { className: "jobs-empty", text: "no running or queued jobs (history: Jobs page)" }));
    return;
  }
  box.replaceChildren(
    ...active.map((j) => {
      const pct = isNum(j.progress) ? j.progress : 0;
      const stage = [j.stage, describeDetail(j.detail, j.stage)].filter(Boolean).join(" · ");
      const timing = [j.elapsed_s !== null && j.elapsed_s !== undefined ? `${fmtDuration(j.elapsed_s)} elapsed` : "", isNum(j.eta_s) ? `ETA ${fmtDuration(j.eta_s)}` : ""].filter(Boolean).join(" · ");
      return el("div", { className: "job", dataset: { testid: "job", state: j.state, jobId: j.job_id } }, [
        el("div", { className: "job-head" }, [
          el("a", { className: "job-id", href: `#/jobs/${encodeURIComponent(j.job_id)}`, text: j.job_id }),
          el("span", { className: "job-meta", text: `${j.method} · ${j.state} · ${Math.round(pct)}%` + (j.worker_id ? ` · ${j.worker_id}` : "") }),
        ]),
        progressBar(pct),
        el("span", { className: "job-meta", text: [stage || (j.state === "queued" ? "waiting for a worker" : ""), timing].filter(Boolean).join(" · ") }),
      ]);
    }),
  );
}

// A job's detail is free text or, for multi-agent analyses, {roles: {role: state}}.
export function describeDetail(detail, stage) {
  if (detail === null || detail === undefined || detail === "") return "";
  if (typeof detail !== "object") return String(detail);
  if (detail.roles && typeof detail.roles === "object") {
    const roles = Object.entries(detail.roles);
    const done = roles.filter(([, st]) => st === "done").length;
    const running = roles.filter(([name, st]) => st === "running" && name !== stage).map(([name]) => name);
    return `${done}/${roles.length} roles done` + (running.length ? ` · ${running.join(", ")}` : "");
  }
  return JSON.stringify(detail);
}

// --- charts ---------------------------------------------------------------------------------

const series = new Map(); // unix second -> point
let seriesEnd = 0;

function mergePoints(points) {
  for (const p of points || []) {
    if (!p || !isNum(p.t)) continue;
    series.set(p.t, p);
    if (p.t > seriesEnd) seriesEnd = p.t;
  }
  const cutoff = seriesEnd - CHART_WINDOW_S - 2;
  for (const t of series.keys()) if (t < cutoff) series.delete(t);
}

const fmtAxis = (v) => (v >= 1000 ? `${Math.round(v / 100) / 10}k` : String(+v.toFixed(2)));
const source = () => ({ series, end: seriesEnd });
const charts = [
  new TimeChart(byTestId("chart-throughput"), {
    lines: [
      { key: "requests", colorVar: "--series-requests", label: "req", fill: true },
      { key: "errors", colorVar: "--series-errors", label: "err" },
    ],
    unit: "req/s",
    minMax: 1,
    latestKey: "requests",
    fmt: fmtAxis,
    source,
    windowS: CHART_WINDOW_S,
  }),
  new TimeChart(byTestId("chart-latency"), {
    lines: [
      { key: "p50_ms", colorVar: "--series-p50", label: "p50", breakOnGap: true },
      { key: "p95_ms", colorVar: "--series-p95", label: "p95", breakOnGap: true },
    ],
    unit: "ms",
    minMax: 1,
    latestKey: "p95_ms",
    fmt: fmtAxis,
    source,
    windowS: CHART_WINDOW_S,
  }),
];

let drawQueued = false;
export function redrawCharts() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    const palette = readPalette();
    for (const c of charts) c.draw(palette);
  });
}

let lastHistoryAt = 0;
async function loadHistory() {
  lastHistoryAt = Date.now();
  const ts = await api("api/timeseries");
  mergePoints(ts.points);
  redrawCharts();
}

// --- live connection and the disconnected state ---------------------------------------------

let source_ = null;
let lastSnapshotAt = 0;
let reconnectTimer = null;
let reconnectDelay = 1000;
let needsResync = false;
let lostSince = 0; // when the last update arrived before the link was lost; 0 while live
let lostReason = "";
let lastReconnectAt = 0;

function setLive(state, text) {
  const ind = $("#live-indicator");
  ind.dataset.state = state;
  ind.querySelector(".live-text").textContent = text || state;
}

// Counters for whoever looks from devtools or a test: how many snapshots and their JS cost.
const stats = { snapshots: 0, applyMs: 0, lastApplyMs: 0 };
window.tacoreDashboard = { stats };

// The service stopped answering: unmistakable, not a small label. The figures stay for
// reference, greyed out, and the banner says since when.
function markLost(reason) {
  if (!lostSince) lostSince = lastSnapshotAt || Date.now();
  lostReason = reason;
  document.body.dataset.connection = "lost";
  const badge = $("#service-status");
  badge.dataset.state = "disconnected";
  badge.textContent = reason === "broker not responding" ? "broker not responding" : "disconnected";
  setLive("reconnecting", "reconnecting");
  $("#disconnected").hidden = false;
  tickLost();
}

function markLive() {
  if (!lostSince) return;
  lostSince = 0;
  lostReason = "";
  document.body.dataset.connection = "live";
  $("#disconnected").hidden = true;
}

function tickLost() {
  const ago = lastSnapshotAt ? (Date.now() - lastSnapshotAt) / 1000 : null;
  $("#last-update").textContent = lastSnapshotAt ? `updated ${fmtClock(lastSnapshotAt / 1000)}` + (ago >= 3 ? ` (${fmtDuration(ago)} ago)` : "") : "";
  if (!lostSince) return;
  const banner = $("#disconnected");
  const since = lastSnapshotAt ? `since ${fmtClock(lastSnapshotAt / 1000)}, ${fmtDuration(ago)} ago` : "since the page loaded";
  banner.querySelector(".why").textContent = lostReason === "broker not responding" ? "The broker is not responding" : "Disconnected from the service";
  banner.querySelector(".since").textContent = `No update ${since}. The figures below are the last ones received; retrying.`;
  banner.dataset.secondsAgo = ago === null ? "" : String(Math.floor(ago));
}

function applySnapshot(snap) {
  const started = performance.now();
  if (snap.status) renderStatus(snap.status);
  if (snap.workers) renderWorkers(snap.workers);
  if (snap.methods) renderMethods(snap.methods);
  if (snap.recent_requests) renderRecent(snap.recent_requests);
  if (snap.failure_groups) renderFailureGroups(snap.failure_groups);
  if (snap.jobs) renderRunningJobs(snap.jobs);
  if (snap.point) {
    const gap = seriesEnd && snap.point.t - seriesEnd > 1;
    mergePoints([snap.point]);
    redrawCharts();
    if (gap || Date.now() - lastHistoryAt > HISTORY_REFRESH_MS) loadHistory().catch(() => {});
  }
  lastSnapshotAt = Date.now();
  tickLost();
  stats.snapshots += 1;
  stats.lastApplyMs = performance.now() - started;
  stats.applyMs += stats.lastApplyMs;
}

function connect() {
  if (source_) source_.close();
  clearTimeout(reconnectTimer);
  const token = getToken();
  const es = new EventSource(token ? `api/events?token=${encodeURIComponent(token)}` : "api/events");
  source_ = es;
  es.addEventListener("open", () => {
    reconnectDelay = 1000;
  });
  es.addEventListener("snapshot", (ev) => {
    let snap;
    try {
      snap = JSON.parse(ev.data);
    } catch {
      return;
    }
    setLive("live", "live");
    markLive();
    applySnapshot(snap);
    if (needsResync) {
      // Seconds missed while disconnected come back from the stored series.
      needsResync = false;
      loadHistory().catch(() => {});
    }
  });
  // The API process is up but the broker loop did not answer in time.
  es.addEventListener("unavailable", (ev) => {
    markLost("broker not responding");
    $("#service-status").title = ev.data ? String(JSON.parse(ev.data)) : "";
  });
  es.addEventListener("error", () => {
    if (source_ !== es) return;
    needsResync = true;
    markLost("disconnected");
    // CONNECTING: the browser retries by itself. CLOSED: the server answered with an error
    // (401, 5xx); find out which and retry with back-off.
    if (es.readyState === EventSource.CLOSED) scheduleReconnect();
  });
}

function scheduleReconnect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(async () => {
    try {
      await api("api/status");
      connect();
    } catch (err) {
      if (!(err instanceof Unauthorized)) scheduleReconnect();
    }
  }, reconnectDelay);
  reconnectDelay = Math.min(reconnectDelay * 2, 10000);
}

setInterval(() => {
  tickLost();
  if (!source_ || !lastSnapshotAt) return;
  const quiet = Date.now() - lastSnapshotAt;
  if (quiet > RECONNECT_AFTER_MS && Date.now() - lastReconnectAt > RECONNECT_AFTER_MS) {
    lastReconnectAt = Date.now();
    needsResync = true;
    connect();
  }
  if (quiet > STALE_AFTER_MS) markLost(lostReason || "disconnected");
}, 1000);

export function stopLive() {
  if (source_) source_.close();
  source_ = null;
  clearTimeout(reconnectTimer);
}

// First load: everything at once, then the live stream. Throws Unauthorized for app.js.
export async function startOps() {
  setLive("connecting", "connecting");
  try {
    const [status, workers, methods, timeseries, recent, failures, running, queued] = await Promise.all([
      api("api/status"),
      api("api/workers"),
      api("methods"),
      api("api/timeseries"),
      api("api/logs?limit=20"),
      api("api/failures"),
      api("api/jobs?state=running&limit=20"),
      api("api/jobs?state=queued&limit=20"),
    ]);
    lastHistoryAt = Date.now();
    mergePoints(timeseries.points);
    applySnapshot({
      status,
      workers,
      methods,
      recent_requests: recent.items,
      failure_groups: failures.groups,
      jobs: [...running.jobs, ...queued.jobs],
    });
    redrawCharts();
    connect();
    // Calibrations change only when someone runs `tacore calibrate`: read once.
    api("api/model").then(renderModel).catch(() => {});
  } catch (err) {
    if (err instanceof Unauthorized) throw err;
    markLost("disconnected");
    $("#service-status").textContent = "unreachable";
    setTimeout(() => startOps().catch(() => {}), 3000);
  }
}

window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redrawCharts);
