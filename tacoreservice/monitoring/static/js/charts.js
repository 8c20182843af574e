// Charts drawn on a canvas by the page itself (no third-party code, works offline). Colours are
// CSS variables, so light and dark mode read the same palette. Each chart also publishes what it
// drew as data-* attributes on its figure, for the tests (and a curious operator in devtools).

import { isNum, pad2 } from "./core.js";

export function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const exp = 10 ** Math.floor(Math.log10(raw));
  const f = raw / exp;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * exp;
}

// One style read per redraw: the palette changes only with the colour scheme.
export function readPalette() {
  const style = getComputedStyle(document.documentElement);
  return (name) => style.getPropertyValue(name).trim();
}

function prepare(canvas) {
  const box = canvas.parentElement;
  const w = box.clientWidth;
  const h = box.clientHeight;
  if (!w || !h) return null;
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px system-ui, sans-serif";
  return { ctx, w, h };
}

// Horizontal grid lines at `labels`, each value written left of the plot.
function yGrid(ctx, cssVar, labels, y, L, pw, fmt) {
  ctx.strokeStyle = cssVar("--grid");
  ctx.fillStyle = cssVar("--muted");
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of labels) {
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(L, yy);
    ctx.lineTo(L + pw, yy);
    ctx.stroke();
    ctx.fillText(fmt(v), L - 6, yy);
  }
}

function drawRuns(ctx, runs, color, fillTo) {
  for (const r of runs) {
    if (fillTo !== undefined && r.length > 1) {
      ctx.beginPath();
      ctx.moveTo(r[0][0], fillTo);
      for (const [px, py] of r) ctx.lineTo(px, py);
      ctx.lineTo(r[r.length - 1][0], fillTo);
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
      // A lone point is a dot, not an invisible zero-length line.
      ctx.arc(r[0][0], r[0][1], 1.5, 0, 2 * Math.PI);
      ctx.fillStyle = color;
      ctx.fill();
    }
    ctx.stroke();
  }
}

// The operations charts: the last 15 minutes, one point a second, the right edge at the newest
// second the server reported. `source()` gives {points, end}.
export class TimeChart {
  // lines: [{key, colorVar, label, fill?, breakOnGap?}]
  constructor(figure, { lines, unit, minMax, latestKey, fmt, source, windowS }) {
    Object.assign(this, { figure, lines, unit, minMax, latestKey, fmt, source, windowS });
    this.canvas = figure.querySelector("canvas");
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
    const area = prepare(this.canvas);
    if (!area) return;
    const { ctx, w, h } = area;
    const { series, end: seriesEnd } = this.source();
    const end = seriesEnd || Math.floor(Date.now() / 1000);
    const start = end - this.windowS;
    const points = [...series.values()].filter((p) => p.t > start).sort((a, b) => a.t - b.t);
    this.publish(points);
    const muted = cssVar("--muted");

    let max = this.minMax;
    for (const p of points) for (const line of this.lines) if (isNum(p[line.key]) && p[line.key] > max) max = p[line.key];
    const step = niceStep(max / 4);
    const top = Math.ceil(max / step) * step;
    const labels = [];
    for (let v = 0; v <= top + step / 2; v += step) labels.push(v);
    const L = Math.ceil(Math.max(...labels.map((v) => ctx.measureText(this.fmt(v)).width))) + 10;
    const R = 8;
    const T = 8;
    const B = 20;
    const pw = w - L - R;
    const ph = h - T - B;
    const x = (t) => L + ((t - start) / this.windowS) * pw;
    const y = (v) => T + ph - (v / top) * ph;

    yGrid(ctx, cssVar, labels, y, L, pw, this.fmt);
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
    ctx.textAlign = "left";
    ctx.fillText(this.unit, L + 4, T + 2);

    if (!points.length) {
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText("waiting for data…", L + pw / 2, T + ph / 2);
      return;
    }
    ctx.save();
    ctx.beginPath();
    ctx.rect(L, T - 1, pw + 1, ph + 2);
    ctx.clip();
    for (const line of this.lines) {
      // A null value (no request in that second) breaks a latency line.
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
      drawRuns(ctx, runs, cssVar(line.colorVar), line.fill ? y(0) : undefined);
    }
    ctx.restore();

    // Hover read-out: the second under the pointer and its values.
    if (this.hoverX !== null && this.hoverX >= L && this.hoverX <= L + pw) {
      const t = Math.round(start + ((this.hoverX - L) / pw) * this.windowS);
      const p = series.get(t);
      const d = new Date(t * 1000);
      const parts = [`${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`];
      for (const line of this.lines) {
        const v = p ? p[line.key] : null;
        parts.push(`${line.label} ${isNum(v) ? this.fmt(v) : "–"}`);
      }
      hoverBox(ctx, cssVar, this.hoverX, L, T, pw, ph, parts.join("  "));
    }
  }
}

function hoverBox(ctx, cssVar, hx, L, T, pw, ph, text) {
  ctx.strokeStyle = cssVar("--muted");
  ctx.beginPath();
  ctx.moveTo(Math.round(hx) + 0.5, T);
  ctx.lineTo(Math.round(hx) + 0.5, T + ph);
  ctx.stroke();
  const tw = ctx.measureText(text).width + 10;
  const bx = Math.min(Math.max(L, hx - tw / 2), L + pw - tw);
  ctx.fillStyle = cssVar("--panel");
  ctx.globalAlpha = 0.9;
  ctx.fillRect(bx, T, tw, 18);
  ctx.globalAlpha = 1;
  ctx.fillStyle = cssVar("--text");
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  ctx.fillText(text, bx + 5, T + 9);
}

