// The gradient profile: ||dL/dW|| and ||dL/dz|| per layer now, faded earlier curves, the theory
// curve, and the clipped norms when clipping is on. The live view: redrawn up to 20 times a second.
import { Chart } from "./chart.js";
import { LogAxis } from "./logaxis.js";
import { OI, PLOT_CONFIG, Plotly, TRAIL, Trail, animateTraces, baseLayout, layerAxis, layers, namedHover, palette, pos } from "./plot.js";

const SNAPSHOT_MS = 700;  // one faded curve per 0.7 s

export class ProfileChart extends Chart {
  static spec = {
    name: "profile", requires: ["delta_norm"], title: "Gradient profile", span: 3, tall: true, every: 50, share: 0.3, layers: true, theory: true,
    sub: "‖dL/dW‖ and ‖dL/dz‖ per layer, now · faded: earlier · dotted: theory",
    help: "How large each layer's gradient is, from the input (left) to the output (right). Backprop multiplies the gradient by one factor per layer on its way left, so a straight slope on this log scale is a constant factor per layer: falling to the left is a vanishing gradient, rising an exploding one. The dotted curve is what mean-field theory expects from the activation and the initializer alone.",
    latest: ["grad_norm", "delta_norm", "clipped_grad_norm"],
  };

  reset() {
    this.plot(this.view.layerCount());
  }

  /**
   * Plot afresh for `n` layers at x = 1..n, labelled with the run's layer names where it has them.
   * delta_norm's points: where the run names its probes and every probe has a layer's name, each at
   * that layer (view.probeLayers); else, as for a run without probes, one per layer from the first (x =
   * index + 1), all of them, even where only some probes name a layer, with the probe's name in the hover.
   */
  plot(n) {
    const v = this.view, names = v.layerNames(), x = layers(n), markers = n <= 21;  // 51 marker paths per curve cost more than the line
    const at = v.probeLayers(), probes = v.probeNames();
    this.n = n;
    delete this.el.dataset.live;  // its next update is a full draw (plot.js animateTraces)
    this.trail = new Trail(SNAPSHOT_MS);
    this.axis = new LogAxis({ start: [-4, 1] });
    const line = (name, color, width, extra = {}) => ({ x, y: [], mode: markers ? "lines+markers" : "lines", name,
      line: { color, width }, marker: { size: 5 }, ...extra });
    Plotly.newPlot(this.el, [
      ...layers(TRAIL, 0).map((i) => ({ x, y: [], mode: "lines", name: i === 0 ? "earlier" : undefined,
        showlegend: i === 0, hoverinfo: "skip", line: { color: OI.blue, width: 1.2 }, opacity: 0.08 + 0.06 * i })),
      { x, y: [], mode: "lines", name: "theory", line: { color: palette().strong, dash: "dot", width: 1.5 } },
      line("grad_norm", OI.blue, 2.5),
      line("delta_norm", OI.orange, 2, { marker: { size: 4, symbol: "diamond" }, ...(at ? { x: at.map((i) => i + 1) } : namedHover(probes)) }),
      line("clipped", OI.vermilion, 1.6, { line: { color: OI.vermilion, width: 1.6, dash: "dash" },
        visible: v.config.clip_mode !== "none" }),
    ], baseLayout({ xaxis: { title: { text: "layer (input → output)", standoff: 4 }, ...layerAxis(n, names) },
                    yaxis: { type: "log", ...this.axis.axis() } }), PLOT_CONFIG);
  }

  /** The clipped curve is shown while clipping is on. */
  configChanged(prev) {
    if ((prev.clip_mode === "none") !== (this.view.config.clip_mode === "none")) {
      Plotly.restyle(this.el, { visible: this.view.config.clip_mode !== "none" }, [TRAIL + 3]);
    }
    this.dirty = true;
  }

  shapes() {
    return this.axis ? this.axis.shapes() : [];
  }

  draw(now) {
    const v = this.view, s = v.series.latest, g = s.grad_norm || [], d = s.delta_norm || [];
    // the statistics' own length, where the config's count is not theirs, redraws the axis for it
    if (g.length && g.length !== this.n) { this.plot(g.length); this.decorate(); }
    const ax = this.axis, c = v.config.clip_mode === "none" ? [] : s.clipped_grad_norm || [];
    const anchor = pos(g[g.length - 1]);
    const theory = v.theory && anchor ? v.theory(anchor) : [];
    const seen = [...g, ...d, ...c].filter((x) => x === 0 || pos(x) !== null);
    const floor = Math.min(...seen.filter((x) => x > 0)) / 1e3;  // theory may fall off a cliff; show where it heads, not all of it
    const props = ax.update([...seen, ...this.trail.curves.flat(), ...theory.filter((x) => x !== null && x > floor)]);
    if (props) { Plotly.relayout(this.el, ax.keys("yaxis", props)); this.decorate(); }
    // zeros sit on the axis' floor (a dead layer is drawn, not a hole); the trail keeps raw values
    const { snap, older } = this.trail.update(now, g);
    const trail = older.map((y) => ax.ys(y));
    // The faded curves change at snapshots (and new ranges) only: the other draws rewrite 4 paths, not 10.
    const full = snap || props;
    const ys = [...(full ? trail : []), theory, ax.ys(g), ax.ys(d), ax.ys(c)], first = full ? 0 : TRAIL;
    animateTraces(this.el, ys.map((y) => ({ y })), layers(ys.length, first));
    v.info.profile = g.map(pos);
    v.info.profileDrawn = ys.slice(-3);
    if (v.series.provisional) v.info.previewDrawn = g.length;  // a first look drawn (the browser tests)
    v.info.renders++;
  }
}
