// Shared Plotly helpers for the chart modules: colours (light and dark), the base layout, axis
// ranges that stay put, and the cheapest update path Plotly offers for line charts (an animation
// frame with no redraw).

export const Plotly = window.Plotly;

// Okabe-Ito, readable with every common colour-vision deficiency.
export const OI = { blue: "#0072B2", orange: "#E69F00", green: "#009E73", vermilion: "#D55E00",
                    sky: "#56B4E9", purple: "#CC79A7", yellow: "#F0E442", black: "#222222", grey: "#8a8f98" };
export const DIVERGING = [[0, OI.blue], [0.5, "#f4f4f4"], [1, OI.orange]];
export const TRAIL = 6;  // faded earlier curves on the per-layer charts

const THEMES = {
  light: { ink: "#39404a", strong: OI.black, plot: "#ffffff", grid: "#e7e9ee", zero: "#d5d9e0", line: "#c9ced6",
           label: "rgba(255,255,255,0.85)", floor: "#8a8f98" },
  dark: { ink: "#c9d1db", strong: "#e9edf2", plot: "#161b21", grid: "#2a313a", zero: "#3a434e", line: "#46505c",
          label: "rgba(22,27,33,0.85)", floor: "#9aa5b3" },
};

/** The colours of the page's theme (theme.js sets `data-theme` on <html>). */
export function palette() {
  return THEMES[document.documentElement.dataset.theme === "dark" ? "dark" : "light"];
}

/** The chart font in the theme's ink. */
export const font = (size = 11) => ({ family: "Inter, system-ui, -apple-system, Segoe UI, sans-serif", size, color: palette().ink });

/** Download buttons only (PNG and SVG, named after the chart), shown while the pointer is over a chart. */
function download(format) {
  return { name: `download-${format}`, title: `Download as ${format.toUpperCase()}`,
    icon: format === "png" ? Plotly.Icons.camera : Plotly.Icons.disk,
    click: (gd) => Plotly.downloadImage(gd, { format, filename: `gradscope-${(gd.id || "chart").replace(/^(cmp|chart)-/, "")}`,
                                              scale: format === "png" ? 2 : 1 }) };
}
export const PLOT_CONFIG = { displaylogo: false, responsive: true, displayModeBar: "hover",
                             modeBarButtons: [[download("png"), download("svg")]] };

export const pos = (v) => (typeof v === "number" && v > 0 && Number.isFinite(v) ? v : null);
export const finite = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
export const log10 = (v) => (pos(v) === null ? null : Math.log10(v));
/** log10 for the heat maps: an exact zero is -Infinity (painted as zero, imagemap.js), non-finite null (a gap). */
export const logz = (v) => (v === 0 ? -Infinity : log10(v));
/** [from, from + 1, ..., from + n - 1] */
export const layers = (n, from = 1) => Array.from({ length: n }, (_, i) => i + from);

const axisLook = () => { const p = palette(); return { gridcolor: p.grid, zerolinecolor: p.zero, linecolor: p.line, automargin: true }; };

/** The layout every chart starts from; `extra.xaxis`/`extra.yaxis` are merged into the axis defaults. */
export function baseLayout(extra = {}) {
  const { xaxis = {}, yaxis = {}, ...rest } = extra;
  return {
    margin: { l: 52, r: 14, t: 6, b: 34 }, font: font(), paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: palette().plot, showlegend: true, hovermode: "x unified",
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 10 }, bgcolor: "rgba(0,0,0,0)" },
    xaxis: { ...axisLook(), ...xaxis }, yaxis: { ...axisLook(), ...yaxis }, ...rest,
  };
}

/**
 * Apply the current theme to a drawn plot: its background, font, every axis' grid and lines,
 * and the traces drawn in the theme's strongest ink (theory lines, the product curve).
 */
export function retheme(gd) {
  if (!gd || !gd.layout || !gd.data) return;
  const p = palette(), keys = { "font.color": p.ink, plot_bgcolor: p.plot };
  for (const name of Object.keys(gd.layout).filter((k) => /^[xy]axis\d*$/.test(k))) {
    Object.assign(keys, { [`${name}.gridcolor`]: p.grid, [`${name}.zerolinecolor`]: p.zero, [`${name}.linecolor`]: p.line });
  }
  Plotly.relayout(gd, keys);
  const inks = new Set(Object.values(THEMES).map((t) => t.strong));
  const strong = gd.data.map((t, i) => (t.line && inks.has(t.line.color) ? i : -1)).filter((i) => i >= 0);
  if (strong.length) Plotly.restyle(gd, { "line.color": p.strong }, strong);
}

/** An axis spec with the shared look (for second axes). */
export const axis = (extra = {}) => ({ ...axisLook(), ...extra });

/** Tick spacing on the per-layer x axis: every layer up to 20, then every 5th. */
export const layerTick = (n) => (n > 20 ? 5 : 1);

