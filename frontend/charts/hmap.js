// The selected layer's activations h over time: counts in the bins meta.h_edges, as an image.
import { Chart } from "./chart.js";
import { layerOptions } from "./hist.js";
import { CIVIDIS, ImageHeatmap } from "./imagemap.js";
import { Plotly, layers } from "./plot.js";

export class HmapChart extends Chart {
  static spec = {
    name: "hmap", requires: ["h_hist"], title: "Activations over time", span: 2, every: 300, share: 0.05, markers: true, labels: false,
    help: "How the selected hidden layer's outputs h are spread, step by step (each column a histogram). Sigmoid outputs crowding at 0 and 1, or tanh's at ±1, are saturated units; a band stuck at exactly 0 under ReLU is dead units.",
    history: ["h_hist"],
    select: { id: "hmap-layer", label: "layer of the activations chart", options: (view) => layerOptions(view).slice(0, -1),
              value: (view) => String(Math.min(view.layerOr(0), view.config.depth - 1)) },
  };

  constructor(el, view) {
    super(el, view);
    this.map = new ImageHeatmap(el, { scale: CIVIDIS, zmin: 0, zmax: 2.8, xtitle: "step", ytitle: "h",
      colorbar: "log10 n", hovertemplate: "step %{x:.0f}<br>bin %{y}<br>log10(1+count) %{z:.2f}<extra></extra>" });
  }

  reset() {
    const edges = this.view.meta.h_edges;  // uneven: fine bins over [-1, 1], coarse outside
    this.map.reset(layers(edges.length - 1, 0));
    const shown = [edges[0], -1, -0.5, 0, 0.5, 1, edges[edges.length - 1]];
    const ticks = edges.map((e, i) => [i - 0.5, e]).filter(([, e]) => shown.some((t) => Math.abs(t - e) < 1e-9));
    Plotly.relayout(this.el, { "yaxis.tickvals": ticks.map(([i]) => i), "yaxis.ticktext": ticks.map(([, e]) => String(e)) });
  }

  onSelect(value) {
    this.view.selectLayer(Number(value));
  }

  draw() {
    const v = this.view, l = Math.min(v.layerOr(0), v.config.depth - 1), cols = v.series.h.h_hist;
    this.map.draw(v.series.step, (b, i) => {
      const c = cols[i] && cols[i][l];
      return c ? Math.log10(1 + (c[b] || 0)) : null;
    });
  }
}
