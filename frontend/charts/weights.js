// Per layer now: distance from the initial weights and the weights' norm.
import { Chart } from "./chart.js";
import { LogAxis } from "./logaxis.js";
import { OI, PLOT_CONFIG, Plotly, TRAIL, Trail, animateTraces, axis, baseLayout, layerTick, layers } from "./plot.js";

const SNAPSHOT_MS = 1500;

export class WeightsChart extends Chart {
  static spec = {
    name: "weights", requires: ["init_distance"], title: "Weights", sub: "distance from init · norm, per layer", span: 2, every: 250, share: 0.05, layers: true,
    help: "Left axis: how far each layer has moved from its initial weights, relative to their size (faded: earlier). Right axis: the weights' norm. Layers whose distance stays near zero are not learning; norms that grow step after step amplify the gradient on its way back.",
    latest: ["init_distance", "weight_norm"],
  };

  reset() {
    const D = this.view.config.depth, x = layers(D + 1), mode = D <= 20 ? "lines+markers" : "lines";
    this.trail = new Trail(SNAPSHOT_MS);
    this.axis = new LogAxis({ start: [-4, 0] });
    this.axis2 = new LogAxis({ ticks: 3, start: [0, 1] });
    Plotly.newPlot(this.el, [
      ...layers(TRAIL, 0).map((i) => ({ x, y: [], mode: "lines", showlegend: false, hoverinfo: "skip",
        line: { color: OI.blue, width: 1 }, opacity: 0.08 + 0.06 * i })),
      { x, y: [], mode, name: "init_distance", line: { color: OI.blue, width: 2.4 }, marker: { size: 5 } },
      { x, y: [], mode, name: "weight_norm", yaxis: "y2", line: { color: OI.grey, width: 1.8, dash: "dash" }, marker: { size: 4 } },
    ], baseLayout({ xaxis: { title: { text: "layer", standoff: 4 }, dtick: layerTick(D), range: [0.5, D + 1.5] },
                    yaxis: { type: "log", title: { text: "‖W−W₀‖/‖W₀‖", standoff: 2 }, ...this.axis.axis() },
                    yaxis2: axis({ type: "log", overlaying: "y", side: "right", showgrid: false, ...this.axis2.axis() }) }), PLOT_CONFIG);
  }

  shapes() {
    return this.axis ? this.axis.shapes() : [];
  }

  draw(now) {
    const s = this.view.series.latest, dist = s.init_distance || [], norm = s.weight_norm || [];
    const p1 = this.axis.update([...dist, ...this.trail.curves.flat()]), p2 = this.axis2.update(norm);
    if (p1 || p2) Plotly.relayout(this.el, { ...(p1 ? this.axis.keys("yaxis", p1) : {}), ...(p2 ? this.axis2.keys("yaxis2", p2) : {}) });
    if (p1) this.decorate();
    const { snap, older } = this.trail.update(now, dist);
    // the faded curves change at snapshots (and new ranges) only
    const full = snap || p1;
    const ys = [...(full ? older.map((y) => this.axis.ys(y)) : []), this.axis.ys(dist), this.axis2.ys(norm)];
    animateTraces(this.el, ys.map((y) => ({ y })), layers(ys.length, full ? 0 : TRAIL));
  }
}
