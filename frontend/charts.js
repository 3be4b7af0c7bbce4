// All of the page's Plotly: eight charts drawn once, then updated in place (restyle/relayout/update)
// from a requestAnimationFrame loop that coalesces incoming frames and throttles the heavy charts.
import { Series } from "./series.js";

const Plotly = window.Plotly;
// Okabe-Ito, readable with every common colour-vision deficiency.
export const OI = { blue: "#0072B2", orange: "#E69F00", green: "#009E73", vermilion: "#D55E00",
                    sky: "#56B4E9", purple: "#CC79A7", black: "#222222", grey: "#8a8f98" };
const DIVERGING = [[0, OI.blue], [0.5, "#f4f4f4"], [1, OI.orange]];
const TRAIL = 6, RECENT = 1500;
// Redraw schedule: the profile is the live view; whole-run charts change slowly and cost more.
// `ms`: fastest interval; `share`: the most of the main thread the chart may take (sum 0.7).
const SCHEDULE = [
  { name: "profile", chart: "profile", draw: "drawProfile", ms: 50, share: 0.25 },
  { name: "loss", chart: "loss", draw: "drawLoss", ms: 150, share: 0.1 },
  { name: "clip", chart: "clip", draw: "drawClip", ms: 150, share: 0.08 },
  { name: "acts", chart: "acts", draw: "drawActs", ms: 200, share: 0.08 },
  { name: "ratio", chart: "ratio", draw: "drawRatio", ms: 200, share: 0.08 },
  { name: "heat", chart: "heatmap", draw: "drawHeatmap", ms: 700, share: 0.06 },
  { name: "hist", chart: "hist", draw: "drawHist", ms: 1000, share: 0.05 },
];
const PLOT_CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };
const FONT = { family: "Inter, system-ui, -apple-system, Segoe UI, sans-serif", size: 11, color: "#39404a" };

const pos = (v) => (typeof v === "number" && v > 0 && Number.isFinite(v) ? v : null);
const log10 = (v) => (pos(v) === null ? null : Math.log10(v));
const layers = (n, from = 1) => Array.from({ length: n }, (_, i) => i + from);

function baseLayout(extra = {}) {
  const axis = { gridcolor: "#e7e9ee", zerolinecolor: "#d5d9e0", linecolor: "#c9ced6", automargin: true };
  return {
    margin: { l: 52, r: 14, t: 6, b: 34 }, font: FONT, paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "#ffffff", showlegend: true, hovermode: "x unified",
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 10 }, bgcolor: "rgba(0,0,0,0)" },
    xaxis: { ...axis, ...(extra.xaxis || {}) }, yaxis: { ...axis, ...(extra.yaxis || {}) },
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== "xaxis" && k !== "yaxis")),
  };
}

/** Log-axis range [lo, hi] (log10 units) that covers `values` with a margin; null when none. */
function logRange(values, pad = 0.25) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) {
    if (pos(v) === null) continue;
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  if (!Number.isFinite(lo)) return null;
  const a = Math.log10(lo), b = Math.log10(hi);
  return [a - pad - (b - a < 1 ? 0.5 : 0), b + pad + (b - a < 1 ? 0.5 : 0)];
}

/** relayout keys for a log y axis (`axis`: "yaxis") over `values`: range and one tick per few decades. */
function logAxis(axis, values, pad, ticks = 6) {
  const r = logRange(values, pad);
  if (!r) return {};
  return { [`${axis}.range`]: r, [`${axis}.dtick`]: Math.max(1, Math.ceil((r[1] - r[0]) / ticks)) };
}

/** Exponential moving average that skips nulls (per-batch loss is noisy). */
function ema(a, alpha = 0.08) {
  let m = null;
  return a.map((v) => {
    if (typeof v !== "number" || !Number.isFinite(v)) return null;
    m = m === null ? v : m + alpha * (v - m);
    return m;
  });
}

export function eventLabel(ev) {
  const parts = Object.entries(ev.changes || {}).map(([k, [a, b]]) =>
    k === "activation" ? `${a} -> ${b}` : `${k} ${fmt(a)} -> ${fmt(b)}`);
  const what = parts.length ? parts.join(", ") : ev.kind;
  return `step ${ev.step}: ${what}`;
}
const fmt = (v) => (typeof v === "number" ? +v.toPrecision(3) : String(v));

