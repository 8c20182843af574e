// The job history: every job, filtered by state and method, with its progress per role,
// elapsed time and ETA; one job's detail with its result; and cancel (a write: it needs the API
// token when one is set, as every route does).

import { $, api, cell, cellWith, el, fmtDateTime, fmtDuration, fmtInt, isNum, progressBar, renderRows } from "./core.js";
import { describeDetail } from "./ops.js";

const PAGE = 25;
const ACTIVE = new Set(["queued", "running"]);
let offset = 0;
let selected = null;

function jobQuery() {
  const params = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
  const state = $("#jobs-state").value;
  const method = $("#jobs-method").value.trim();
  if (state) params.set("state", state);
  if (method) params.set("method", method);
  return params;
}

async function cancel(jobId, button) {
  button.disabled = true;
  button.textContent = "cancelling…";
  try {
    const out = await api(`api/jobs/${encodeURIComponent(jobId)}/cancel`, { method: "POST" });
    button.textContent = out.state === "cancelled" ? "cancelled" : "cancel requested";
  } catch (err) {
    button.disabled = false;
    button.textContent = "cancel";
    $("#jobs-status").textContent = `cancel failed: ${err.message}`;
  }
  refreshJobs();
}

function cancelButton(job) {
  if (!ACTIVE.has(job.state)) return null;
  const button = el("button", {
    type: "button",
    className: "danger",
    text: job.cancel_requested ? "cancel requested" : "cancel",
    dataset: { testid: "job-cancel", jobId: job.job_id },
  });
  if (job.cancel_requested) button.disabled = true;
  button.addEventListener("click", (ev) => {
    ev.stopPropagation();
    cancel(job.job_id, button);
  });
  return button;
}

function stateBadge(state) {
  return el("span", { className: `state state-job-${state}`, text: state });
}

export async function refreshJobs() {
  const status = $("#jobs-status");
  try {
    const data = await api(`api/jobs?${jobQuery()}`);
    renderRows(
      $("#jobs-table"),
      data.jobs,
      (j) => j.job_id,
      (j) => [
        cellWith("mono", [el("a", { href: `#/jobs/${encodeURIComponent(j.job_id)}`, text: j.job_id.replace(/^job-/, "").slice(0, 12), title: j.job_id })]),
        cell(j.method, "mono"),
        cellWith("", [stateBadge(j.state)]),
        cellWith("progress-cell", [progressBar(j.progress), el("span", { className: "job-meta", text: `${Math.round(j.progress || 0)}% ${describeDetail(j.detail, j.stage)}`.trim() })]),
        cell(fmtDuration(j.elapsed_s), "num"),
        cell(isNum(j.eta_s) ? fmtDuration(j.eta_s) : "–", "num"),
        cell(fmtDateTime(j.created_at)),
        cellWith("", [cancelButton(j)]),
      ],
      (j) => ({ testid: "history-job", state: j.state, jobId: j.job_id }),
      "no jobs match",
      8,
    );
    const last = Math.min(offset + data.jobs.length, data.total);
    status.textContent = data.total ? `${fmtInt(offset + 1)}–${fmtInt(last)} of ${fmtInt(data.total)}` : "no jobs";
    $("#jobs-prev").disabled = offset === 0;
    $("#jobs-next").disabled = last >= data.total;
    if (selected) await showJob(selected);
  } catch (err) {
    status.textContent = `could not load the jobs: ${err.message}`;
  }
}

export async function showJob(jobId) {
  selected = jobId;
  const panel = $("#job-detail");
  panel.hidden = false;
  let job;
  try {
    job = await api(`api/jobs/${encodeURIComponent(jobId)}?result=true`);
  } catch (err) {
    panel.replaceChildren(el("p", { className: "token-error", text: `job ${jobId}: ${err.message}` }));
    return;
  }
  const rows = [
    ["method", job.method],
    ["state", job.state + (job.cancel_requested && ACTIVE.has(job.state) ? " (cancel requested)" : "")],
    ["stage", job.stage || "–"],
    ["elapsed", fmtDuration(job.elapsed_s)],
    ["ETA", isNum(job.eta_s) ? fmtDuration(job.eta_s) : "–"],
    ["worker", job.worker_id || "–"],
    ["attempts", String(job.attempts ?? "–")],
    ["created", fmtDateTime(job.created_at)],
    ["finished", fmtDateTime(job.finished_at)],
  ];
  const roles = job.detail && typeof job.detail === "object" && job.detail.roles ? Object.entries(job.detail.roles) : [];
  const children = [
    el("div", { className: "detail-head" }, [
      el("h2", {}, ["Job ", el("span", { className: "mono", text: job.job_id })]),
      el("span", { className: "detail-actions" }, [
        cancelButton(job),
        el("button", { type: "button", text: "Close", onclick: () => { selected = null; panel.hidden = true; location.hash = "#/jobs"; } }),
      ]),
    ]),
    progressBar(job.progress),
    el("dl", { className: "facts" }, rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
  ];
  if (job.error) children.push(el("p", { className: "err" }, [el("span", { className: "err-code", text: job.error.code }), el("span", { className: "err-msg", text: job.error.message })]));
  if (roles.length) {
    // A long job (hundreds of steps) lists what is done and running, then how many wait.
    const shown = roles.length > 40 ? roles.filter(([, st]) => st !== "pending").slice(-30) : roles;
    const waiting = roles.length - shown.length;
    children.push(
      el("ol", { className: "roles", dataset: { testid: "job-roles" } }, shown.map(([name, state]) => el("li", { className: `role role-${state}`, dataset: { state } }, [el("span", { text: name }), el("span", { className: "job-meta", text: state })]))),
    );
    if (waiting > 0) children.push(el("p", { className: "job-meta", text: `… and ${waiting} more (pending or earlier)` }));
  }
  if (job.params) children.push(el("h3", { text: "Params" }), el("pre", { className: "json", text: JSON.stringify(job.params, null, 2) }));
  if (job.result !== null && job.result !== undefined) {
    const view = [el("h3", { text: "Result" })];
    if (job.method === "analyze.stock" && job.result.symbol) {
      view.push(el("p", {}, [el("a", { href: `#/analysis/${encodeURIComponent(job.result.symbol)}`, text: `open the analysis of ${job.result.symbol}` })]));
    }
    view.push(el("pre", { className: "json", dataset: { testid: "job-result" }, text: JSON.stringify(job.result, null, 2) }));
    children.push(...view);
  }
  panel.dataset.jobId = job.job_id;
  panel.dataset.state = job.state;
  panel.replaceChildren(...children);
}

export function closeJob() {
  selected = null;
  $("#job-detail").hidden = true;
}

$("#jobs-filter").addEventListener("submit", (ev) => {
  ev.preventDefault();
  offset = 0;
  refreshJobs();
});
$("#jobs-state").addEventListener("change", () => {
  offset = 0;
  refreshJobs();
});
$("#jobs-prev").addEventListener("click", () => {
  offset = Math.max(0, offset - PAGE);
  refreshJobs();
});
$("#jobs-next").addEventListener("click", () => {
  offset += PAGE;
  refreshJobs();
});
