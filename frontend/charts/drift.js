// Distance from the initial weights, every layer over the whole run: log10 ||W_t - W_0|| / ||W_0||.
import { Chart } from "./chart.js";
import { ImageHeatmap, VIRIDIS } from "./imagemap.js";
import { layers, logz } from "./plot.js";

export class DriftChart extends Chart {
  static spec = {
    name: "drift", requires: ["init_distance"], title: "Distance from init over time", sub: "log10 ‖W−W₀‖/‖W₀‖", span: 2, every: 300, share: 0.05, markers: true, labels: false,
    help: "How far each layer's weights have moved from where they started, over the run. With vanishing gradients the first layers (bottom rows) stay dark: they remain close to their random start while the last layers learn.",
    history: ["init_distance"],
  };

  constructor(el, view) {
    super(el, view);
    this.map = new ImageHeatmap(el, { scale: VIRIDIS, zmin: -4, zmax: 0, autoz: true, xtitle: "step", ytitle: "layer",
      colorbar: "log10", hovertemplate: "step %{x:.0f}<br>layer %{y}<br>log10 distance %{z:.2f}<extra></extra>" });
  }

  reset() {
    this.map.reset(layers(this.view.config.depth + 1));
  }

  draw() {
    const S = this.view.series, cols = S.h.init_distance;
    this.map.draw(S.step, (row, i) => (cols[i] ? logz(cols[i][row]) : null));
  }
}
