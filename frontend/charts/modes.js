// Modes covered and sample quality over time, for the mixtures (the family's modes: ring8's 8,
// grid25's 25): how many modes hold at least a minimum share of G's samples within 3 standard
// deviations, and the share of samples within 3 standard deviations of some mode (as the Unrolled
// GAN and VEEGAN papers count them). Measured once a call, so most rows have none (the line joins them).
import { Chart } from "./chart.js";
import { OI, PLOT_CONFIG, Plotly, animateTraces, axis, baseLayout } from "./plot.js";
import { stepRange } from "./timeaxis.js";
import { familyOf, modesOf } from "../models.js";

export class ModesChart extends Chart {
  static spec = {
    name: "modes", requires: ["modes_covered", "high_quality"], title: "Modes covered", span: 2, every: 300, share: 0.05, markers: true, window: true,
    sub: "modes with G's samples · share of good samples",
    help: "How many of the mixture's modes G's samples cover, and the share of its samples that land near some mode. Mode collapse is the first falling while the second stays high: G makes good samples of a few modes only. A fix from the literature (the Wasserstein loss with a gradient penalty, a lower d_lr) brings the count back.",
    history: ["modes_covered", "high_quality"],
  };

  get modes() {
    const c = this.view.config;
    return modesOf(this.view.meta, c.model, c.dataset);
  }

  reset() {
    this.xrange = null;
    const n = Math.max(1, this.modes);
    Plotly.newPlot(this.el, [
      { x: [], y: [], mode: "lines+markers", name: "modes covered", connectgaps: true, line: { color: OI.blue, width: 2.2 }, marker: { size: 4 } },
      { x: [], y: [], mode: "lines", name: "good samples", yaxis: "y2", connectgaps: true, line: { color: OI.green, width: 1.8, dash: "dash" } },
    ], baseLayout({ xaxis: { title: { text: "step", standoff: 4 }, range: [0, 100] },
                    yaxis: { range: [0, n + 0.5], title: { text: `of ${n}`, standoff: 2 }, dtick: n > 10 ? 5 : 1 },
                    yaxis2: axis({ overlaying: "y", side: "right", range: [0, 1.02], tickformat: ".0%", showgrid: false }) }), PLOT_CONFIG);
  }

  emptyReason() {
    const c = this.view.config, mixtures = Object.keys(familyOf(this.view.meta, c.model).modes || {});
    if (!this.modes) return `${c.dataset} is not a mixture of modes: modes are counted on ${mixtures.join(" and ")}.`;
    return this.view.series.h.modes_covered.some((v) => typeof v === "number") ? null : "Modes are counted once a call: the first count comes within a second.";
  }

  draw() {
    const v = this.view, S = v.series, x = S.step.slice(), xr = stepRange(x, v.windowMode, this.xrange);
    if (!this.modes) return;
    if (xr) { this.xrange = xr; Plotly.relayout(this.el, { "xaxis.range": xr }); }
    animateTraces(this.el, [S.h.modes_covered, S.h.high_quality].map((y) => ({ x, y })), [0, 1]);
  }
}
