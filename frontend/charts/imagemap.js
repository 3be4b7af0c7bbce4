// A step x row heat map drawn as one Plotly layout image: the colours are painted into a small
// canvas here and only the image's source changes per update (about 3 ms at depth 50, against
// 20-40 ms for restyling a heatmap trace's z). An invisible heatmap trace over the same grid
// carries the colour bar and the hover values; it is refreshed only while the pointer is over
// the chart, at most once a second.
import { OI, PLOT_CONFIG, Plotly, StickyRange, baseLayout } from "./plot.js";

// Stops of matplotlib's viridis and cividis; the same arrays colour the canvas and the colour bar.
export const VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"];
export const CIVIDIS = ["#00224e", "#123570", "#3b496c", "#575d6d", "#707173", "#8a8779", "#a69d75", "#c4b56c", "#e4cf5b", "#fee838"];
const HOVER_MS = 1000;
const MAX_COLUMNS = 320;  // about one column per two pixels of a half-width card

const ZERO = [0xD5, 0x5E, 0x00];  // an exact zero (-inf on a log scale): vermilion, a colour viridis and cividis never take
const plotlyScale = (stops) => stops.map((c, i) => [i / (stops.length - 1), c]);

/** 256 RGB triplets interpolated between `stops` (hex). */
function lut(stops) {
  const rgb = stops.map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
  const out = new Uint8ClampedArray(256 * 3);
  for (let k = 0; k < 256; k++) {
    const t = (k / 255) * (rgb.length - 1), i = Math.min(rgb.length - 2, Math.floor(t)), f = t - i;
    for (let c = 0; c < 3; c++) out[3 * k + c] = rgb[i][c] + f * (rgb[i + 1][c] - rgb[i][c]);
  }
  return out;
}

/**
 * Columns on a uniform step grid: for each of `n` steps from x[0] to x[last], the latest sample at
 * or before it (the series thins old steps, so its samples are not evenly spaced).
 * @returns {{steps: number[], index: number[]}}
 */
export function uniformColumns(x, n = MAX_COLUMNS) {
  const first = x[0], last = x[x.length - 1], cols = Math.max(1, Math.min(n, x.length));
  const dx = cols > 1 ? (last - first) / (cols - 1) : 1;
  const steps = [], index = [];
  for (let j = 0, i = 0; j < cols; j++) {
    const t = first + j * dx;
    while (i + 1 < x.length && x[i + 1] <= t + 1e-9) i++;
    steps.push(t);
    index.push(i);
  }
  return { steps, index };
}

export class ImageHeatmap {
  /**
   * @param {HTMLElement} el
   * @param {{scale: string[], zmin: number, zmax: number, xtitle: string, ytitle: string,
   *          colorbar: string, hovertemplate: string, autoz?: boolean, xspan?: number[]}} opts
   *   autoz: the colour range follows the data in whole units (sticky, so the colour bar is redrawn rarely)
   *   xspan: a fixed [lo, hi] the columns cover (bins: their outer edges); default: the steps, growing
   */
  constructor(el, opts) {
    this.el = el;
    this.opts = opts;
    this.lut = lut(opts.scale);
    this.canvas = document.createElement("canvas");
    this.grid = null;
    this.hoverAt = 0;
    el.addEventListener("mousemove", () => this.refreshHover());
  }

  /**
   * Plot afresh with rows at `y` (evenly spaced: layer numbers or bin centres); `names`: the rows'
   * names for the ticks and the hover (a run's layer names; default: the numbers), `ytitle`: the
   * y axis' title instead of the one given to the constructor.
   */
  reset(y, { names = null, ytitle = null } = {}) {
    const o = this.opts;
    this.y = y;
    this.names = names;
    const ticks = names ? { tickmode: "array", tickvals: y.filter((_, r) => r % Math.ceil(y.length / 20) === 0),
      ticktext: names.filter((_, r) => r % Math.ceil(y.length / 20) === 0) } : {};
    const hovertemplate = names ? o.hovertemplate.replace(/\w+ %\{y\}/, "%{text}") : o.hovertemplate;
    this.xrange = null;
    this.grid = null;
    this.hasImage = false;
    this.zeros = false;
    this.hoverAt = 0;
    this.zrange = new StickyRange(1, 0.7);
    Plotly.newPlot(this.el, [{ type: "heatmap", x: [], y, z: [], opacity: 0, colorscale: plotlyScale(o.scale),
      zmin: o.zmin, zmax: o.zmax, zauto: false, hoverongaps: false, hovertemplate,
      colorbar: { thickness: 10, len: 0.9, title: { text: o.colorbar, side: "right" } } }],
    baseLayout({ showlegend: false, hovermode: "closest",
      xaxis: { title: { text: o.xtitle, standoff: 4 }, range: [0, 100], autorange: false, showgrid: false, zeroline: false },
      yaxis: { title: { text: ytitle || o.ytitle, standoff: 2 }, range: this.yrange(), autorange: false, showgrid: false, zeroline: false, ...ticks } }), PLOT_CONFIG);
  }

