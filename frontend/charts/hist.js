// The gradient histogram of one layer over time: counts of log10|dL/dW| per bin, as an image.
import { Chart } from "./chart.js";
import { CIVIDIS, ImageHeatmap } from "./imagemap.js";
import { layers } from "./plot.js";

/** [[value, text]] of every layer (hidden layers, then the output layer). */
export const layerOptions = (view) => layers(view.config.depth + 1, 0).map((i) =>
  [String(i), i === view.config.depth ? `output (${i + 1})` : `layer ${i + 1}`]);

/** Bin centres of `edges` (length bins + 1). */
export const centres = (edges) => edges.slice(0, -1).map((a, i) => (a + edges[i + 1]) / 2);

export class HistChart extends Chart {
  static spec = {
    name: "hist", requires: ["hist"], title: "Gradient histogram", span: 2, every: 250, share: 0.05, markers: true, labels: false,
    help: "How the selected layer's weight gradients are spread, step by step: each column counts the entries in half-decade bins of |dL/dW|. A vanishing layer's mass slides down the scale; clipping by value piles it up at the threshold.",
    history: ["hist"],
    select: { id: "hist-layer", label: "histogram layer", options: layerOptions, value: (view) => String(view.layerOr(0)) },
  };

  constructor(el, view) {
    super(el, view);
    this.map = new ImageHeatmap(el, { scale: CIVIDIS, zmin: 0, zmax: 3.7, xtitle: "step", ytitle: "log10 |dL/dW|",
      colorbar: "log10 n", hovertemplate: "step %{x:.0f}<br>log10|g| %{y:.1f}<br>log10(1+count) %{z:.2f}<extra></extra>" });
  }

  reset() {
    this.map.reset(centres(this.view.meta.hist_edges));
  }

  onSelect(value) {
    this.view.selectLayer(Number(value));
  }

  draw() {
    const S = this.view.series, l = this.view.layerOr(0), cols = S.h.hist;
    this.map.draw(S.step, (b, i) => {
      const c = cols[i] && cols[i][l];
      return c ? Math.log10(1 + (c[b] || 0)) : null;
    });
  }
}