export class Dashboard {
  /** @param {Object<string, HTMLElement>} el  chart containers by name */
  constructor(el) {
    this.el = el;
    this.series = new Series();
    this.events = [];
    this.trail = [];
    this.heatMetric = "grad_norm";
    this.histLayer = 0;
    this.windowMode = "recent";
    this.theory = null;
    this.boundary = null;
    this.last = {};
    this.drawn = {};
    this.cost = {};  // ms per draw, smoothed, per scheduled chart
    this.info = { renders: 0, markers: 0, profile: null, frames: 0, busy: 0 };
    // charts scrolled out of view are not redrawn; they catch up when they come back
    this.visible = {};
    const names = new Map(Object.entries(el).map(([k, v]) => [v, k]));
    const io = new IntersectionObserver((entries) => {
      for (const e of entries) this.visible[names.get(e.target)] = e.isIntersecting;
    });
    for (const node of Object.values(el)) io.observe(node);
  }

  /** Draw every chart afresh for `config` (on join and when the network's shape changes). */
  reset(config, meta = {}) {
    this.config = { ...config };
    this.meta = meta;
    this.series.clear();
    this.trail = [];
    this.drawn = {};
    this.histLayer = Math.min(this.histLayer, config.depth);
    const e = this.el, D = config.depth;
    Plotly.newPlot(e.profile, [
      ...layers(TRAIL, 0).map((i) => ({ x: [], y: [], mode: "lines", name: i === 0 ? "earlier" : undefined,
        showlegend: i === 0, hoverinfo: "skip", line: { color: OI.blue, width: 1.2 }, opacity: 0.08 + 0.06 * i })),
      { x: [], y: [], mode: "lines", name: "theory", line: { color: OI.black, dash: "dot", width: 1.5 } },
      { x: [], y: [], mode: "lines+markers", name: "grad_norm", line: { color: OI.blue, width: 2.5 }, marker: { size: 5 } },
      { x: [], y: [], mode: "lines+markers", name: "delta_norm", line: { color: OI.orange, width: 2 }, marker: { size: 4, symbol: "diamond" } },
    ], baseLayout({ xaxis: { title: { text: "layer (input → output)", standoff: 4 }, dtick: D > 20 ? 5 : 1 },
                    yaxis: { type: "log", exponentformat: "power" } }), PLOT_CONFIG);
    Plotly.newPlot(e.heatmap, [{ type: "heatmap", x: [], y: layers(D + 1), z: [], colorscale: "Viridis",
      colorbar: { thickness: 10, len: 0.9, title: { text: "log10", side: "right" } }, hoverongaps: false,
      hovertemplate: "step %{x}<br>layer %{y}<br>log10 %{z:.2f}<extra></extra>" }],
      baseLayout({ xaxis: { title: { text: "step", standoff: 4 } }, yaxis: { title: { text: "layer", standoff: 4 } },
                   showlegend: false, hovermode: "closest" }), PLOT_CONFIG);
    Plotly.newPlot(e.loss, [
      { x: [], y: [], mode: "lines", name: "loss", showlegend: false, hoverinfo: "skip", line: { color: OI.vermilion, width: 1 }, opacity: 0.3 },
      { x: [], y: [], mode: "lines", name: "accuracy", showlegend: false, hoverinfo: "skip", yaxis: "y2", line: { color: OI.green, width: 1 }, opacity: 0.3 },
      { x: [], y: [], mode: "lines", name: "loss", line: { color: OI.vermilion, width: 2.2 } },
      { x: [], y: [], mode: "lines", name: "accuracy", yaxis: "y2", line: { color: OI.green, width: 2.2 } },
    ], baseLayout({ xaxis: { title: { text: "step", standoff: 4 }, anchor: "y2" },
                    yaxis: { type: "log", dtick: 1, exponentformat: "power", domain: [0.45, 1], title: { text: "loss", standoff: 2 } },
                    yaxis2: { domain: [0, 0.37], range: [0, 1.02], tickformat: ".0%", dtick: 0.5, automargin: true,
                              gridcolor: "#e7e9ee", title: { text: "acc.", standoff: 2 } } }), PLOT_CONFIG);
    Plotly.newPlot(e.clip, [
      { x: [], y: [], mode: "lines", name: "before clipping", line: { color: OI.blue, width: 2 } },
      { x: [], y: [], mode: "lines", name: "after clipping", line: { color: OI.orange, width: 1.6, dash: "dash" } },
    ], baseLayout({ xaxis: { title: { text: "step", standoff: 4 } }, yaxis: { type: "log", exponentformat: "power" } }), PLOT_CONFIG);
    Plotly.newPlot(e.acts, [
      { x: [], y: [], type: "bar", name: "saturated", yaxis: "y2", marker: { color: OI.orange }, opacity: 0.55 },
      { x: [], y: [], type: "bar", name: "dead", yaxis: "y2", marker: { color: OI.grey }, opacity: 0.6 },
      { x: [], y: [], mode: "lines+markers", name: "mean", line: { color: OI.blue, width: 2 }, marker: { size: 4 } },
      { x: [], y: [], mode: "lines+markers", name: "std", line: { color: OI.green, width: 2 }, marker: { size: 4 } },
    ], baseLayout({ barmode: "group", xaxis: { title: { text: "hidden layer", standoff: 4 }, dtick: D > 20 ? 5 : 1 },
                    yaxis: { title: { text: "activation", standoff: 2 } },
                    yaxis2: { overlaying: "y", side: "right", range: [0, 1], showgrid: false, tickformat: ".0%", automargin: true } }), PLOT_CONFIG);
    Plotly.newPlot(e.ratio, [
      ...layers(TRAIL, 0).map((i) => ({ x: [], y: [], mode: "lines", showlegend: false, hoverinfo: "skip",
        line: { color: OI.purple, width: 1 }, opacity: 0.08 + 0.06 * i })),
      { x: [], y: [], mode: "lines+markers", name: "update_ratio", line: { color: OI.purple, width: 2.5 }, marker: { size: 5 } },
    ], baseLayout({ xaxis: { title: { text: "layer", standoff: 4 }, dtick: D > 20 ? 5 : 1 }, yaxis: { type: "log", exponentformat: "power" },
      shapes: [
        { type: "rect", xref: "paper", x0: 0, x1: 1, yref: "y", y0: 1e-4, y1: 1e-2, fillcolor: OI.green, opacity: 0.10, line: { width: 0 }, layer: "below" },
        { type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: 1e-3, y1: 1e-3, line: { color: OI.green, width: 1.5, dash: "dash" } }],
      annotations: [{ xref: "paper", x: 1, yref: "y", y: -3, text: "1e-3 guide", showarrow: false, xanchor: "right", yanchor: "bottom", font: { size: 10, color: OI.green } }] }), PLOT_CONFIG);
    Plotly.newPlot(e.hist, [{ type: "heatmap", x: [], y: this.histCenters(), z: [], colorscale: "Cividis",
      colorbar: { thickness: 10, len: 0.9, title: { text: "log10 n", side: "right" } },
      hovertemplate: "step %{x}<br>log10|g| %{y:.1f}<br>log10(1+count) %{z:.2f}<extra></extra>" }],
      baseLayout({ xaxis: { title: { text: "step", standoff: 4 } }, yaxis: { title: { text: "log10 |dL/dW|", standoff: 2 } },
                   showlegend: false, hovermode: "closest" }), PLOT_CONFIG);
    Plotly.newPlot(e.boundary, [
      { type: "heatmap", x: [], y: [], z: [], colorscale: DIVERGING, zmin: 0, zmax: 1, showscale: false, hovertemplate: "p=%{z:.2f}<extra></extra>" },
      { type: "contour", x: [], y: [], z: [], showscale: false, hoverinfo: "skip",
        contours: { coloring: "lines", start: 0.5, end: 0.5, size: 1 }, line: { color: OI.black, width: 2 } },
    ], baseLayout({ showlegend: false, hovermode: "closest", margin: { l: 30, r: 8, t: 6, b: 24 },
                    yaxis: { scaleanchor: "x" } }), PLOT_CONFIG);
    this.info.markers = 0;
    this.drawMarkers();
  }

