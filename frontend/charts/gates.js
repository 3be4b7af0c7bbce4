// Gates (the models that emit gate_saturation): per gate and layer, the fraction of gate values in
// a flat tail (bars, labelled, so that 0% reads as 0% and not as an empty chart) and the mean gate
// value (◆). A model without gates (its statistics have no gate_mean, models.js) shows its units
// instead: the fraction whose slope is below 0.05 and the RMS slope, and says so.
import { Chart } from "./chart.js";
import { OI, PLOT_CONFIG, Plotly, baseLayout, finite, layers } from "./plot.js";
import { gatesOf, isGated, modelName } from "../models.js";

const COLORS = [OI.sky, OI.green, OI.purple, OI.blue];
const pct = (v) => (v === null ? "–" : v > 0 && v < 0.01 ? "<1%" : `${Math.round(100 * v)}%`);

export class GateChart extends Chart {
  static spec = {
    name: "gates", requires: ["gate_saturation"], title: "Gates", span: 3, every: 250, share: 0.05, sub: "",
    help: "A saturated gate has a flat slope, so the gradient through it is about zero. The forget gate is the exception gated cells are built on: saturated open (near 1) it carries the cell state, and its gradient, unchanged from step to step. Bars: the fraction of gate values below 0.05 or above 0.95 (tanh: beyond ±0.95); ◆: the mean gate value. At the start every gate sits near its middle, so the bars read 0%.",
    latest: ["gate_saturation", "gate_mean", "forget_gate_mean", "slope_rms"],
  };

  /** Whether the config's model has gates (models.js: its statistics include gate_mean). */
  gated() {
    return isGated(this.view.meta, this.view.config.model);
  }

  reset() {
    const { depth: L, model } = this.view.config, name = modelName(this.view.meta, model);
    this.gates = this.gated() ? gatesOf(this.view.meta, model) : ["units"];
    const sub = this.gated() ? "bars: saturated fraction · ◆ mean value, per layer"
      : `${name} has no gates: its units' share with |φ′| < 0.05 (bars) and RMS slope φ′ (◆)`;
    document.getElementById("sub-gates").textContent = sub;
    const bars = layers(L).map((l) => ({ type: "bar", x: this.gates, y: [], name: `layer ${l}`, legendgroup: `l${l}`,
      marker: { color: COLORS[l - 1] }, text: [], textposition: "outside", cliponaxis: false, offsetgroup: String(l),
      hovertemplate: `layer ${l} %{x}: %{text} saturated<extra></extra>` }));
    const means = layers(L).map((l) => ({ type: "scatter", mode: "markers", x: this.gates, y: [], showlegend: false, legendgroup: `l${l}`,
      offsetgroup: String(l), name: this.gated() ? `layer ${l} mean` : `layer ${l} RMS slope`,
      marker: { symbol: "diamond", size: 9, color: COLORS[l - 1], line: { color: "#fff", width: 1 } },
      hovertemplate: `layer ${l} %{x}: ${this.gated() ? "mean" : "RMS slope"} %{y:.2f}<extra></extra>` }));
    Plotly.newPlot(this.el, [...bars, ...means],
      baseLayout({ barmode: "group", scattermode: "group", hovermode: "closest",
        xaxis: { title: { text: this.gated() ? "gate" : "", standoff: 4 } },
        yaxis: { range: [0, 1.12], tickformat: ".0%", title: { text: this.gated() ? "saturated · mean" : "share · slope", standoff: 2 } },
        annotations: this.annotations() }),
      PLOT_CONFIG);
  }

  /** On the chart itself: a model without gates says that these are its units. */
  annotations() {
    if (this.gated()) return [];
    return [{ xref: "paper", yref: "paper", x: 0.01, y: 0.98, xanchor: "left", yanchor: "top", showarrow: false,
              text: `${modelName(this.view.meta, this.view.config.model)}: no gates, so its units instead`, font: { size: 11, color: OI.vermilion } }];
  }

  draw() {
    const v = this.view, s = v.series.latest, L = v.config.depth, gated = this.gated();
    const sat = (s.gate_saturation || []).map((row) => (row || []).map(finite));
    // ◆: each gate's mean value, or (no gates) the units' RMS slope, one per layer
    const marks = gated ? (s.gate_mean || []).map((row) => (row || []).map(finite)) : (s.slope_rms || []).map((x) => [finite(x)]);
    const lo = Math.min(0, ...marks.flat().filter((x) => x !== null)), hi = Math.max(1, ...marks.flat().filter((x) => x !== null));
    if (lo !== this.lo || hi !== this.hi) {
      [this.lo, this.hi] = [lo, hi];
      const percent = gated && hi <= 1 && lo >= 0;  // fractions and gate means; a slope or a tanh gate's mean is a number
      Plotly.relayout(this.el, { "yaxis.range": [lo - (lo < 0 ? 0.1 : 0), hi + 0.12], "yaxis.tickformat": percent ? ".0%" : ".1f" });
    }
    const forget = (s.forget_gate_mean || []).map(finite);
    const rows = layers(L, 0);
    Plotly.restyle(this.el, {
      y: [...rows.map((l) => sat[l] || []), ...rows.map((l) => marks[l] || [])],
      text: [...rows.map((l) => (sat[l] || []).map(pct)), ...rows.map(() => [])],
      name: [...rows.map((l) => (typeof forget[l] === "number" ? `layer ${l + 1} (mean kept ${forget[l].toFixed(2)})` : `layer ${l + 1}`)),
        ...rows.map((l) => `layer ${l + 1} ${gated ? "mean" : "RMS slope"}`)],
    });
    v.info.gateSaturation = s.gate_saturation || [];
    v.info.gateMarks = marks;
  }
}
