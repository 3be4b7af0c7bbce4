// The gradient profile: ||dL/dW|| and ||dL/dz|| per layer now, faded earlier curves, the theory
// curve, and the clipped norms when clipping is on. The live view: redrawn up to 20 times a second.
import { Chart } from "./chart.js";
import { OI, PLOT_CONFIG, Plotly, StickyLogRange, TRAIL, Trail, animateTraces, baseLayout, layerTick, layers, logAxisKeys, pos } from "./plot.js";

const SNAPSHOT_MS = 700;  // one faded curve per 0.7 s

export class ProfileChart extends Chart {
  static spec = {
    name: "profile", title: "Gradient profile", span: 3, tall: true, every: 50, share: 0.3, layers: true, theory: true,
    sub: "‖dL/dW‖ and ‖dL/dz‖ per layer, now · faded: earlier · dotted: theory",
    help: "How large each layer's gradient is, from the input (left) to the output (right). Backprop multiplies the gradient by one factor per layer on its way left, so a straight slope on this log scale is a constant factor per layer: falling to the left is a vanishing gradient, rising an exploding one. The dotted curve is what mean-field theory expects from the activation and the initializer alone.",
    latest: ["grad_norm", "delta_norm", "clipped_grad_norm"],
  };

  reset() {
    const D = this.view.config.depth, x = layers(D + 1), markers = D <= 20;  // 51 marker paths per curve cost more than the line
    this.trail = new Trail(SNAPSHOT_MS);
    this.range = new StickyLogRange();
    const line = (name, color, width, extra = {}) => ({ x, y: [], mode: markers ? "lines+markers" : "lines", name,
      line: { color, width }, marker: { size: 5 }, ...extra });
    Plotly.newPlot(this.el, [
      ...layers(TRAIL, 0).map((i) => ({ x, y: [], mode: "lines", name: i === 0 ? "earlier" : undefined,
        showlegend: i === 0, hoverinfo: "skip", line: { color: OI.blue, width: 1.2 }, opacity: 0.08 + 0.06 * i })),
      { x, y: [], mode: "lines", name: "theory", line: { color: OI.black, dash: "dot", width: 1.5 } },
      line("grad_norm", OI.blue, 2.5),
      line("delta_norm", OI.orange, 2, { marker: { size: 4, symbol: "diamond" } }),
      line("clipped", OI.vermilion, 1.6, { line: { color: OI.vermilion, width: 1.6, dash: "dash" },
        visible: this.view.config.clip_mode !== "none" }),
    ], baseLayout({ xaxis: { title: { text: "layer (input → output)", standoff: 4 }, dtick: layerTick(D), range: [0.5, D + 1.5] },
                    yaxis: { type: "log", exponentformat: "power", range: [-4, 1] } }), PLOT_CONFIG);
  }

  /** The clipped curve is shown while clipping is on. */
  configChanged(prev) {
    if ((prev.clip_mode === "none") !== (this.view.config.clip_mode === "none")) {
      Plotly.restyle(this.el, { visible: this.view.config.clip_mode !== "none" }, [TRAIL + 3]);
    }
    this.dirty = true;
  }

  draw(now) {
    const v = this.view, s = v.series.latest, D = v.config.depth;
    const g = (s.grad_norm || []).map(pos), d = (s.delta_norm || []).map(pos);
    const c = v.config.clip_mode === "none" ? [] : (s.clipped_grad_norm || []).map(pos);
    const { snap, older: trail } = this.trail.update(now, g);
    const anchor = g[D];
    const theory = v.theory && anchor ? v.theory(anchor) : [];
    const seen = [...g, ...d, ...c, ...trail.flat()].filter((x) => x !== null);
    const floor = Math.min(...seen) / 1e3;  // theory may fall off a cliff; show where it heads, not all of it
    const range = this.range.update([...seen, ...theory.filter((x) => x !== null && x > floor)]);
    if (range) Plotly.relayout(this.el, logAxisKeys("yaxis", range));
    // The faded curves change at snapshots only: the other draws rewrite 4 paths, not 10.
    const ys = [...(snap ? trail : []), theory, g, d, c], first = snap ? 0 : TRAIL;
    animateTraces(this.el, ys.map((y) => ({ y })), layers(ys.length, first));
    v.info.profile = g;
    v.info.renders++;
  }
}
