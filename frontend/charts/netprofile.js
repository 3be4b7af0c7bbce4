// G's and D's gradient profiles, side by side: ||dL/dW|| and ||dL/dz|| per layer of one network, now,
// with faded earlier curves (as the MLP's profile, charts/profile.js). One class per network, made
// from the network's statistic prefix (the family's views.networks: "g", "d").
import { Chart } from "./chart.js";
import { LogAxis } from "./logaxis.js";
import { OI, PLOT_CONFIG, Plotly, TRAIL, Trail, animateTraces, baseLayout, layerTick, layers, pos } from "./plot.js";

const SNAPSHOT_MS = 700;  // one faded curve per 0.7 s

/** The profile chart of the network whose statistics are named `${p}_*` and whose depth is config[`${p}_depth`]. */
function profileChart(p, title, help) {
  return class extends Chart {
    static spec = {
      name: `${p}profile`, requires: [`${p}_grad_norm`, `${p}_delta_norm`], title, span: 3, every: 60, share: 0.15,
      sub: "‖dL/dW‖ and ‖dL/dz‖ per layer, now · faded: earlier", help,
      latest: [`${p}_grad_norm`, `${p}_delta_norm`],
    };

    /** Layers of the network: its hidden layers and the output layer. */
    get n() {
      return (this.view.config[`${p}_depth`] || 1) + 1;
    }

    reset() {
      const n = this.n, x = layers(n);
      this.trail = new Trail(SNAPSHOT_MS);
      this.axis = new LogAxis({ start: [-4, 1] });
      const line = (name, color, width, extra = {}) => ({ x, y: [], mode: "lines+markers", name, line: { color, width }, marker: { size: 5 }, ...extra });
      Plotly.newPlot(this.el, [
        ...layers(TRAIL, 0).map((i) => ({ x, y: [], mode: "lines", name: i === 0 ? "earlier" : undefined,
          showlegend: i === 0, hoverinfo: "skip", line: { color: OI.blue, width: 1.2 }, opacity: 0.08 + 0.06 * i })),
        line("grad_norm", OI.blue, 2.5),
        line("delta_norm", OI.orange, 2, { marker: { size: 4, symbol: "diamond" } }),
      ], baseLayout({ xaxis: { title: { text: "layer (input → output)", standoff: 4 }, dtick: layerTick(n - 1), range: [0.5, n + 0.5] },
                      yaxis: { type: "log", ...this.axis.axis() } }), PLOT_CONFIG);
    }

    shapes() {
      return this.axis ? this.axis.shapes() : [];
    }

    draw(now) {
      const v = this.view, s = v.series.latest, ax = this.axis;
      const g = s[`${p}_grad_norm`] || [], d = s[`${p}_delta_norm`] || [];
      const props = ax.update([...g, ...d, ...this.trail.curves.flat()].filter((x) => x === 0 || pos(x) !== null));
      if (props) { Plotly.relayout(this.el, ax.keys("yaxis", props)); this.decorate(); }
      const { snap, older } = this.trail.update(now, g);
      const ys = [...(snap || props ? older.map((y) => ax.ys(y)) : []), ax.ys(g), ax.ys(d)];
      animateTraces(this.el, ys.map((y) => ({ y })), layers(ys.length, snap || props ? 0 : TRAIL));
      v.info[`${p}profile`] = g.map(pos);
      v.info.renders++;
    }
  };
}

export const GProfileChart = profileChart("g", "Generator G: gradient per layer",
  "How large each of G's layers' gradient is, from the noise z (left) to the generated point (right). G learns only through D: its gradient is D's input gradient at G's samples, passed back through G. When D saturates under the saturating loss, this whole profile drops at once, every layer by the same factor.");
export const DProfileChart = profileChart("d", "Discriminator D: gradient per layer",
  "How large each of D's layers' gradient is, from the 2-D input (left) to D's output (right), on its loss over real and generated points. A straight slope on this log scale is a constant factor per layer: falling to the left, the gradient vanishes on its way to D's first layers.");
