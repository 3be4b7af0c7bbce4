// The global gradient norm before and after clipping, with the clipping threshold.
import { Chart } from "./chart.js";
import { LogAxis } from "./logaxis.js";
import { OI, PLOT_CONFIG, Plotly, animateTraces, axis, baseLayout } from "./plot.js";
import { firstVisible, stepRange } from "./timeaxis.js";

export class ClipChart extends Chart {
  static spec = {
    name: "clip", requires: ["global_grad_norm"], title: "Clipping", sub: "global gradient norm before / after · cosine, fraction changed", span: 2, every: 150, share: 0.08, markers: true, window: true,
    help: "Top: the norm of the whole gradient before and after clipping, with the threshold dashed. By norm, everything above the line is scaled down onto it; by value, each entry is capped, so a gradient whose norm is below the line is never touched. Bottom: the cosine between the raw and the clipped gradient (1: same direction) and the fraction of entries clipping changed. An exploding run climbs here first.",
    history: ["global_grad_norm", "clipped_global_grad_norm", "clip_cosine", "clip_fraction"],
  };

  reset() {
    this.xrange = null;
    this.axis = new LogAxis({ ticks: 3, start: [-3, 1] });
    Plotly.newPlot(this.el, [
      { x: [], y: [], mode: "lines", name: "before clipping", line: { color: OI.blue, width: 2 } },
      { x: [], y: [], mode: "lines", name: "after clipping", line: { color: OI.orange, width: 1.6, dash: "dash" } },
      { x: [], y: [], mode: "lines", name: "clip_cosine", yaxis: "y2", line: { color: OI.purple, width: 1.6 } },
      { x: [], y: [], mode: "lines", name: "clip_fraction", yaxis: "y2", line: { color: OI.grey, width: 1.6 } },
    ], baseLayout({ xaxis: { title: { text: "step", standoff: 4 }, anchor: "y2", range: [0, 100] },
                    yaxis: { type: "log", domain: [0.42, 1], ...this.axis.axis() },
                    yaxis2: axis({ domain: [0, 0.34], range: [-0.05, 1.05], dtick: 0.5 }) }), PLOT_CONFIG);
  }

  /** The threshold on the norm axis: the norm cap, or the per-entry cap (no gradient of a smaller norm has an entry above it). */
  threshold() {
    const c = this.view.config;
    return c.clip_mode === "none" ? null : c.clip_value;
  }

  shapes() {
    const t = this.threshold(), floor = this.axis ? this.axis.shapes() : [];
    return t === null ? floor : [...floor, { type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: t, y1: t, line: { color: OI.vermilion, width: 1.5, dash: "dash" } }];
  }

  annotations() {
    const t = this.threshold();
    return t === null ? [] : [{ xref: "paper", x: 1, yref: "y", y: Math.log10(t), showarrow: false, xanchor: "right", yanchor: "bottom",
      text: this.view.config.clip_mode === "norm" ? "norm cap" : "per-entry cap", font: { size: 10, color: OI.vermilion } }];
  }

  configChanged(prev) {
    const c = this.view.config;
    if (prev.clip_mode !== c.clip_mode || prev.clip_value !== c.clip_value) this.decorate();
    this.dirty = true;
  }

  draw() {
    const S = this.view.series, x = S.step.slice(), gl = S.h.global_grad_norm, cl = S.h.clipped_global_grad_norm;
    const keys = {}, xr = stepRange(x, this.view.windowMode, this.xrange);
    if (xr) { this.xrange = xr; keys["xaxis.range"] = xr; }
    const i0 = firstVisible(x, this.xrange[0]), t = this.threshold();
    const ax = this.axis, props = ax.update([...gl.slice(i0), ...cl.slice(i0), ...(t === null ? [] : [t])]);
    if (props) Object.assign(keys, ax.keys("yaxis", props));  // a short axis: at most 3 ticks
    if (Object.keys(keys).length) Plotly.relayout(this.el, keys);
    if (props) this.decorate();
    animateTraces(this.el, [ax.ys(gl), ax.ys(cl), S.h.clip_cosine, S.h.clip_fraction].map((y) => ({ x, y })), [0, 1, 2, 3]);
  }
}