  yrange() {
    const y = this.y, h = y.length > 1 ? (y[1] - y[0]) / 2 : 0.5;
    return [y[0] - h, y[y.length - 1] + h];
  }

  /**
   * Show `value(row, i)` for every row and every sample i of the steps `x`.
   * @param {number[]} x  steps, increasing
   * @param {(row: number, i: number) => number|null} value  null: no colour (a gap); -Infinity: an
   *   exact zero on a log scale (log10 0), painted in its own colour and named on the colour bar
   */
  draw(x, value) {
    if (!x.length) return;
    const { steps, index } = uniformColumns(x);
    const R = this.y.length, C = steps.length, o = this.opts;
    const z = Array.from({ length: R }, (_, r) => index.map((i) => value(r, i)));
    this.grid = { steps, z };
    const zr = o.autoz ? this.zrange.update(z.flat()) : null;
    const zeros = z.some((row) => row.includes(-Infinity));
    if (zr || zeros !== this.zeros) {
      if (zr) [o.zmin, o.zmax] = zr;
      this.zeros = zeros;
      const title = zeros ? `${o.colorbar}<br><span style="color:${OI.vermilion}">■</span> = 0` : o.colorbar;
      Plotly.restyle(this.el, { zmin: o.zmin, zmax: o.zmax, "colorbar.title.text": title }, [0]);
    }
    const span = o.zmax - o.zmin;
    const cv = this.canvas;
    cv.width = C;
    cv.height = R;
    const ctx = cv.getContext("2d"), img = ctx.createImageData(C, R), px = img.data;
    for (let r = 0; r < R; r++) {
      const row = z[r], base = (R - 1 - r) * C;  // canvas rows run top-down, the y axis bottom-up
      for (let c = 0; c < C; c++) {
        const v = row[c], p0 = 4 * (base + c);
        if (v === -Infinity) { px.set([...ZERO, 255], p0); continue; }
        if (v === null || v === undefined || !Number.isFinite(v)) continue;  // transparent
        const k = 3 * Math.round(255 * Math.min(1, Math.max(0, (v - o.zmin) / span))), p = 4 * (base + c);
        px[p] = this.lut[k]; px[p + 1] = this.lut[k + 1]; px[p + 2] = this.lut[k + 2]; px[p + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    // The columns span [first step, last step]; each is drawn right of its step (a column is
    // far narrower than a marker's label, and the axis' left end stays put as the run grows).
    const [y0, y1] = this.yrange(), extent = o.xspan || [steps[0], steps[0] + Math.max(steps[C - 1] - steps[0], 1)];
    const x0 = extent[0], width = extent[1] - extent[0];
    const image = { source: cv.toDataURL(), xref: "x", yref: "y", x: x0, y: y1, sizex: width,
      sizey: y1 - y0, sizing: "stretch", xanchor: "left", yanchor: "top", layer: "below" };
    // Edits of an existing image's keys redraw only the images, not the plot.
    const keys = this.hasImage ? Object.fromEntries(["source", "x", "sizex"].map((k) => [`images[0].${k}`, image[k]])) : { images: [image] };
    this.hasImage = true;
    const xr = o.xspan ? (this.xrange ? null : (this.xrange = o.xspan)) : this.stickyX(x0, x0 + width);
    if (xr) keys["xaxis.range"] = xr;
    Plotly.relayout(this.el, keys);
    if (!this.hoverAt) this.refreshHover(true);
  }

  /** The step axis ends where the data do, give or take 2% (so its ticks are redrawn at each 2% of growth, not each draw). */
  stickyX(lo, hi) {
    const r = this.xrange;
    if (r && r[0] === lo && hi <= r[1] && r[1] - hi <= 0.03 * (hi - lo)) return null;
    this.xrange = [lo, hi + 0.02 * (hi - lo)];
    return this.xrange;
  }

  /** Copy the current grid into the invisible trace that answers hovers. */
  refreshHover(force = false) {
    const now = performance.now();
    if (!this.grid || (!force && now - this.hoverAt < HOVER_MS)) return;
    this.hoverAt = now;
    const z = this.grid.z.map((row) => row.map((v) => (Number.isFinite(v) ? v : null)));
    const text = this.names ? { text: [z.map((row, r) => row.map(() => this.names[r]))] } : {};  // the rows' names, for the hover
    Plotly.restyle(this.el, { x: [this.grid.steps], y: [this.y], z: [z], ...text }, [0]);
  }
}
