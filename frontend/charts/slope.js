// Slope under the inputs: phi'(z) over the selected layer's distribution of z (its inputs),
// with the flat region |phi'| < 0.05 shaded: inputs there pass back almost no gradient.
import { Chart } from "./chart.js";
import { layerOptions, centres } from "./hist.js";
import { OI, PLOT_CONFIG, Plotly, StickyRange, animateTraces, axis, baseLayout } from "./plot.js";
import { SLOPED, defaultSlope, derivative } from "../theory.js";

const FLAT = 0.05;  // the engine's saturation threshold on |phi'(z)|

/** [z0, z1] intervals of `grid` where |f| < FLAT. */
function flatRegions(grid, f) {
  const out = [];
  let start = null;
  grid.forEach((z, i) => {
    const flat = Math.abs(f[i]) < FLAT;
    if (flat && start === null) start = z;
    if ((!flat || i === grid.length - 1) && start !== null) { out.push([start, z]); start = null; }
  });
  return out;
}

export class SlopeChart extends Chart {
  static spec = {
    name: "slope", requires: ["z_hist"], title: "Slope under the inputs", span: 3, tall: true, every: 200, share: 0.06, layers: false,
    help: "Backprop multiplies each unit's gradient by the activation's slope φ′(z) at that unit's input z. The bars are the selected layer's inputs on this batch, the curve is φ′, and the shaded band is where |φ′| < 0.05: inputs there pass back almost nothing. Sigmoid inputs that spread into the flat tails and tanh units saturating under large weights show up here; BatchNorm pulls them back to the middle.",
    latest: ["z_hist", "neg_slope"],
    select: { id: "slope-layer", label: "layer of the slope chart", options: (view) => layerOptions(view).slice(0, -1),
              value: (view) => String(Math.min(view.layerOr(0), view.config.depth - 1)) },
  };

  reset() {
    const edges = this.view.meta.z_edges;
    this.x = centres(edges);
    this.grid = Array.from({ length: 241 }, (_, i) => edges[0] + (i * (edges[edges.length - 1] - edges[0])) / 240);
    this.shaded = "";
    this.flat = [];
    this.range = new StickyRange(0.05);
    Plotly.newPlot(this.el, [
      { x: this.x, y: [], type: "bar", name: "inputs z", marker: { color: OI.sky }, opacity: 0.8, hovertemplate: "z %{x:.2f}: %{y:.1%}<extra></extra>" },
      { x: this.grid, y: [], mode: "lines", name: "φ′(z)", yaxis: "y2", line: { color: OI.vermilion, width: 2.2 } },
    ], baseLayout({ bargap: 0.05, hovermode: "closest", xaxis: { title: { text: "z, the input of φ", standoff: 4 }, range: [edges[0], edges[edges.length - 1]] },
                    yaxis: { title: { text: "share of inputs", standoff: 2 }, tickformat: ".0%", range: [0, 0.3] },
                    yaxis2: axis({ overlaying: "y", side: "right", showgrid: false, tickmode: "auto", title: { text: "φ′", standoff: 2 }, range: [0, 1.1] }) }), PLOT_CONFIG);
  }

  onSelect(value) {
    this.view.selectLayer(Number(value));
  }

  shapes() {
    return this.flat.map(([a, b]) => ({ type: "rect", xref: "x", x0: a, x1: b, yref: "paper", y0: 0, y1: 1,
      fillcolor: OI.grey, opacity: 0.18, line: { width: 0 }, layer: "below" }));
  }

  annotations() {
    if (!this.flat.length) return [];
    const [a, b] = this.flat[0];
    return [{ xref: "x", x: (a + b) / 2, yref: "paper", y: 0.98, text: "|φ′| < 0.05", showarrow: false, font: { size: 10, color: OI.grey } }];
  }

  /** The negative-side slope layer `l` uses (the engine's neg_slope: PReLU's learned one), else the default. */
  alpha(l) {
    const c = this.view.config, ns = this.view.series.latest && this.view.series.latest.neg_slope;
    if (SLOPED.includes(c.activation) && ns && typeof ns[l] === "number") return ns[l];
    return defaultSlope(c.activation, c.leaky_alpha);
  }

  draw() {
    const v = this.view, l = Math.min(v.layerOr(0), v.config.depth - 1), counts = (v.series.latest.z_hist || [])[l] || [];
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    const dphi = derivative(v.config.activation, this.alpha(l)), f = this.grid.map(dphi);
    const key = `${v.config.activation}:${this.alpha(l)}`;
    if (key !== this.shaded) {  // the shaded band and the slope axis change with the activation only
      this.shaded = key;
      this.flat = flatRegions(this.grid, f);
      Plotly.relayout(this.el, { "yaxis2.range": [Math.min(0, ...f) * 1.1, Math.max(...f) * 1.15] });
      this.decorate();
    }
    const share = counts.map((c) => c / total), r = this.range.update([...share, 0], 0, 1);
    if (r) Plotly.relayout(this.el, { "yaxis.range": [0, r[1]] });
    v.info.slope = { layer: l, share };
    animateTraces(this.el, [{ y: share }, { y: f }], [0, 1]);
  }
}