  histCenters() {
    const edges = (this.meta && this.meta.hist_edges) || null;
    if (!edges || edges.length < 2) return null;
    return edges.slice(0, -1).map((a, i) => (a + edges[i + 1]) / 2);
  }

  setMeta(meta) {
    this.meta = { ...(this.meta || {}), ...(meta || {}) };
  }

  /** Take a stats message or history block; drawing waits for the next frame. */
  ingest(block) {
    this.info.frames++;
    return this.series.append(block);
  }

  setTheory(profileFn) {
    this.theory = profileFn;
    this.dirtyProfile = true;
  }

  setEvents(events) {
    this.events = (events || []).filter((e) => e && typeof e.step === "number");
    this.drawMarkers();
  }

  addEvent(ev) {
    this.events.push(ev);
    this.drawMarkers();
  }

  setBoundary(msg) {
    this.boundary = msg;
    this.drawn.boundary = false;
  }

  /** A view setting changed: redraw these charts at the next frame, even with no new data. */
  redrawSoon(...names) {
    for (const n of names) { this.last[n] = 0; this.drawn[n] = undefined; }
  }

  setHeatMetric(name) { this.heatMetric = name; this.redrawSoon("heat"); }
  setHistLayer(i) { this.histLayer = i; this.redrawSoon("hist"); }
  setWindow(mode) { this.windowMode = mode; this.redrawSoon("loss", "clip"); }