/**
 * The per-layer x axis of `n` layers, at x = 1..n: its range and ticks (as layerTick spaces them for
 * n - 1 hidden layers and the readout), labelled with the layers' `names` where the run names them.
 */
export function layerAxis(n, names = null) {
  const dtick = layerTick(n - 1), range = [0.5, n + 0.5];
  if (!names) return { dtick, range };
  const tickvals = layers(n).filter((x) => (x - 1) % dtick === 0);
  // the hover's title is the tick's text; a name slanted past the plot's right edge is drawn all the same
  return { tickmode: "array", tickvals, ticktext: tickvals.map((x) => names[x - 1] ?? String(x)), ticklabeloverflow: "allow", range };
}

/**
 * Hover text of a trace whose points are named apart from the layers they are drawn at (`names[i]`
 * for point i: a run's probes): {text, hovertemplate}, or {} without names.
 */
export const namedHover = (names) => (names ? { text: names, hovertemplate: "%{y:.3g} at %{text}" } : {});

/**
 * Replace the y (and x) of `traces` without a full redraw: Plotly.animate with a zero-length
 * transition and `redraw: false` only rewrites the traces' paths (about half the cost of
 * Plotly.restyle, which recomputes and redraws the whole plot). Scatter traces only; the
 * axes must have fixed ranges, since nothing is autoranged on this path.
 * @param {{x?: number[], y: (number|null)[]}[]} data  one entry per index in `traces`
 */
export function animateTraces(gd, data, traces) {
  if (!gd.dataset.live) {
    // The first data after newPlot goes through restyle: a full draw, which also fills the legend
    // (an animation frame only rewrites the traces' paths).
    gd.dataset.live = "1";
    const update = { y: data.map((d) => d.y) };
    if (data.every((d) => d.x)) update.x = data.map((d) => d.x);
    return Plotly.restyle(gd, update, traces);
  }
  return Plotly.animate(gd, { data, traces }, { transition: { duration: 0 }, frame: { duration: 0, redraw: false },
    mode: "immediate" }).catch(() => {});  // an animation cut short by the next one is expected
}

/** The same for a linear axis, in steps of `quantum`. */
export class StickyRange {
  constructor(quantum, spareFraction = 0.6) {
    this.q = quantum;
    this.spare = spareFraction;
    this.range = null;
  }

  update(values, min = -Infinity, max = Infinity) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) {
      if (finite(v) === null) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (!Number.isFinite(lo)) return null;
    const r = this.range, q = this.q;
    if (r && r[0] <= lo && hi <= r[1] && (r[1] - r[0]) * (1 - this.spare) <= hi - lo + 2 * q) return null;
    this.range = [Math.max(min, Math.floor(lo / q - 0.5) * q), Math.min(max, Math.ceil(hi / q + 0.5) * q)];
    return this.range;
  }
}

/** Exponential moving average that skips nulls (per-batch loss is noisy). */
export function ema(a, alpha = 0.08) {
  let m = null;
  return a.map((v) => {
    if (typeof v !== "number" || !Number.isFinite(v)) return null;
    m = m === null ? v : m + alpha * (v - m);
    return m;
  });
}

const fmt = (v) => (typeof v === "number" ? +v.toPrecision(3) : Array.isArray(v) ? `(${v.length})` : String(v));  // a list (drawn points): its length

/** "step 120: sigmoid -> relu, learning_rate 0.1 -> 0.01" for a timeline event (a key only one of
 * the two models takes, null on the other side, is left out: "model mlp -> lstm" says it). */
export function eventLabel(ev) {
  const parts = Object.entries(ev.changes || {}).filter(([, [a, b]]) => a !== null && b !== null).map(([k, [a, b]]) =>
    k === "activation" ? `${a} -> ${b}` : `${k} ${fmt(a)} -> ${fmt(b)}`);
  const what = parts.length ? parts.join(", ") : ev.kind;
  return `step ${ev.step}: ${what}`;
}

/** A faded vertical band at layer `x` (the layer picked on the chain-rule chart); [] when none. */
export function highlightShape(x) {
  if (x === null || x === undefined) return [];
  return [{ type: "rect", xref: "x", x0: x - 0.5, x1: x + 0.5, yref: "paper", y0: 0, y1: 1,
    fillcolor: OI.yellow, opacity: 0.35, line: { width: 0 }, layer: "below" }];
}

/** The faded earlier curves of a profile-like chart: a snapshot of its curve every `everyMs`. */
export class Trail {
  constructor(everyMs) {
    this.every = everyMs;
    this.curves = [];
    this.at = 0;
  }

  /** Keep `curve` when a snapshot is due; `older` is TRAIL curves, oldest first ([] where none yet). */
  update(now, curve) {
    const snap = now - this.at > this.every;
    if (snap) {
      this.at = now;
      this.curves.push(curve);
      if (this.curves.length > TRAIL + 1) this.curves.shift();
    }
    const older = this.curves.slice(0, -1);
    while (older.length < TRAIL) older.unshift([]);
    return { snap, older };
  }
}
