// Requests: the link to a request's full record (used on every page), the detail panel, and the
// search page (method, status, error code, client, symbol; paged).

import { $, Unauthorized, api, cell, cellWith, el, fmtDateTime, fmtInt, fmtMs, renderRows } from "./core.js";

const logUrl = (requestId) => `api/logs/${encodeURIComponent(requestId)}`;
const PAGE = 50;

export function requestLink(item) {
  return el("a", {
    href: logUrl(item.request_id),
    className: "req-link",
    title: `${item.method} · request ${item.request_id}`,
    dataset: { requestId: item.request_id },
    text: item.method || item.request_id,
  });
}

let detailBlobUrl = null;

export async function showDetail(requestId) {
  const panel = $("#detail");
  const body = $("#detail-body");
  const raw = $("#detail-raw");
  $("#detail-id").textContent = requestId;
  if (detailBlobUrl) URL.revokeObjectURL(detailBlobUrl);
  detailBlobUrl = null;
  raw.href = logUrl(requestId);
  body.textContent = "loading…";
  delete panel.dataset.loaded;
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
    body.textContent = err instanceof Unauthorized ? "the token was refused" : `could not load the request: ${err.message}`;
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
$("#detail-close").addEventListener("click", () => {
  $("#detail").hidden = true;
});

// --- the search page ------------------------------------------------------------------------

let offset = 0;

function query() {
  const form = $("#request-search");
  const params = new URLSearchParams();
  for (const name of ["method", "status", "code", "client", "symbol", "kind"]) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  params.set("limit", String(PAGE));
  params.set("offset", String(offset));
  return params;
}

export async function loadRequests() {
  const status = $("#requests-status");
  status.textContent = "searching…";
  try {
    const data = await api(`api/logs?${query()}`);
    renderRows(
      $("#requests-table"),
      data.items,
      (r) => r.request_id,
      (r) => [
        cell(fmtDateTime(r.created_at)),
        cellWith("mono", [requestLink(r)]),
        cell(r.status, `status-${r.status === "success" ? "success" : "error"}`),
        cell(r.error_code || "", "err-code"),
        cell(r.client_id || "–", "mono"),
        cell(fmtMs(r.processing_time_ms), "num"),
        cell(r.worker_id || "–", "mono"),
      ],
      (r) => ({ testid: "search-row", status: r.status, requestId: r.request_id, code: r.error_code || "" }),
      "nothing matches",
      7,
    );
    const last = Math.min(data.offset + data.items.length, data.total);
    status.textContent = data.total ? `${fmtInt(data.offset + 1)}–${fmtInt(last)} of ${fmtInt(data.total)}` : "0 matches";
    status.dataset.total = String(data.total);
    $("#requests-prev").disabled = data.offset === 0;
    $("#requests-next").disabled = last >= data.total;
  } catch (err) {
    status.textContent = `search failed: ${err.message}`;
  }
}

$("#request-search").addEventListener("submit", (ev) => {
  ev.preventDefault();
  offset = 0;
  loadRequests();
});
$("#requests-prev").addEventListener("click", () => {
  offset = Math.max(0, offset - PAGE);
  loadRequests();
});
$("#requests-next").addEventListener("click", () => {
  offset += PAGE;
  loadRequests();
});