  /** Vertical marker lines on the time charts; the latest few carry their label. */
  drawMarkers() {
    if (!this.config) return;
    const evs = this.events.filter((e) => e.kind !== "paused" && e.kind !== "resumed").slice(-60);
    const shapes = evs.map((e) => ({ type: "line", xref: "x", x0: e.step, x1: e.step, yref: "paper", y0: 0, y1: 1,
      line: { color: e.kind === "diverged" ? OI.vermilion : OI.black, width: 1, dash: "dot" }, opacity: 0.55 }));
    const labelled = evs.slice(-4);
    const annotations = labelled.map((e, i) => ({ xref: "x", x: e.step, yref: "paper", y: 0.98 - 0.11 * (labelled.length - 1 - i),
      text: eventLabel(e), showarrow: false, xanchor: "left", yanchor: "top", font: { size: 10, color: OI.black },
      bgcolor: "rgba(255,255,255,0.85)", bordercolor: "#c9ced6", borderwidth: 1, borderpad: 2 }));
    for (const name of ["loss", "clip", "heatmap", "hist"]) {
      const extra = name === "clip" ? this.thresholdShape() : [];
      Plotly.relayout(this.el[name], { shapes: [...shapes, ...extra], annotations: name === "heatmap" || name === "hist" ? [] : annotations });
    }
    this.info.markers = evs.length;
    this.info.labels = evs.map(eventLabel);
  }

  thresholdShape() {
    if (!this.config || this.config.clip_mode !== "norm") return [];
    const c = this.config.clip_value;
    return [{ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: c, y1: c, line: { color: OI.vermilion, width: 1.5, dash: "dash" } }];
  }

  /** Called when live keys change (clip threshold line, theory curve). */
  updateConfig(config) {
    const clipChanged = config.clip_mode !== this.config.clip_mode || config.clip_value !== this.config.clip_value;
    this.config = { ...config };
    if (clipChanged) this.drawMarkers();
    this.dirtyProfile = true;
  }

  /** One animation frame: at most one chart redraws, the one most overdue.

  Each chart has a base interval and a share of the main thread; its interval stretches to
  (its measured draw time / its share), so on a slow machine the charts slow down together
  instead of the tab freezing, and a frame is never more than one chart's draw. */
  render(now) {
    if (!this.config) return;
    if (this.boundary && !this.drawn.boundary) { this.drawn.boundary = true; this.drawBoundary(); return; }
    if (!this.series.latest) return;
    const v = this.series.version;
    let pick = null, urgency = 1;
    for (const job of SCHEDULE) {
      if (this.visible[job.chart] === false) continue;
      if (this.drawn[job.name] === v && !(job.name === "profile" && this.dirtyProfile)) continue;
      const interval = Math.max(job.ms, (this.cost[job.name] || 0) / job.share);
      const u = (now - (this.last[job.name] || 0)) / interval;
      if (u >= urgency) { pick = job; urgency = u; }
    }
    if (!pick) return;
    this.last[pick.name] = now;
    this.drawn[pick.name] = v;
    const t0 = performance.now();
    this[pick.draw](now);
    const spent = performance.now() - t0, c = this.cost[pick.name];
    this.cost[pick.name] = c === undefined ? spent : 0.8 * c + 0.2 * spent;
    this.info.busy = (this.info.busy || 0) + spent;
  }

  drawProfile(now) {
    const s = this.series.latest, D = this.config.depth, x = layers(D + 1);
    const g = (s.grad_norm || []).map(pos), d = (s.delta_norm || []).map(pos);
    if (now - (this.last.trail || 0) > 700) {
      this.last.trail = now;
      this.trail.push(g);
      if (this.trail.length > TRAIL + 1) this.trail.shift();
    }
    const trail = this.trail.slice(0, -1);
    while (trail.length < TRAIL) trail.unshift([]);
    const anchor = g[D];
    const theory = this.theory && anchor ? this.theory(anchor) : [];
    const ys = [...trail, theory, g, d];
    const seen = [...g, ...d, ...trail.flat()].filter((v) => v !== null);
    const floor = Math.min(...seen) / 1e3;  // theory may fall off a cliff; show where it heads, not all of it
    Plotly.update(this.el.profile, { x: ys.map(() => x), y: ys },
      logAxis("yaxis", [...seen, ...theory.filter((v) => v !== null && v > floor)], 0.3), layers(TRAIL + 3, 0));
    this.dirtyProfile = false;
    this.ratioTrail = trail;
    this.info.profile = g;
    this.info.renders++;
  }

