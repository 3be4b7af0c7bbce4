// Activations per hidden layer now: mean and std, and the saturated and dead fractions as bars.
import { Chart } from "./chart.js";
import { OI, PLOT_CONFIG, Plotly, StickyRange, animateTraces, axis, baseLayout, layerTick, layers } from "./plot.js";

export class ActsChart extends Chart {
  static spec = {
    name: "acts", requires: ["act_std"], title: "Activations", sub: "mean, std · bars: saturated, dead", span: 2, every: 200, share: 0.08, layers: true,
    help: "Each hidden layer's outputs on this batch: their mean and spread, the fraction of units saturated (where the slope is nearly zero) and the fraction dead (never firing). Saturated and dead units pass almost no gradient back.",
    latest: ["act_mean", "act_std", "saturation", "dead"],
  };

  reset() {
    const D = this.view.config.depth, x = layers(D), markers = D <= 20 ? "lines+markers" : "lines";
    this.range = new StickyRange(0.5);
    Plotly.newPlot(this.el, [
      { x, y: [], type: "bar", name: "saturated", yaxis: "y2", marker: { color: OI.orange }, opacity: 0.55 },
      { x, y: [], type: "bar", name: "dead", yaxis: "y2", marker: { color: OI.grey }, opacity: 0.6 },
      { x, y: [], mode: markers, name: "mean", line: { color: OI.blue, width: 2 }, marker: { size: 4 } },
      { x, y: [], mode: markers, name: "std", line: { color: OI.green, width: 2 }, marker: { size: 4 } },
    ], baseLayout({ barmode: "group", xaxis: { title: { text: "hidden layer", standoff: 4 }, dtick: layerTick(D), range: [0.5, D + 0.5] },
                    yaxis: { title: { text: "activation", standoff: 2 }, range: [-1, 1] },
                    yaxis2: axis({ overlaying: "y", side: "right", range: [0, 1], showgrid: false, tickformat: ".0%" }) }), PLOT_CONFIG);
  }

  draw() {
    const s = this.view.series.latest;
    const [sat, dead, mean, std] = [s.saturation, s.dead, s.act_mean, s.act_std].map((a) => a || []);
    const r = this.range.update([...mean, ...std, 0]);
    if (r) Plotly.relayout(this.el, { "yaxis.range": r });
    animateTraces(this.el, [sat, dead, mean, std].map((y) => ({ y })), [0, 1, 2, 3]);
  }
}
