// Update ratio ||dW||/||W|| per layer, with the healthy band around 1e-3.
import { Chart } from "./chart.js";
import { LogAxis } from "./logaxis.js";
import { OI, PLOT_CONFIG, Plotly, TRAIL, Trail, animateTraces, baseLayout, layerAxis, layers } from "./plot.js";

const SNAPSHOT_MS = 700;

export class RatioChart extends Chart {
  static spec = {
    name: "ratio", requires: ["update_ratio", "delta_norm"], title: "Update ratio", sub: "‖Δw‖/‖w‖ per layer", span: 2, every: 200, share: 0.08, layers: true,
    help: "How much one step changes each layer's weights, relative to their size. About 1e-3 (the green band) is healthy; far below it a layer barely learns, which is what a vanishing gradient means in practice, far above it the steps are too large.",
    latest: ["update_ratio"],
  };

  reset() {
    this.plot(this.view.layerCount());
  }

  /** Plot afresh for `n` layers, labelled with the run's layer names where it has them. */
  plot(n) {
    const names = this.view.layerNames(), x = layers(n);
    this.n = n;
    delete this.el.dataset.live;  // its next update is a full draw (plot.js animateTraces)
    this.trail = new Trail(SNAPSHOT_MS);
    this.axis = new LogAxis({ start: [-5, -1] });
    Plotly.newPlot(this.el, [
      ...layers(TRAIL, 0).map((i) => ({ x, y: [], mode: "lines", showlegend: false, hoverinfo: "skip",
        line: { color: OI.purple, width: 1 }, opacity: 0.08 + 0.06 * i })),
      { x, y: [], mode: n <= 21 ? "lines+markers" : "lines", name: "update_ratio", line: { color: OI.purple, width: 2.5 }, marker: { size: 5 } },
    ], baseLayout({ xaxis: { title: { text: "layer", standoff: 4 }, ...layerAxis(n, names) },
                    yaxis: { type: "log", ...this.axis.axis() } }), PLOT_CONFIG);
  }

  shapes() {
    return [...(this.axis ? this.axis.shapes() : []),
      { type: "rect", xref: "paper", x0: 0, x1: 1, yref: "y", y0: 1e-4, y1: 1e-2, fillcolor: OI.green, opacity: 0.10, line: { width: 0 }, layer: "below" },
      { type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: 1e-3, y1: 1e-3, line: { color: OI.green, width: 1.5, dash: "dash" } }];
  }

  annotations() {
    return [{ xref: "paper", x: 1, yref: "y", y: -3, text: "1e-3 guide", showarrow: false, xanchor: "right", yanchor: "bottom", font: { size: 10, color: OI.green } }];
  }

  draw(now) {
    const r = this.view.series.latest.update_ratio || [];
    if (r.length && r.length !== this.n) { this.plot(r.length); this.decorate(); }  // the statistics' own length
    const ax = this.axis;
    const props = ax.update([...r, ...this.trail.curves.flat(), 1e-4, 1e-2]);
    if (props) { Plotly.relayout(this.el, ax.keys("yaxis", props)); this.decorate(); }
    const { snap, older } = this.trail.update(now, r);
    // the faded curves change at snapshots (and new ranges) only
    const ys = [...(snap || props ? older.map((y) => ax.ys(y)) : []), ax.ys(r)];
    animateTraces(this.el, ys.map((y) => ({ y })), layers(ys.length, snap || props ? 0 : TRAIL));
  }
}
