// TACoreService dashboard: plain JavaScript, no build step, no third-party code.
//
// Loads the current state from the monitoring API once, then follows the `snapshot` events of
// /api/events (server-sent events, one a second). Every string from the service is inserted
// with textContent, never as markup.
"use strict";

(() => {
  const TOKEN_KEY = "tacore.apiToken";
  const CHART_WINDOW_S = 900;
  // A snapshot arrives every second; after this long without one the link is presumed dead
  // even if the socket has not noticed (a hung broker keeps the TCP connection open).
  const STALE_AFTER_MS = 5000;
  const RECONNECT_AFTER_MS = 10000;
  // Each snapshot carries the newest closed second only; a late snapshot skips one, which a gap
  // check repairs at once, and this periodic re-read keeps the charts equal to the server's.
  const HISTORY_REFRESH_MS = 30000;

  const $ = (sel) => document.querySelector(sel);
  const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);

  // --- API access -------------------------------------------------------------------------

  class Unauthorized extends Error {}

  let token = takeToken();

  function takeToken() {
    // A ?token= in the page address (the API accepts it on `/`) is moved into sessionStorage and
    // removed from the address bar so it does not end up in history or screenshots.
    const url = new URL(window.location.href);
    const fromUrl = url.searchParams.get("token");
    if (fromUrl) {
      sessionStorage.setItem(TOKEN_KEY, fromUrl);
      url.searchParams.delete("token");
      history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  async function api(path) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(path, { headers, cache: "no-store" });
    if (res.status === 401) throw new Unauthorized(path);
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
    return res.json();
  }

  // --- formatting ---------------------------------------------------------------------------

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);

  function fmtInt(v) {
    return isNum(v) ? Math.round(v).toLocaleString("en-US") : "–";
  }

  function fmtNum(v, digits = 1) {
    if (!isNum(v)) return "–";
    if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
    return v.toFixed(Math.abs(v) < 10 ? Math.max(digits, 1) : digits);
  }

  function fmtPct(ratio) {
    if (!isNum(ratio)) return "–";
    const pct = ratio * 100;
    return `${pct < 10 && pct !== 0 ? pct.toFixed(1) : Math.round(pct)}%`;
  }

  function fmtMs(v) {
    if (!isNum(v)) return "–";
    if (v < 1) return v.toFixed(2);
    return v < 10 ? v.toFixed(1) : Math.round(v).toLocaleString("en-US");
  }

  function fmtDuration(seconds) {
    if (!isNum(seconds)) return "–";
    const s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s % 60}s`;
    return `${s}s`;
  }

  function fmtWindow(seconds) {
    if (!isNum(seconds)) return "";
    return seconds % 60 === 0 ? `${seconds / 60} min` : `${Math.round(seconds)} s`;
  }

  function fmtAge(seconds) {
    if (!isNum(seconds)) return "–";
    return seconds < 60 ? `${seconds.toFixed(1)}s` : fmtDuration(seconds);
  }

  // Timestamps arrive as unix seconds or ISO-8601 strings; SQLite-style strings without a zone
  // are UTC by the API contract.
  function toDate(ts) {
    if (ts === null || ts === undefined || ts === "") return null;
    if (isNum(ts)) return new Date(ts * 1000);
    let s = String(ts).trim().replace(" ", "T");
    if (!/[zZ]|[+-]\d\d:?\d\d$/.test(s)) s += "Z";
    const d = new Date(s);
    return Number.isNaN(d.getTime()) ? null : d;
  }

  const pad2 = (n) => String(n).padStart(2, "0");

  function fmtClock(ts) {
    const d = toDate(ts);
    if (!d) return "–";
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }

  function fmtDateTime(ts) {
    const d = toDate(ts);
    if (!d) return "–";
    const sameDay = d.toDateString() === new Date().toDateString();
    const day = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} `;
    return (sameDay ? "" : day) + fmtClock(ts);
  }

  // --- DOM helpers --------------------------------------------------------------------------

  function el(tag, props = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function setCard(testId, { value, raw, sub = "", level = "" }) {
    const card = byTestId(testId);
    card.querySelector(".value").textContent = value;
    card.querySelector(".sub").textContent = sub;
    card.dataset.value = raw === null || raw === undefined ? "" : String(raw);
    card.dataset.level = level;
  }

  // Rebuilds a table body from `items`, one <tr> per item, keeping rows whose content did not
  // change so a row under the pointer or a text selection is not thrown away every second.
  function renderRows(table, items, keyOf, cellsOf, rowAttrs, emptyText, colspan) {
    const tbody = table.tBodies[0];
    if (!items.length) {
      tbody.replaceChildren(
        el("tr", { className: "empty" }, [el("td", { colspan, text: emptyText })]),
      );
      return;
    }
    const old = new Map();
    for (const tr of tbody.rows) if (tr.dataset.key) old.set(tr.dataset.key, tr);
    const rows = items.map((item) => {
      const cells = cellsOf(item);
      const attrs = rowAttrs(item);
      const signature = JSON.stringify([attrs, cells.map((c) => c.sig)]);
      const key = String(keyOf(item));
      const prev = old.get(key);
      old.delete(key); // a duplicate key must not move the same <tr> twice
      if (prev && prev.dataset.sig === signature) return prev;
      const tr = el("tr", { dataset: { ...attrs, key, sig: signature } }, cells.map((c) => c.td));
      return tr;
    });
    tbody.replaceChildren(...rows);
  }

  // A table cell plus a signature of what it shows (for renderRows' change detection).
  function cell(text, className, extra) {
    const td = el("td", { className, text });
    if (extra) td.append(extra);
    return { td, sig: [text, className, extra ? extra.textContent : ""] };
  }

  function cellWith(className, children) {
    const td = el("td", { className }, children);
    return { td, sig: [className, td.textContent] };
  }

  // --- overview -----------------------------------------------------------------------------

  function renderStatus(st) {
    $("#service-meta").textContent = [st.version && `v${st.version}`, st.host]
      .filter(Boolean)
      .join(" · ");
    const badge = $("#service-status");
    badge.textContent = st.status || "unknown";
    badge.dataset.state = st.status || "unknown";
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
    setCard("card-rps", {
      value: fmtNum(rates.requests_per_s, 2),
      raw: rates.requests_per_s,
      sub: windowText,
    });

    const req = st.requests || {};
    setCard("card-requests-total", {
      value: fmtInt(req.total),
      raw: req.total,
      sub: `${fmtInt(req.success)} ok · ${fmtInt(req.error)} errors`,
    });

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
      sub: isNum(rates.p95_ms)
        ? `p50 ${fmtMs(rates.p50_ms)} · p99 ${fmtMs(rates.p99_ms)} ms`
        : `no requests in the ${windowText}`,
    });

    const cache = st.cache || {};
    setCard("card-cache-hit-rate", {
      value: fmtPct(cache.hit_rate),
      raw: cache.hit_rate,
      sub: isNum(cache.hit_rate)
        ? `${fmtInt(cache.hits)} hits · ${fmtInt(cache.misses)} misses`
        : "no cache lookups yet",
    });

    // Each process measures itself (monitoring/process_stats.py); alerts at 80 % / 85 %.
    const proc = st.process || {};
    setCard("card-broker-process", {
      value: fmtProcPct(proc.cpu_percent),
      raw: proc.cpu_percent,
      sub: isNum(proc.memory_percent)
        ? `memory ${fmtProcPct(proc.memory_percent)} · ${fmtMiB(proc.rss_bytes)}`
        : "memory not measured here",
      level: procLevel(proc),
    });
  }

  // cpu_percent and memory_percent are already percentages (of one core, of the memory limit).
  function fmtProcPct(v) {
    return isNum(v) ? `${v < 10 ? v.toFixed(1) : Math.round(v)}%` : "–";
  }

  function fmtMiB(bytes) {
    return `${fmtNum(bytes / 1048576, 0)} MiB`;
  }

  function procLevel(proc) {
    if (!proc) return "";
    if (proc.memory_percent > 85 || proc.cpu_percent > 80) return "bad";
    return "";
  }

  // --- workers ------------------------------------------------------------------------------

  const STATE_ORDER = { busy: 0, idle: 1, draining: 2, dead: 3 };

  function renderWorkers(data) {
    const workers = [...(data.workers || [])].sort(
      (a, b) =>
        (STATE_ORDER[a.state] ?? 9) - (STATE_ORDER[b.state] ?? 9) ||
        String(a.worker_id).localeCompare(String(b.worker_id)),
    );
    const dead = workers.filter((w) => w.state === "dead").length;
    $("#workers-count").textContent =
      `${fmtInt(data.alive)} alive` + (dead ? ` · ${dead} dead (kept 10 min)` : "");
    renderRows(
      $("#workers-table"),
      workers,
      (w) => [w.worker_id, w.pid, w.registered_at, w.state, w.ended_at].join("|"),
      (w) => {
        const badge = el("span", { className: `state state-${w.state}`, text: w.state });
        const stateChildren = [badge];
        if (w.state === "dead") {
          const why = [w.end_reason, w.ended_at && `at ${fmtClock(w.ended_at)}`]
            .filter(Boolean)
            .join(" ");
          if (why) stateChildren.push(el("span", { className: "end-reason", text: why }));
        }
        const current = w.current_method
          ? `${w.current_method} (${fmtAge(w.current_age_s)})`
          : "–";
        return [
          cell(w.worker_id, "mono"),
          cell(w.host ?? "–"),
          cell(w.pid ?? "–", "num"),
          cellWith("state-cell", stateChildren),
          cell(w.state === "dead" ? "–" : fmtAge(w.heartbeat_age_s), "num"),
          cell(fmtInt(w.served), "num"),
          cell(fmtInt(w.failed), "num"),
          cell(w.state === "dead" ? "–" : fmtProcPct((w.process || {}).cpu_percent), "num"),
          cell(w.state === "dead" ? "–" : fmtProcPct((w.process || {}).memory_percent), "num"),
          cell(current, "mono"),
          cell(fmtDateTime(w.started_at || w.registered_at)),
        ];
      },
      (w) => ({
        testid: "worker-row",
        state: w.state,
        pid: w.pid ?? "",
        workerId: w.worker_id,
      }),
      "no workers registered",
      11,
    );
  }

  // --- methods ------------------------------------------------------------------------------

  function renderMethods(data) {
    const methods = [...(data.methods || [])].sort(
      (a, b) => (b.count || 0) - (a.count || 0) || String(a.method).localeCompare(b.method),
    );
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

  // --- model calibration ---------------------------------------------------------------------

  function renderModel(data) {
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
          cell(top || c.status),
          cell(c.source, "mono"),
        ];
      },
      (c) => ({ market: c.market }),
      "no stored calibration: decisions use walk-forward fits",
      7,
    );
  }

  // --- recent requests and failures ---------------------------------------------------------

  const logUrl = (requestId) => `api/logs/${encodeURIComponent(requestId)}`;

  function requestLink(item) {
    const text = item.method || item.request_id;
    return el("a", {
      href: logUrl(item.request_id),
      className: "req-link",
      title: `${item.method} · request ${item.request_id}`,
      dataset: { requestId: item.request_id },
      text,
    });
  }

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
        cell(r.worker_id ?? "–", "mono"),
      ],
      (r) => ({ testid: "request-row", status: r.status, requestId: r.request_id }),
      "no requests yet",
      5,
    );
  }

  function renderFailures(items) {
    renderRows(
      $("#recent-failures"),
      items || [],
      (r) => r.request_id,
      (r) => {
        // Table cells ignore min-width, so the wrapping message gets a box of its own.
        const error = el("div", { className: "err" }, [
          el("span", { className: "err-code", text: r.error_code || "ERROR" }),
          r.error_message &&
            el("span", { className: "err-msg", title: r.error_message, text: r.error_message }),
        ]);
        return [
          cell(fmtClock(r.created_at)),
          cellWith("mono", [requestLink(r)]),
          cellWith("wrap", [error]),
          cell(fmtMs(r.processing_time_ms), "num"),
          cell(r.worker_id ?? "–", "mono"),
        ];
      },
      (r) => ({ testid: "failure-row", errorCode: r.error_code || "", requestId: r.request_id }),
      "no failures",
      5,
    );
  }

  let detailBlobUrl = null;

  async function showDetail(requestId) {
    const panel = $("#detail");
    const body = $("#detail-body");
    const raw = $("#detail-raw");
    $("#detail-id").textContent = requestId;
    if (detailBlobUrl) URL.revokeObjectURL(detailBlobUrl);
    detailBlobUrl = null;
    raw.href = logUrl(requestId);
    body.textContent = "loading…";
    panel.hidden = false;
    try {
      const item = await api(logUrl(requestId));
      const text = JSON.stringify(item, null, 2);
      body.textContent = text;
      panel.dataset.loaded = requestId;
      // The raw link opens what was fetched: a new tab could not send the Bearer header.
      detailBlobUrl = URL.createObjectURL(new Blob([text], { type: "application/json" }));
      raw.href = detailBlobUrl;
    } catch (err) {
      if (err instanceof Unauthorized) askForToken();
      body.textContent = `could not load the request: ${err.message}`;
    }
    panel.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  document.addEventListener("click", (ev) => {
    const link = ev.target.closest("a.req-link");
    // Modified clicks keep their usual meaning (open the raw JSON in a new tab).
    if (!link || ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
    ev.preventDefault();
    showDetail(link.dataset.requestId);
  });

  // --- jobs ---------------------------------------------------------------------------------

  // A job's detail is free text or, for multi-agent analyses, {roles: {role: state}}.
  function describeDetail(detail, stage) {
    if (detail === null || detail === undefined || detail === "") return "";
    if (typeof detail !== "object") return String(detail);
    if (detail.roles && typeof detail.roles === "object") {
      const roles = Object.entries(detail.roles);
      const done = roles.filter(([, st]) => st === "done").length;
      const running = roles
        .filter(([name, st]) => st === "running" && name !== stage)
        .map(([name]) => name);
      return `${done}/${roles.length} roles done` + (running.length ? ` · ${running.join(", ")}` : "");
    }
    return JSON.stringify(detail);
  }

  function renderJobs(jobs) {
    const active = (jobs || []).filter((j) => j.state === "running" || j.state === "queued");
    active.sort(
      (a, b) =>
        (a.state === "running" ? 0 : 1) - (b.state === "running" ? 0 : 1) ||
        String(a.created_at).localeCompare(String(b.created_at)),
    );
    const box = $("#jobs");
    $("#jobs-count").textContent = active.length
      ? `${active.filter((j) => j.state === "running").length} running · ` +
        `${active.filter((j) => j.state === "queued").length} queued`
      : "";
    if (!active.length) {
      box.replaceChildren(el("p", { className: "jobs-empty", text: "no running or queued jobs" }));
      return;
    }
    box.replaceChildren(
      ...active.map((j) => {
        const pct = Math.max(0, Math.min(100, isNum(j.progress) ? j.progress : 0));
        const fill = el("span");
        fill.style.width = `${pct}%`;
        const bar = el(
          "div",
          {
            className: "bar",
            role: "progressbar",
            "aria-valuemin": 0,
            "aria-valuemax": 100,
            "aria-valuenow": Math.round(pct),
          },
          [fill],
        );
        const stage = [j.stage, describeDetail(j.detail, j.stage)].filter(Boolean).join(" · ");
        const dataset = { testid: "job", state: j.state, jobId: j.job_id };
        return el("div", { className: "job", dataset }, [
          el("div", { className: "job-head" }, [
            el("span", {}, [
              el("span", { className: "job-id", text: j.job_id }),
              el("span", { className: "job-meta", text: `  ${j.method}` }),
            ]),
            el("span", {
              className: "job-meta",
              text: `${j.state} · ${Math.round(pct)}%` + (j.worker_id ? ` · ${j.worker_id}` : ""),
            }),
          ]),
          bar,
          el("span", {
            className: "job-meta",
            text: stage || (j.state === "queued" ? "waiting for a worker" : ""),
          }),
        ]);
      }),
    );
  }

  // --- charts -------------------------------------------------------------------------------

  // Points by unix second, for both charts. The right edge of the charts is the newest second
  // the server reported, so a browser clock that is off does not shift the data.
  const series = new Map();
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

  function niceStep(raw) {
    const exp = 10 ** Math.floor(Math.log10(raw));
    const f = raw / exp;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * exp;
  }

  // One style read per redraw: the palette changes only with the colour scheme.
  function readPalette() {
    const style = getComputedStyle(document.documentElement);
    return (name) => style.getPropertyValue(name).trim();
  }

  class TimeChart {
    // lines: [{key, colorVar, label, fill?}], `value(point, key)` gives the number or null.
    constructor(figure, { lines, unit, minMax, latestKey, fmt }) {
      this.figure = figure;
      this.canvas = figure.querySelector("canvas");
      this.lines = lines;
      this.unit = unit;
      this.minMax = minMax;
      this.latestKey = latestKey;
      this.fmt = fmt;
      this.hoverX = null;
      new ResizeObserver(() => this.draw()).observe(this.canvas.parentElement);
      this.canvas.addEventListener("pointermove", (ev) => {
        this.hoverX = ev.offsetX;
        this.draw();
      });
      this.canvas.addEventListener("pointerleave", () => {
        this.hoverX = null;
        this.draw();
      });
    }

    // Figures the test-suite (and a curious operator in devtools) can read without pixels.
    publish(points) {
      const d = this.figure.dataset;
      const key = this.latestKey;
      const values = points.map((p) => p[key]).filter(isNum);
      const last = points.length ? points[points.length - 1] : null;
      d.points = String(values.length);
      d.latest = last && isNum(last[key]) ? String(last[key]) : "";
      d.sum = String(values.reduce((a, b) => a + b, 0));
      d.max = values.length ? String(Math.max(...values)) : "";
      d.lastT = last ? String(last.t) : "";
    }

    draw(cssVar = readPalette()) {
      const box = this.canvas.parentElement;
      const w = box.clientWidth;
      const h = box.clientHeight;
      if (!w || !h) return;
      const dpr = window.devicePixelRatio || 1;
      if (this.canvas.width !== Math.round(w * dpr) || this.canvas.height !== Math.round(h * dpr)) {
        this.canvas.width = Math.round(w * dpr);
        this.canvas.height = Math.round(h * dpr);
      }
      const ctx = this.canvas.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, w, h);

      const end = seriesEnd || Math.floor(Date.now() / 1000);
      const start = end - CHART_WINDOW_S;
      const points = [...series.values()].filter((p) => p.t > start).sort((a, b) => a.t - b.t);
      this.publish(points);

      const muted = cssVar("--muted");
      const grid = cssVar("--grid");
      const font = "11px system-ui, sans-serif";
      ctx.font = font;

      let max = this.minMax;
      for (const p of points) {
        for (const line of this.lines) {
          const v = p[line.key];
          if (isNum(v) && v > max) max = v;
        }
      }
      const step = niceStep(max / 4);
      const top = Math.ceil(max / step) * step;
      const labels = [];
      for (let v = 0; v <= top + step / 2; v += step) labels.push(v);
      const labelWidth = Math.max(...labels.map((v) => ctx.measureText(this.fmt(v)).width));
      const L = Math.ceil(labelWidth) + 10;
      const R = 8;
      const T = 8;
      const B = 20;
      const pw = w - L - R;
      const ph = h - T - B;
      const x = (t) => L + ((t - start) / CHART_WINDOW_S) * pw;
      const y = (v) => T + ph - (v / top) * ph;

      // Horizontal grid and y labels.
      ctx.strokeStyle = grid;
      ctx.fillStyle = muted;
      ctx.lineWidth = 1;
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (const v of labels) {
        const yy = Math.round(y(v)) + 0.5;
        ctx.beginPath();
        ctx.moveTo(L, yy);
        ctx.lineTo(L + pw, yy);
        ctx.stroke();
        ctx.fillText(this.fmt(v), L - 6, yy);
      }
      // Time axis: minute marks every 3 min on a laptop, every 5 min on a narrow phone.
      const tickEvery = pw < 360 ? 300 : 180;
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      for (let t = Math.ceil(start / tickEvery) * tickEvery; t <= end; t += tickEvery) {
        const xx = Math.round(x(t)) + 0.5;
        ctx.beginPath();
        ctx.moveTo(xx, T);
        ctx.lineTo(xx, T + ph + 4);
        ctx.stroke();
        const d = new Date(t * 1000);
        ctx.fillText(`${pad2(d.getHours())}:${pad2(d.getMinutes())}`, xx, T + ph + 6);
      }
      ctx.save();
      ctx.textAlign = "left";
      ctx.textBaseline = "top";
      ctx.fillText(this.unit, L + 4, T + 2);
      ctx.restore();

      if (!points.length) {
        ctx.textAlign = "center";
        ctx.textBaseline = "middle";
        ctx.fillText("waiting for data…", L + pw / 2, T + ph / 2);
        return;
      }

      // Series; a null value (no request in that second) breaks a latency line.
      ctx.save();
      ctx.beginPath();
      ctx.rect(L, T - 1, pw + 1, ph + 2);
      ctx.clip();
      for (const line of this.lines) {
        const color = cssVar(line.colorVar);
        const runs = [];
        let run = [];
        let prevT = null;
        for (const p of points) {
          const v = p[line.key];
          if (!isNum(v) || (prevT !== null && p.t - prevT > 2 && line.breakOnGap)) {
            if (run.length) runs.push(run);
            run = [];
          }
          if (isNum(v)) run.push([x(p.t), y(v)]);
          prevT = p.t;
        }
        if (run.length) runs.push(run);
        for (const r of runs) {
          if (line.fill && r.length > 1) {
            ctx.beginPath();
            ctx.moveTo(r[0][0], y(0));
            for (const [px, py] of r) ctx.lineTo(px, py);
            ctx.lineTo(r[r.length - 1][0], y(0));
            ctx.closePath();
            ctx.globalAlpha = 0.15;
            ctx.fillStyle = color;
            ctx.fill();
            ctx.globalAlpha = 1;
          }
          ctx.beginPath();
          ctx.strokeStyle = color;
          ctx.lineWidth = 1.5;
          ctx.lineJoin = "round";
          r.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
          if (r.length === 1) {
            // A lone second is a dot, not an invisible zero-length line.
            ctx.arc(r[0][0], r[0][1], 1.5, 0, 2 * Math.PI);
            ctx.fillStyle = color;
            ctx.fill();
          }
          ctx.stroke();
        }
      }
      ctx.restore();

      // Hover read-out: the second under the pointer and its values.
      if (this.hoverX !== null && this.hoverX >= L && this.hoverX <= L + pw) {
        const t = Math.round(start + ((this.hoverX - L) / pw) * CHART_WINDOW_S);
        const p = series.get(t);
        ctx.strokeStyle = muted;
        ctx.beginPath();
        ctx.moveTo(Math.round(this.hoverX) + 0.5, T);
        ctx.lineTo(Math.round(this.hoverX) + 0.5, T + ph);
        ctx.stroke();
        const d = new Date(t * 1000);
        const parts = [`${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`];
        for (const line of this.lines) {
          const v = p ? p[line.key] : null;
          parts.push(`${line.label} ${isNum(v) ? this.fmt(v) : "–"}`);
        }
        const text = parts.join("  ");
        const tw = ctx.measureText(text).width + 10;
        const bx = Math.min(Math.max(L, this.hoverX - tw / 2), L + pw - tw);
        ctx.fillStyle = cssVar("--panel");
        ctx.globalAlpha = 0.9;
        ctx.fillRect(bx, T, tw, 18);
        ctx.globalAlpha = 1;
        ctx.fillStyle = cssVar("--text");
        ctx.textAlign = "left";
        ctx.textBaseline = "middle";
        ctx.fillText(text, bx + 5, T + 9);
      }
    }
  }

  const fmtAxis = (v) => (v >= 1000 ? `${Math.round(v / 100) / 10}k` : String(+v.toFixed(2)));

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
    }),
  ];

  let drawQueued = false;
  function redrawCharts() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => {
      drawQueued = false;
      const palette = readPalette();
      for (const c of charts) c.draw(palette);
    });
  }
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redrawCharts);

  let lastHistoryAt = 0;
  async function loadHistory() {
    lastHistoryAt = Date.now();
    const ts = await api("api/timeseries");
    mergePoints(ts.points);
    redrawCharts();
  }

  // --- live connection ----------------------------------------------------------------------

  let source = null;
  let lastSnapshotAt = 0;
  let reconnectTimer = null;
  let reconnectDelay = 1000;
  let needsResync = false;

  function setLive(state, text) {
    const ind = $("#live-indicator");
    ind.dataset.state = state;
    ind.querySelector(".live-text").textContent = text || state;
  }

  // Counters for whoever looks from devtools or a test: how many snapshots and their JS cost.
  const stats = { snapshots: 0, applyMs: 0, lastApplyMs: 0 };
  window.tacoreDashboard = { stats };

  function applySnapshot(snap) {
    const started = performance.now();
    if (snap.status) renderStatus(snap.status);
    if (snap.workers) renderWorkers(snap.workers);
    if (snap.methods) renderMethods(snap.methods);
    if (snap.recent_requests) renderRecent(snap.recent_requests);
    if (snap.recent_failures) renderFailures(snap.recent_failures);
    if (snap.jobs) renderJobs(snap.jobs);
    if (snap.point) {
      const gap = seriesEnd && snap.point.t - seriesEnd > 1;
      mergePoints([snap.point]);
      redrawCharts();
      if (gap || Date.now() - lastHistoryAt > HISTORY_REFRESH_MS) loadHistory().catch(() => {});
    }
    lastSnapshotAt = Date.now();
    $("#last-update").textContent = `updated ${fmtClock(lastSnapshotAt / 1000)}`;
    stats.snapshots += 1;
    stats.lastApplyMs = performance.now() - started;
    stats.applyMs += stats.lastApplyMs;
  }

  function connect() {
    if (source) source.close();
    clearTimeout(reconnectTimer);
    const url = token ? `api/events?token=${encodeURIComponent(token)}` : "api/events";
    const es = new EventSource(url);
    source = es;
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
      applySnapshot(snap);
      if (needsResync) {
        // Seconds missed while disconnected come back from the stored series.
        needsResync = false;
        loadHistory().catch(() => {});
      }
    });
    // The API process is up but the broker loop did not answer in time.
    es.addEventListener("unavailable", (ev) => {
      lastSnapshotAt = Date.now();
      setLive("reconnecting", "broker not responding");
      const badge = $("#service-status");
      badge.dataset.state = "unreachable";
      badge.textContent = "broker not responding";
      badge.title = ev.data ? String(JSON.parse(ev.data)) : "";
    });
    es.addEventListener("error", () => {
      if (source !== es) return;
      needsResync = true;
      setLive("reconnecting", "reconnecting");
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
        if (err instanceof Unauthorized) {
          askForToken();
          return;
        }
        scheduleReconnect();
      }
    }, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 10000);
  }

  setInterval(() => {
    if (!source || !lastSnapshotAt) return;
    const quiet = Date.now() - lastSnapshotAt;
    if (quiet > RECONNECT_AFTER_MS) {
      lastSnapshotAt = Date.now();
      needsResync = true;
      connect();
    } else if (quiet > STALE_AFTER_MS) {
      setLive("reconnecting", "reconnecting");
    }
  }, 1000);

  // --- token prompt -------------------------------------------------------------------------

  function askForToken(message) {
    if (source) source.close();
    source = null;
    clearTimeout(reconnectTimer);
    setLive("unauthorized", "token needed");
    const err = $("#token-error");
    err.textContent = message || "";
    err.hidden = !message;
    $("#token-panel").hidden = false;
    $("#token-input").focus();
  }

  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("#token-input").value.trim();
    if (!value) return;
    token = value;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#token-input").value = "";
    $("#token-panel").hidden = true;
    start();
  });

  $("#detail-close").addEventListener("click", () => {
    $("#detail").hidden = true;
  });

  // --- start --------------------------------------------------------------------------------

  async function start() {
    setLive("connecting", "connecting");
    try {
      const [status, workers, methods, timeseries, recent, failures, jobs] = await Promise.all([
        api("api/status"),
        api("api/workers"),
        api("methods"),
        api("api/timeseries"),
        api("api/logs?limit=20"),
        api("api/logs?status=error&limit=20"),
        api("api/jobs"),
      ]);
      lastHistoryAt = Date.now();
      mergePoints(timeseries.points);
      applySnapshot({
        status,
        workers,
        methods,
        recent_requests: recent.items,
        recent_failures: failures.items,
        jobs: jobs.jobs,
      });
      redrawCharts();
      connect();
      // Calibrations change only when someone runs `tacore calibrate`: read once.
      api("api/model").then(renderModel).catch(() => {});
    } catch (err) {
      if (err instanceof Unauthorized) {
        const hadToken = Boolean(token);
        if (hadToken) sessionStorage.removeItem(TOKEN_KEY);
        token = "";
        askForToken(hadToken ? "That token was refused; check TACORE_API_TOKEN." : "");
        return;
      }
      setLive("reconnecting", "service unreachable, retrying");
      $("#service-status").dataset.state = "unreachable";
      $("#service-status").textContent = "unreachable";
      setTimeout(start, 3000);
    }
  }

  redrawCharts();
  start();
})();