// A dated series (an equity curve, a price history) with optional horizontal levels (entry,
// stop, target) labelled at the right edge. x is the point's index: market days, no gaps.
export class SeriesChart {
  // opts: {colorVar, fmt, fill?: bool, zeroBased?: bool, unit?}
  constructor(figure, opts) {
    this.figure = figure;
    this.canvas = figure.querySelector("canvas");
    this.opts = opts;
    this.points = [];
    this.levels = [];
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

  // points: [{label: "2026-01-08", value}], levels: [{label, value, colorVar, dash}]
  set(points, levels = []) {
    this.points = points.filter((p) => isNum(p.value));
    this.levels = levels.filter((l) => isNum(l.value));
    const d = this.figure.dataset;
    d.points = String(this.points.length);
    d.first = this.points.length ? this.points[0].label : "";
    d.last = this.points.length ? this.points[this.points.length - 1].label : "";
    d.lastValue = this.points.length ? String(this.points[this.points.length - 1].value) : "";
    d.levels = this.levels.map((l) => l.label).join(",");
    this.draw();
  }

  draw(cssVar = readPalette()) {
    const area = prepare(this.canvas);
    if (!area) return;
    const { ctx, w, h } = area;
    const { fmt } = this.opts;
    const muted = cssVar("--muted");
    if (!this.points.length) {
      ctx.fillStyle = muted;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(this.opts.empty || "no data", w / 2, h / 2);
      return;
    }
    const values = [...this.points.map((p) => p.value), ...this.levels.map((l) => l.value)];
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    if (this.opts.zeroBased) hi = Math.max(hi, 0);
    if (this.opts.zeroBased) lo = Math.min(lo, 0);
    if (hi === lo) {
      hi += Math.abs(hi) * 0.01 || 1;
      lo -= Math.abs(lo) * 0.01 || 1;
    }
    const step = niceStep((hi - lo) / 4);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    const labels = [];
    for (let v = lo; v <= hi + step / 2; v += step) labels.push(v);
    const fmtAxis = (v) => fmt(v, step);
    const L = Math.ceil(Math.max(...labels.map((v) => ctx.measureText(fmtAxis(v)).width))) + 10;
    const levelW = this.levels.length
      ? Math.ceil(Math.max(...this.levels.map((l) => ctx.measureText(`${l.label} ${fmt(l.value)}`).width))) + 8
      : 8;
    const R = Math.min(levelW, Math.floor(w * 0.35));
    const T = 8;
    const B = 20;
    const pw = Math.max(10, w - L - R);
    const ph = h - T - B;
    const n = this.points.length;
    const x = (i) => L + (n === 1 ? pw / 2 : (i / (n - 1)) * pw);
    const y = (v) => T + ph - ((v - lo) / (hi - lo)) * ph;

    yGrid(ctx, cssVar, labels, y, L, pw, fmtAxis);
    // Date marks: about one per 110 px.
    const marks = Math.max(2, Math.floor(pw / 110));
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let k = 0; k < marks; k += 1) {
      const i = Math.round((k / (marks - 1)) * (n - 1));
      const xx = Math.round(x(i)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(xx, T + ph);
      ctx.lineTo(xx, T + ph + 4);
      ctx.stroke();
      const text = String(this.points[i].label);
      const tw = ctx.measureText(text).width / 2;
      ctx.fillText(text, Math.min(Math.max(xx, L + tw), L + pw - tw), T + ph + 6);
    }

    ctx.save();
    ctx.beginPath();
    ctx.rect(L, T - 1, pw + 1, ph + 2);
    ctx.clip();
    const run = this.points.map((p, i) => [x(i), y(p.value)]);
    const base = this.opts.zeroBased ? y(0) : T + ph;
    drawRuns(ctx, [run], cssVar(this.opts.colorVar), this.opts.fill ? base : undefined);
    ctx.restore();

    // Levels: dashed lines across the chart, named at the right edge; names of levels close
    // together are spread apart so they never print over each other.
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    const named = this.levels.map((level) => ({ level, yy: Math.round(y(level.value)) + 0.5 }));
    named.sort((a, b) => a.yy - b.yy);
    let prev = -Infinity;
    for (const n of named) {
      n.ty = Math.max(n.yy, prev + 12);
      prev = n.ty;
    }
    const overflow = prev - (T + ph + 6);
    if (overflow > 0) for (const n of named) n.ty -= overflow;
    for (const { level, yy, ty } of named) {
      const color = cssVar(level.colorVar);
      ctx.strokeStyle = color;
      ctx.setLineDash(level.dash ? [5, 4] : []);
      ctx.beginPath();
      ctx.moveTo(L, yy);
      ctx.lineTo(L + pw, yy);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = color;
      ctx.fillText(`${level.label} ${fmt(level.value)}`, L + pw + 4, ty);
    }

    if (this.hoverX !== null && this.hoverX >= L && this.hoverX <= L + pw) {
      const i = Math.round(((this.hoverX - L) / pw) * (n - 1));
      const p = this.points[Math.max(0, Math.min(n - 1, i))];
      hoverBox(ctx, cssVar, this.hoverX, L, T, pw, ph, `${p.label}  ${fmt(p.value)}`);
    }
  }
}
