// Per layer now: distance from the initial weights and the weights' norm.
import { Chart } from "./chart.js";
import { OI, PLOT_CONFIG, Plotly, StickyLogRange, TRAIL, Trail, animateTraces, axis, baseLayout, layerTick, layers, logAxisKeys, pos } from "./plot.js";

const SNAPSHOT_MS = 1500;

export class WeightsChart extends Chart {
  static spec = {
    name: "weights", title: "Weights", sub: "distance from init · norm, per layer", span: 2, every: 250, share: 0.05, layers: true,
    help: "Left axis: how far each layer has moved from its initial weights, relative to their size (faded: earlier). Right axis: the weights' norm. Layers whose distance stays near zero are not learning; norms that grow step after step amplify the gradient on its way back.",
    latest: ["init_distance", "weight_norm"],
  };

  reset() {
    const D = this.view.config.depth, x = layers(D + 1), mode = D <= 20 ? "lines+markers" : "lines";
    this.trail = new Trail(SNAPSHOT_MS);
    this.range = new StickyLogRange();
    this.range2 = new StickyLogRange();
    Plotly.newPlot(this.el, [
      ...layers(TRAIL, 0).map((i) => ({ x, y: [], mode: "lines", showlegend: false, hoverinfo: "skip",
        line: { color: OI.blue, width: 1 }, opacity: 0.08 + 0.06 * i })),
      { x, y: [], mode, name: "init_distance", line: { color: OI.blue, width: 2.4 }, marker: { size: 5 } },
      { x, y: [], mode, name: "weight_norm", yaxis: "y2", line: { color: OI.grey, width: 1.8, dash: "dash" }, marker: { size: 4 } },
    ], baseLayout({ xaxis: { title: { text: "layer", standoff: 4 }, dtick: layerTick(D), range: [0.5, D + 1.5] },
                    yaxis: { type: "log", exponentformat: "power", range: [-4, 0], title: { text: "‖W−W₀‖/‖W₀‖", standoff: 2 } },
                    yaxis2: axis({ type: "log", overlaying: "y", side: "right", showgrid: false, range: [0, 1], exponentformat: "power" }) }), PLOT_CONFIG);
  }

  draw(now) {
    const s = this.view.series.latest, dist = (s.init_distance || []).map(pos), norm = (s.weight_norm || []).map(pos);
    const { snap, older: trail } = this.trail.update(now, dist);
    const r1 = this.range.update([...dist, ...trail.flat()]), r2 = this.range2.update(norm);
    if (r1 || r2) Plotly.relayout(this.el, { ...(r1 ? logAxisKeys("yaxis", r1) : {}), ...(r2 ? logAxisKeys("yaxis2", r2, 3) : {}) });
    // the faded curves change at snapshots only
    const ys = [...(snap ? trail : []), dist, norm];
    animateTraces(this.el, ys.map((y) => ({ y })), layers(ys.length, snap ? 0 : TRAIL));
  }
}
