// Gate saturation (recurrent models): per gate and layer, the fraction of gate values in a flat
// tail, where the gate passes (almost) no gradient; LSTM/GRU also the mean forget gate.
import { Chart } from "./chart.js";
import { OI, PLOT_CONFIG, Plotly, baseLayout, finite, layers } from "./plot.js";
import { RECURRENT } from "./timeprofile.js";

const COLORS = [OI.sky, OI.green, OI.purple, OI.blue];

export class GateChart extends Chart {
  static spec = {
    name: "gates", title: "Gate saturation", span: 3, every: 250, share: 0.05, models: RECURRENT,
    sub: "fraction of gate values below 0.05 or above 0.95 (tanh: beyond ±0.95), per layer",
    help: "A saturated gate has a flat slope, so the gradient through it is about zero. The forget gate is the exception the LSTM is built on: saturated open (near 1) it carries the cell state, and its gradient, unchanged from step to step. For the Elman RNN the bar is the fraction of units whose slope is below 0.05.",
    latest: ["gate_saturation", "forget_gate_mean"],
  };

  reset() {
    const { depth: L, model } = this.view.config, gates = (this.view.meta.recurrent || {}).gates || {};
    this.gates = gates[model] || [];
    Plotly.newPlot(this.el, layers(L).map((l) => ({ type: "bar", x: this.gates, y: [], name: `layer ${l}`,
      marker: { color: COLORS[l - 1] } })),
    baseLayout({ barmode: "group", xaxis: { title: { text: "gate", standoff: 4 } },
                 yaxis: { range: [0, 1], title: { text: "saturated fraction" } } }), PLOT_CONFIG);
  }

  draw() {
    const v = this.view, s = v.series.latest, sat = s.gate_saturation || [];
    const forget = (s.forget_gate_mean || []).map(finite);
    Plotly.restyle(this.el, { y: sat.map((row) => (row || []).map(finite)),
                              name: sat.map((_, l) => (forget[l] !== null && forget[l] !== undefined
                                ? `layer ${l + 1} (mean forget ${forget[l].toFixed(2)})` : `layer ${l + 1}`)) });
    v.info.gateSaturation = sat;
  }
}
