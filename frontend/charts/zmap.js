// Every hidden layer's distribution of inputs z now: layer x z, as an image.
import { Chart } from "./chart.js";
import { centres } from "./hist.js";
import { ImageHeatmap, VIRIDIS } from "./imagemap.js";
import { layers } from "./plot.js";

export class ZmapChart extends Chart {
  static spec = {
    name: "zmap", requires: ["z_hist"], title: "Inputs z of every layer", sub: "now · log10(1 + count)", span: 2, every: 300, share: 0.05, layers: false,
    help: "Each row is one hidden layer's histogram of z, the input of the activation, on this batch. Rows that spread into the flat tails of sigmoid or tanh (beyond about ±4) pass back little gradient; rows piled up at z < 0 under ReLU are dead units.",
    latest: ["z_hist"],
  };

  constructor(el, view) {
    super(el, view);
    this.map = new ImageHeatmap(el, { scale: VIRIDIS, zmin: 0, zmax: 2.8, xtitle: "z", ytitle: "hidden layer",
      colorbar: "log10 n", hovertemplate: "z %{x:.2f}<br>layer %{y}<br>log10(1+count) %{z:.2f}<extra></extra>" });
  }

  reset() {
    const edges = this.view.meta.z_edges;
    this.x = centres(edges);
    this.map.opts.xspan = [edges[0], edges[edges.length - 1]];
    this.map.reset(layers(this.view.config.depth));
  }

  draw() {
    const h = this.view.series.latest.z_hist || [];
    this.map.draw(this.x, (row, i) => (h[row] ? Math.log10(1 + h[row][i]) : null));
  }
}
