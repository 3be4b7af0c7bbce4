// D(x) and D(G(z)) over time: D's mean output on real points and on G's samples (probabilities
// under the sigmoid losses, the critic's raw values under the Wasserstein loss).
import { Chart } from "./chart.js";
import { OI, PLOT_CONFIG, Plotly, StickyRange, animateTraces, baseLayout, ema } from "./plot.js";
import { firstVisible, stepRange } from "./timeaxis.js";
import { isProbability, lossOf } from "../models.js";

export class OddsChart extends Chart {
  static spec = {
    name: "odds", requires: ["d_real", "d_fake"], title: "D(x) and D(G(z))", span: 2, every: 150, share: 0.08, markers: true, window: true,
    sub: "mean on real points and on G's samples",
    help: "D's mean verdict on real points and on G's samples, faint per step and smoothed. At the game's equilibrium both sit at 0.5; a D that wins pushes D(x) to 1 and D(G(z)) to 0, and under the saturating loss that is exactly when G's gradient vanishes. Under the Wasserstein loss these are the critic's raw values; their difference estimates the Wasserstein distance.",
    history: ["d_real", "d_fake"],
  };

  reset() {
    this.xrange = null;
    this.range = new StickyRange(0.5);
    const faint = (name, color) => ({ x: [], y: [], mode: "lines", name, showlegend: false, hoverinfo: "skip", line: { color, width: 1 }, opacity: 0.3 });
    Plotly.newPlot(this.el, [
      faint("D(x)", OI.green), faint("D(G(z))", OI.vermilion),
      { x: [], y: [], mode: "lines", name: "D(x), real", line: { color: OI.green, width: 2.2 } },
      { x: [], y: [], mode: "lines", name: "D(G(z)), generated", line: { color: OI.vermilion, width: 2.2 } },
    ], baseLayout({ xaxis: { title: { text: "step", standoff: 4 }, range: [0, 100] }, yaxis: { range: [0, 1], title: { text: "D", standoff: 2 } } }), PLOT_CONFIG);
  }

  configChanged(prev) {
    const v = this.view;
    if (lossOf(v.meta, prev) !== lossOf(v.meta, v.config)) this.range = new StickyRange(0.5);  // a new scale: probabilities or raw values
    this.dirty = true;
  }

  draw() {
    const v = this.view, S = v.series, x = S.step.slice(), real = S.h.d_real, fake = S.h.d_fake, keys = {};
    const xr = stepRange(x, v.windowMode, this.xrange);
    if (xr) { this.xrange = xr; keys["xaxis.range"] = xr; }
    const from = firstVisible(x, this.xrange[0]);
    const yr = isProbability(v.meta, v.config) ? (this.range.range ? null : (this.range.range = [0, 1]))
      : this.range.update([...real.slice(from), ...fake.slice(from)]);
    if (yr) keys["yaxis.range"] = yr;
    if (Object.keys(keys).length) Plotly.relayout(this.el, keys);
    animateTraces(this.el, [real, fake, ema(real), ema(fake)].map((y) => ({ x, y })), [0, 1, 2, 3]);
  }
}
