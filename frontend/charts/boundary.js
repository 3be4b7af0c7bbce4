// The decision boundary on 2-D datasets: the class-1 probability over the input plane.
import { Chart } from "./chart.js";
import { DIVERGING, PLOT_CONFIG, Plotly, baseLayout, palette } from "./plot.js";

const flatInput = (c) => c.dataset === "digits" || (c.dataset === "gaussian" && c.input_dim > 2);

export class BoundaryChart extends Chart {
  static spec = {
    name: "boundary", requires: ["delta_norm"], views: { boundary: true }, title: "Decision boundary", sub: "2-D datasets", span: 2, every: 100, share: 0.05,
    help: "What the network predicts over the plane of the two inputs, with the 0.5 contour as a line. It sharpens while the network learns; it stays flat while vanishing gradients keep the first layers still.",
  };

  reset() {
    document.getElementById("sub-boundary").textContent = flatInput(this.view.config) ? "not a 2-D dataset" : "class-1 probability";
    Plotly.newPlot(this.el, [
      { type: "heatmap", x: [], y: [], z: [], colorscale: DIVERGING, zmin: 0, zmax: 1, showscale: false, hovertemplate: "p=%{z:.2f}<extra></extra>" },
      { type: "contour", x: [], y: [], z: [], showscale: false, hoverinfo: "skip",
        contours: { coloring: "lines", start: 0.5, end: 0.5, size: 1 }, line: { color: palette().strong, width: 2 } },
    ], baseLayout({ showlegend: false, hovermode: "closest", margin: { l: 30, r: 8, t: 6, b: 24 }, yaxis: { scaleanchor: "x" } }), PLOT_CONFIG);
    this.dirty = Boolean(this.view.boundary);
  }

  emptyReason() {
    const c = this.view.config;
    if (flatInput(c)) return `The decision boundary is drawn over the plane of two inputs; ${c.dataset} has more than two.`;
    return this.view.boundary ? null : "The first boundary is drawn within a second of training.";
  }

  draw() {
    const b = this.view.boundary;
    if (!b) return;
    Plotly.update(this.el, { x: [b.x, b.x], y: [b.y, b.y], z: [b.p, b.p] }, {}, [0, 1]);
  }
}
