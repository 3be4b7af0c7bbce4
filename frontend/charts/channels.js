// Layer x channel now: each output channel's kernel gradient norm, log10, as a heat map (the CNN's
// channel_grad_norm). One channel dying or exploding shows as one dark or bright cell in its row.
import { Chart } from "./chart.js";
import { VIRIDIS } from "./imagemap.js";
import { PLOT_CONFIG, Plotly, StickyRange, baseLayout, logz } from "./plot.js";

const scale = VIRIDIS.map((c, i) => [i / (VIRIDIS.length - 1), c]);

export class ChannelsChart extends Chart {
  static spec = {
    name: "channels", requires: ["channel_grad_norm"], title: "Channels", sub: "log10 ||dL/dW|| per output channel, now",
    span: 3, every: 250, share: 0.08, layers: false,
    help: "Every conv layer (rows, input at the bottom) and each of its output channels (columns): the norm of the gradient of that channel's kernel, on a log scale. A vanishing gradient darkens whole rows toward the input; a single dark cell is a channel that stopped learning (a dead ReLU channel), a single bright one a channel whose gradient explodes. Cells past a layer's channels are empty.",
    latest: ["channel_grad_norm"],
  };

  reset() {
    this.range = new StickyRange(1);
    Plotly.newPlot(this.el, [{ type: "heatmap", z: [[]], colorscale: scale, zmin: -6, zmax: 0, xgap: 1, ygap: 1,
      colorbar: { title: { text: "log10", side: "right" }, thickness: 10 },
      hovertemplate: "layer %{y}<br>channel %{x}<br>log10 %{z:.2f}<extra></extra>" }],
    baseLayout({ showlegend: false, hovermode: "closest", xaxis: { title: { text: "output channel", standoff: 4 } },
                 yaxis: { title: { text: "layer", standoff: 2 } } }), PLOT_CONFIG);
  }

  draw() {
    const rows = (this.view.series.latest || {}).channel_grad_norm;
    if (!rows) return;
    const z = rows.map((row) => row.map((v) => { const l = logz(v); return l === -Infinity ? -12 : l; }));
    const flat = z.flat().filter((v) => v !== null);
    const r = flat.length ? this.range.update(flat) : null;
    const y = rows.map((_, i) => i + 1), x = rows[0].map((_, j) => j);
    Plotly.restyle(this.el, { z: [z], x: [x], y: [y], ...(r ? { zmin: r[0], zmax: r[1] } : {}) }, [0]);
  }
}