  drawActs() {
    const s = this.series.latest, x = layers(this.config.depth);
    const y = [s.saturation, s.dead, s.act_mean, s.act_std].map((a) => a || []);
    Plotly.restyle(this.el.acts, { x: [x, x, x, x], y }, [0, 1, 2, 3]);
  }

  drawRatio() {
    const s = this.series.latest, x = layers(this.config.depth + 1), r = (s.update_ratio || []).map(pos);
    if ((this.last.ratioSnap || 0) + 700 < performance.now()) {
      this.last.ratioSnap = performance.now();
      (this.rTrail ||= []).push(r);
      if (this.rTrail.length > TRAIL + 1) this.rTrail.shift();
    }
    const trail = (this.rTrail || []).slice(0, -1);
    while (trail.length < TRAIL) trail.unshift([]);
    const ys = [...trail, r];
    Plotly.update(this.el.ratio, { x: ys.map(() => x), y: ys }, logAxis("yaxis", [...r, 1e-4, 1e-2], 0.3), layers(TRAIL + 1, 0));
  }

  /** x-range: the recent window, or everything; y-range from what is visible only. */
  windowRange() {
    const st = this.series.step;
    const last = st[st.length - 1], first = st[0];
    if (last === undefined) return [0, 1];
    const lo = this.windowMode === "recent" ? Math.max(first, last - RECENT) : first;
    return [lo, Math.max(last, lo + 1)];
  }

  /** Visible x-range and the slice of a series inside it. */
  visibleSlice() {
    const S = this.series, [lo, hi] = this.windowRange();
    const i0 = Math.max(0, S.step.findIndex((t) => t >= lo));
    return { lo, hi, vis: (a) => a.slice(i0) };
  }

  drawLoss() {
    const S = this.series, { lo, hi, vis } = this.visibleSlice();
    const loss = S.g.loss, acc = S.g.accuracy, x = S.step;
    Plotly.update(this.el.loss, { x: [x, x, x, x], y: [loss, acc, ema(loss), ema(acc)] },
      { "xaxis.range": [lo, hi], ...logAxis("yaxis", vis(loss), 0.1, 3) }, [0, 1, 2, 3]);
  }

  drawClip() {
    const S = this.series, { lo, hi, vis } = this.visibleSlice();
    const gl = S.g.global_grad_norm, cl = S.g.clipped_global_grad_norm;
    const clipOn = this.config.clip_mode === "norm" ? [this.config.clip_value] : [];
    Plotly.update(this.el.clip, { x: [S.step, S.step], y: [gl, cl] },
      { "xaxis.range": [lo, hi], ...logAxis("yaxis", [...vis(gl), ...vis(cl), ...clipOn], 0.2) }, [0, 1]);
  }

  drawHeatmap() {
    const S = this.series, D = this.config.depth, cols = S.l[this.heatMetric] || [];
    const z = layers(D + 1, 0).map((l) => cols.map((c) => log10(c[l])));
    Plotly.restyle(this.el.heatmap, { x: [S.step], y: [layers(D + 1)], z: [z] }, [0]);
  }

  drawHist() {
    const S = this.series, l = this.histLayer;
    const cols = S.hist.map((h) => (h && h[l]) || null);
    const nb = cols.reduce((m, c) => Math.max(m, c ? c.length : 0), 0);
    if (!nb) return;
    const z = layers(nb, 0).map((b) => cols.map((c) => (c ? Math.log10(1 + (c[b] || 0)) : null)));
    const y = this.histCenters() || layers(nb, 0);
    Plotly.restyle(this.el.hist, { x: [S.step], y: [y.slice(0, nb)], z: [z] }, [0]);
  }

  drawBoundary() {
    const b = this.boundary;
    const flat = (b.p || []).flat().filter((v) => v !== null);
    const zmax = Math.max(1, ...flat);
    Plotly.update(this.el.boundary, { x: [b.x, b.x], y: [b.y, b.y], z: [b.p, b.p], zmax: [zmax, undefined] }, {}, [0, 1]);
  }
}
