// The global gradient norm before and after clipping, with the clipping threshold.
import { Chart } from "./chart.js";
import { OI, PLOT_CONFIG, Plotly, StickyLogRange, animateTraces, baseLayout, logAxisKeys } from "./plot.js";
import { firstVisible, stepRange } from "./timeaxis.js";

export class ClipChart extends Chart {
  static spec = {
    name: "clip", title: "Global gradient norm", sub: "before / after clipping", span: 2, every: 150, share: 0.08, markers: true, window: true,
    help: "The norm of the whole gradient, before and after clipping. Clipping by norm caps it at the dashed threshold; spikes above the line are the steps that clipping tamed. An exploding run climbs here first.",
    history: ["global_grad_norm", "clipped_global_grad_norm"], models: ["mlp", "rnn", "lstm", "gru"],
  };

  reset() {
    this.xrange = null;
    this.yrange = new StickyLogRange();
    Plotly.newPlot(this.el, [
      { x: [], y: [], mode: "lines", name: "before clipping", line: { color: OI.blue, width: 2 } },
      { x: [], y: [], mode: "lines", name: "after clipping", line: { color: OI.orange, width: 1.6, dash: "dash" } },
    ], baseLayout({ xaxis: { title: { text: "step", standoff: 4 }, range: [0, 100] }, yaxis: { type: "log", exponentformat: "power", range: [-3, 1] } }), PLOT_CONFIG);
  }

  threshold() {
    const c = this.view.config;
    return c.clip_mode === "norm" ? c.clip_value : null;
  }

  shapes() {
    const t = this.threshold();
    return t === null ? [] : [{ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: t, y1: t, line: { color: OI.vermilion, width: 1.5, dash: "dash" } }];
  }

  configChanged(prev) {
    const c = this.view.config;
    if (prev.clip_mode !== c.clip_mode || prev.clip_value !== c.clip_value) this.decorate();
    this.dirty = true;
  }

  draw() {
    const S = this.view.series, x = S.step, gl = S.h.global_grad_norm, cl = S.h.clipped_global_grad_norm;
    const keys = {}, xr = stepRange(x, this.view.windowMode, this.xrange);
    if (xr) { this.xrange = xr; keys["xaxis.range"] = xr; }
    const i0 = firstVisible(x, this.xrange[0]), t = this.threshold();
    const yr = this.yrange.update([...gl.slice(i0), ...cl.slice(i0), ...(t === null ? [] : [t])]);
    if (yr) Object.assign(keys, logAxisKeys("yaxis", yr));
    if (Object.keys(keys).length) Plotly.relayout(this.el, keys);
    animateTraces(this.el, [{ x, y: gl }, { x, y: cl }], [0, 1]);
  }
}
