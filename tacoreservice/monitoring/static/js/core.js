// Shared by every page of the dashboard: API access with the token, formatting, DOM helpers
// and a small Markdown renderer. Every string from the service is inserted as text
// (textContent), never as markup.

export const TOKEN_KEY = "tacore.apiToken";

export const $ = (sel, root = document) => root.querySelector(sel);
export const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);

// --- token and API --------------------------------------------------------------------------

export class Unauthorized extends Error {}

export class ApiFailure extends Error {
  constructor(path, status, code, message) {
    super(message || `${path}: HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

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

export const getToken = () => token;

export function setToken(value) {
  token = value;
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Who to tell when a call is refused for want of a token (app.js shows the prompt).
let onUnauthorized = () => {};
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

export async function api(path, { method = "GET" } = {}) {
  const headers = { Accept: "application/json" };
  const sent = token;
  if (sent) headers.Authorization = `Bearer ${sent}`;
  const res = await fetch(path, { method, headers, cache: "no-store" });
  if (res.status === 401) {
    // A late answer to a call made with a token since replaced says nothing about the new one.
    if (sent === token) onUnauthorized(path);
    throw new Unauthorized(path);
  }
  if (!res.ok) {
    let code = "";
    let message = "";
    try {
      const body = await res.json();
      code = body?.error?.code || "";
      message = body?.error?.message || "";
    } catch {
      // not JSON: keep the HTTP status
    }
    throw new ApiFailure(path, res.status, code, code ? `${code}: ${message}` : "");
  }
  return res.json();
}

// --- formatting -----------------------------------------------------------------------------

export const isNum = (v) => typeof v === "number" && Number.isFinite(v);
export const pad2 = (n) => String(n).padStart(2, "0");

export function fmtInt(v) {
  return isNum(v) ? Math.round(v).toLocaleString("en-US") : "–";
}

export function fmtNum(v, digits = 1) {
  if (!isNum(v)) return "–";
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
  return v.toFixed(Math.abs(v) < 10 ? Math.max(digits, 1) : digits);
}

export function fmtPct(ratio, digits) {
  if (!isNum(ratio)) return "–";
  const pct = ratio * 100;
  if (digits !== undefined) return `${pct.toFixed(digits)}%`;
  return `${pct < 10 && pct !== 0 ? pct.toFixed(1) : Math.round(pct)}%`;
}

export function fmtMs(v) {
  if (!isNum(v)) return "–";
  if (v < 1) return v.toFixed(2);
  return v < 10 ? v.toFixed(1) : Math.round(v).toLocaleString("en-US");
}

// Prices as a quote board shows them: 2 decimals, 4 below 1, 6 below 0.01.
export function fmtPrice(v) {
  if (!isNum(v)) return "–";
  const digits = Math.abs(v) >= 1 ? 2 : Math.abs(v) >= 0.01 ? 4 : 6;
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function fmtMoney(v) {
  if (!isNum(v)) return "–";
  return v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

export function fmtSigned(v, fmt = fmtMoney) {
  if (!isNum(v)) return "–";
  return (v > 0 ? "+" : "") + fmt(v);
}

export function fmtDuration(seconds) {
  if (!isNum(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return seconds < 10 ? `${seconds.toFixed(1)}s` : `${s}s`;
}

export function fmtWindow(seconds) {
  if (!isNum(seconds)) return "";
  return seconds % 60 === 0 ? `${seconds / 60} min` : `${Math.round(seconds)} s`;
}

export function fmtAge(seconds) {
  if (!isNum(seconds)) return "–";
  return seconds < 60 ? `${seconds.toFixed(1)}s` : fmtDuration(seconds);
}

// cpu_percent and memory_percent are already percentages (of one core, of the memory limit).
export function fmtProcPct(v) {
  return isNum(v) ? `${v < 10 ? v.toFixed(1) : Math.round(v)}%` : "–";
}

export function fmtMiB(bytes) {
  return `${fmtNum(bytes / 1048576, 0)} MiB`;
}

// Timestamps arrive as unix seconds or ISO-8601 strings; strings without a zone are UTC by the
// API contract. A bare date (2026-01-08) is a market day, not a moment.
export function toDate(ts) {
  if (ts === null || ts === undefined || ts === "") return null;
  if (isNum(ts)) return new Date(ts * 1000);
  let s = String(ts).trim().replace(" ", "T");
  if (/^\d{4}-\d{2}-\d{2}$/.test(s)) s += "T00:00:00";
  if (!/[zZ]|[+-]\d\d:?\d\d$/.test(s)) s += "Z";
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function fmtClock(ts) {
  const d = toDate(ts);
  if (!d) return "–";
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

export function fmtDateTime(ts) {
  const d = toDate(ts);
  if (!d) return "–";
  const sameDay = d.toDateString() === new Date().toDateString();
  const day = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} `;
  return (sameDay ? "" : day) + fmtClock(ts);
}

// --- DOM helpers ----------------------------------------------------------------------------

export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) node.append(child);
  return node;
}

