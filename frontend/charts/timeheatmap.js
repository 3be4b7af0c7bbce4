// Time step x training step (the models that emit time_delta_norm): ‖dL/dh_t‖ of the top layer
// at every kept step of the run, log10, as an image.
import { Chart } from "./chart.js";
import { ImageHeatmap, VIRIDIS } from "./imagemap.js";
import { layers, logz } from "./plot.js";

export class TimeHeatmapChart extends Chart {
  static spec = {
    name: "timeheat", requires: ["time_delta_norm"], title: "Time step × training step", span: 3, tall: true, every: 50, share: 0.2, markers: true,
    labels: false,
    help: "Every time step of the sequence (rows, step 1 at the bottom) at every training step (columns), coloured by the gradient reaching it, ‖dL/dh_t‖ of the top layer, on a log scale. A gradient vanishing through time is a dark band along the early time steps; a switch to orthogonal W_hh or to a gated cell shows as a seam at its marker.",
    history: ["time_delta_norm"],
  };

  constructor(el, view) {
    super(el, view);
    this.map = new ImageHeatmap(el, { scale: VIRIDIS, zmin: -6, zmax: 0, autoz: true, xtitle: "training step", ytitle: "time step",
      colorbar: "log10", hovertemplate: "training step %{x:.0f}<br>time step %{y}<br>log10 %{z:.2f}<extra></extra>" });
  }

  reset() {
    this.map.reset(layers(this.view.config.seq_len));
  }

  draw() {
    const S = this.view.series, cols = S.h.time_delta_norm, top = this.view.config.depth - 1;
    this.map.draw(S.step, (row, i) => (cols[i] && cols[i][top] ? logz(cols[i][top][row]) : null));
    this.view.info.timeHeatColumns = S.step.length;
  }
}
