// The generator's gradient at D's logit against D(G(z)), with the two sigmoid losses' theory:
// saturating (G minimizes log(1 - D(G(z)))): |dL_G/dlogit| = sigmoid(logit) = D(G(z)), which
// vanishes as D grows confident; non-saturating (G maximizes log D(G(z))): 1 - D(G(z)).
// (Goodfellow et al. 2014, section 3; the family's g_logit_grad and d_fake.)
import { Chart } from "./chart.js";
import { LogAxis } from "./logaxis.js";
import { OI, PLOT_CONFIG, Plotly, StickyRange, animateTraces, baseLayout, finite, palette } from "./plot.js";
import { isProbability, lossOf } from "../models.js";

const XS = Array.from({ length: 201 }, (_, i) => i / 200);

/** The theory curves over D(G(z)) in [0, 1]: {loss name: |dL_G/dlogit|}. */
export const LOGIT_THEORY = {
  saturating: { label: "saturating: D(G(z))", y: (d) => d },
  non_saturating: { label: "non-saturating: 1 − D(G(z))", y: (d) => 1 - d },
};

export class LogitGradChart extends Chart {
  static spec = {
    name: "logit", requires: ["g_logit_grad", "d_fake"], title: "G's gradient at D's logit", span: 3, tall: true, every: 150, share: 0.08, theory: true,
    sub: "|dL_G/dlogit| against D(G(z)), every kept step · ● now · lines: theory",
    help: "How much gradient G's loss sends into D's logit at G's samples, against how fake D finds them. Under the saturating loss it is D(G(z)) itself: when D confidently rejects G's samples (D(G(z)) near 0), G gets almost nothing, whatever its own layers do. The non-saturating loss flips it to 1 − D(G(z)), largest exactly then. Each dot is a kept step; switch gan_loss and the dots move from one curve to the other.",
    history: ["d_fake", "g_logit_grad"],
  };

  reset() {
    this.axis = new LogAxis({ start: [-3, 0.2], pad: 0.3 });
    this.xr = new StickyRange(0.5);
    this.probability = null;
    const p = palette(), curve = (name, color) => ({ x: XS, y: XS.map(LOGIT_THEORY[name].y).map((y) => (y > 0 ? y : null)),
      mode: "lines", name: LOGIT_THEORY[name].label, hoverinfo: "skip", line: { color, width: 1.6, dash: "dot" } });
    Plotly.newPlot(this.el, [
      curve("saturating", OI.vermilion), curve("non_saturating", OI.blue),
      { x: [], y: [], mode: "markers", name: "kept steps", marker: { size: 4, color: p.floor, opacity: 0.45 },
        hovertemplate: "D(G(z)) %{x:.3f}<br>|dL/dlogit| %{y:.3g}<extra></extra>" },
      { x: [], y: [], mode: "markers", name: "now", marker: { size: 11, color: OI.orange, line: { color: p.strong, width: 1.5 } },
        hovertemplate: "now: D(G(z)) %{x:.3f}<br>|dL/dlogit| %{y:.3g}<extra></extra>" },
    ], baseLayout({ hovermode: "closest", xaxis: { title: { text: "D(G(z))", standoff: 4 }, range: [0, 1] },
                    yaxis: { type: "log", title: { text: "|dL_G/dlogit|", standoff: 2 }, ...this.axis.axis() } }), PLOT_CONFIG);
    this.emphasize();
  }

  /** The run's own loss' curve drawn solid and thicker. */
  emphasize() {
    const loss = lossOf(this.view.meta, this.view.config);
    const names = Object.keys(LOGIT_THEORY);
    Plotly.restyle(this.el, { "line.dash": names.map((n) => (n === loss ? "solid" : "dot")), "line.width": names.map((n) => (n === loss ? 2.4 : 1.4)) }, [0, 1]);
  }

  configChanged(prev) {
    if (lossOf(this.view.meta, prev) !== lossOf(this.view.meta, this.view.config)) this.emphasize();
    this.dirty = true;
  }

  shapes() {
    return this.axis ? this.axis.shapes() : [];
  }

  draw() {
    const v = this.view, S = v.series, d = S.h.d_fake, g = S.h.g_logit_grad, ax = this.axis, keys = {};
    const props = ax.update(g);
    if (props) Object.assign(keys, ax.keys("yaxis", props));
    const probability = isProbability(v.meta, v.config);
    const xr = probability ? (this.probability === true ? null : [0, 1]) : this.xr.update(d);
    this.probability = probability;
    if (xr) keys["xaxis.range"] = xr;
    if (Object.keys(keys).length) Plotly.relayout(this.el, keys);
    if (props) this.decorate();
    const ys = ax.ys(g), last = ys.length - 1;
    animateTraces(this.el, [{ x: d, y: ys }, { x: [finite(d[last])], y: [ys[last]] }], [2, 3]);
    v.info.logit = { x: d[last], y: g[last], points: d.length };
  }
}