export function setCard(testId, { value, raw, sub = "", level = "" }) {
  const card = byTestId(testId);
  card.querySelector(".value").textContent = value;
  card.querySelector(".sub").textContent = sub;
  card.dataset.value = raw === null || raw === undefined ? "" : String(raw);
  card.dataset.level = level;
}

// Rebuilds a table body from `items`, one <tr> per item, keeping rows whose content did not
// change so a row under the pointer or a text selection is not thrown away every second.
export function renderRows(table, items, keyOf, cellsOf, rowAttrs, emptyText, colspan) {
  const tbody = table.tBodies[0];
  if (!items.length) {
    tbody.replaceChildren(el("tr", { className: "empty" }, [el("td", { colspan, text: emptyText })]));
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
    return el("tr", { dataset: { ...attrs, key, sig: signature } }, cells.map((c) => c.td));
  });
  tbody.replaceChildren(...rows);
}

// A table cell plus a signature of what it shows (for renderRows' change detection).
export function cell(text, className, extra) {
  const td = el("td", { className, text });
  if (extra) td.append(extra);
  return { td, sig: [text, className, extra ? extra.textContent : ""] };
}

export function cellWith(className, children) {
  const td = el("td", { className }, children);
  return { td, sig: [className, td.textContent] };
}

export function progressBar(percent) {
  const pct = Math.max(0, Math.min(100, isNum(percent) ? percent : 0));
  const fill = el("span");
  fill.style.width = `${pct}%`;
  return el(
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
}

// --- Markdown (the analysis reports) --------------------------------------------------------

// Headings, paragraphs, bullet lists, pipe tables, **bold** and `code`: what the roles write.
// Built as DOM nodes from text, so a report can never inject markup.
function inline(text) {
  const out = document.createDocumentFragment();
  const re = /(\*\*[^*]+\*\*|`[^`]+`)/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) out.append(text.slice(last, m.index));
    const token = m[0];
    out.append(
      token.startsWith("**")
        ? el("strong", { text: token.slice(2, -2) })
        : el("code", { text: token.slice(1, -1) }),
    );
    last = m.index + token.length;
  }
  if (last < text.length) out.append(text.slice(last));
  return out;
}

const splitRow = (line) =>
  line
    .trim()
    .replace(/^\|/, "")
    .replace(/\|$/, "")
    .split("|")
    .map((c) => c.trim());

export function renderMarkdown(text, { headingShift = 0 } = {}) {
  const root = document.createDocumentFragment();
  const lines = String(text || "").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      const level = Math.min(6, heading[1].length + headingShift);
      root.append(el(`h${level}`, { className: "md-h" }, [inline(heading[2])]));
      i += 1;
      continue;
    }
    if (line.trim().startsWith("|") && i + 1 < lines.length && /^\s*\|?\s*:?-{3}/.test(lines[i + 1])) {
      const head = splitRow(line);
      i += 2;
      const body = [];
      while (i < lines.length && lines[i].trim().startsWith("|")) body.push(splitRow(lines[i++]));
      const table = el("table", { className: "md-table" }, [
        el("thead", {}, [el("tr", {}, head.map((h) => el("th", {}, [inline(h)])))]),
        el("tbody", {}, body.map((r) => el("tr", {}, r.map((c) => el("td", {}, [inline(c)]))))),
      ]);
      root.append(el("div", { className: "table-wrap" }, [table]));
      continue;
    }
    if (/^\s*[-*]\s+/.test(line)) {
      const ul = el("ul");
      while (i < lines.length && /^\s*[-*]\s+/.test(lines[i])) {
        ul.append(el("li", {}, [inline(lines[i].replace(/^\s*[-*]\s+/, ""))]));
        i += 1;
      }
      root.append(ul);
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !/^(#{1,6}\s|\s*[-*]\s|\s*\|)/.test(lines[i])) {
      para.push(lines[i].trim());
      i += 1;
    }
    if (!para.length) {
      para.push(line.trim());
      i += 1;
    }
    root.append(el("p", {}, [inline(para.join(" "))]));
  }
  return root;
}
