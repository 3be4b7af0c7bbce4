// The time profile (the models that emit time_delta_norm): ‖dL/dh_t‖ over the time steps of the
// sequence, now and faded earlier, with the theory line from W_hh's spectral radius and the units' RMS slope.
import { Chart } from "./chart.js";
import { LogAxis } from "./logaxis.js";
import { OI, PLOT_CONFIG, Plotly, TRAIL, Trail, animateTraces, baseLayout, layers, palette, pos } from "./plot.js";

const SNAPSHOT_MS = 700;  // one faded curve per 0.7 s
const LAYER_COLORS = [OI.sky, OI.green, OI.purple, OI.blue];  // the top layer is drawn last, in blue

/**
 * The theory line for t = 1..T: ‖dL/dh_T‖ · factor^(T − t), where factor = ρ(W_hh) · RMS φ′
 * is one step of backpropagation through time (the stat `theory_factor`). Null outside float range.
 */
export function timeTheory(anchor, factor, T) {
  if (!pos(anchor) || !pos(factor)) return [];
  return layers(T).map((t) => pos(anchor * Math.pow(factor, T - t)));
}

export class TimeProfileChart extends Chart {
  static spec = {
    name: "time", requires: ["time_delta_norm"], title: "Time profile", span: 3, tall: true, every: 50, share: 0.3,
    sub: "‖dL/dh_t‖ per time step, each layer, now · faded: earlier (top layer) · dotted: theory",
    help: "How much of the gradient reaches each time step, from the first (left) to the last, where the loss reads the output (right). Backpropagation through time multiplies it by W_hh·diag(φ′) once per step on its way left, so a straight slope on this log scale is a constant factor per step: the dotted line is that factor predicted from W_hh's spectral radius and the units' RMS slope. A gradient that falls by 1e-7 before reaching step 1 cannot teach the network anything that step 1 knows.",
    latest: ["time_delta_norm", "theory_factor"],
  };

  reset() {
    const { seq_len: T, depth: L } = this.view.config, x = layers(T);
    this.trail = new Trail(SNAPSHOT_MS);
    this.axis = new LogAxis({ start: [-6, 0] });
    Plotly.newPlot(this.el, [
      ...layers(TRAIL, 0).map((i) => ({ x, y: [], mode: "lines", name: i === 0 ? "earlier" : undefined,
        showlegend: i === 0, hoverinfo: "skip", line: { color: OI.blue, width: 1.2 }, opacity: 0.08 + 0.06 * i })),
      { x, y: [], mode: "lines", name: "theory", line: { color: palette().strong, dash: "dot", width: 1.5 } },
      ...layers(L).map((l) => ({ x, y: [], mode: "lines", name: `layer ${l}`,
        line: { color: l === L ? OI.blue : LAYER_COLORS[l - 1], width: l === L ? 2.5 : 1.5 } })),
    ], baseLayout({ xaxis: { title: { text: "time step (first → last)", standoff: 4 }, range: [0.5, T + 0.5] },
                    yaxis: { type: "log", ...this.axis.axis() } }), PLOT_CONFIG);
  }

  shapes() {
    return this.axis ? this.axis.shapes() : [];
  }

  draw(now) {
    const v = this.view, s = v.series.latest, { seq_len: T, depth: L } = v.config, ax = this.axis;
    const curves = s.time_delta_norm || [], top = curves[L - 1] || [];
    const theory = timeTheory(pos(top[T - 1]), (s.theory_factor || [])[L - 1], T);
    const seen = [...curves.flat(), ...this.trail.curves.flat()];
    const floor = Math.min(...seen.filter((y) => pos(y) !== null)) / 1e3;  // the line may fall off a cliff: show where it heads, not all of it
    const props = ax.update([...seen, ...theory.filter((y) => y !== null && y > floor)]);
    if (props) { Plotly.relayout(this.el, ax.keys("yaxis", props)); this.decorate(); }
    const { older } = this.trail.update(now, top);
    const ys = [...older.map((y) => ax.ys(y)), theory, ...layers(L, 0).map((l) => ax.ys(curves[l]))];
    animateTraces(this.el, ys.map((y) => ({ y })), layers(ys.length, 0));
    v.info.timeProfile = top.map(pos);
    v.info.timeTheory = theory;
    v.info.renders++;
  }
}
