// Chain-rule factors per layer: BatchNorm, weight and slope factor, their product and the theory.
// A click on a layer highlights it on every per-layer chart.
import { Chart } from "./chart.js";
import { chainFactors } from "./factors.js";
import { LogAxis } from "./logaxis.js";
import { OI, PLOT_CONFIG, Plotly, animateTraces, baseLayout, layerTick, layers, palette } from "./plot.js";

export class ChainChart extends Chart {
  static spec = {
    name: "chain", requires: ["h_grad_norm"], title: "Chain-rule factors", sub: "per layer, one step back · click a layer to highlight it",
    span: 3, tall: true, every: 200, share: 0.08, layers: true, theory: true,
    help: "Going back one layer multiplies the gradient by three measured factors: the slope factor ‖dL/dz‖/‖dL/dh‖ (the activation's slope: at most 0.25 for sigmoid, at most 1 for ReLU), the weight factor ‖dL/dh‖/‖dL/du‖ of the next layer (how much its weights amplify), and the BatchNorm factor. Their product is the ratio of neighbouring gradients; the dotted curve is what theory expects. Products below 1 at every layer compound into a vanishing gradient, above 1 into an exploding one.",
    latest: ["delta_norm", "h_grad_norm", "u_grad_norm"],
  };

  reset() {
    // Markers (click targets) up to 20 layers; deeper, 5 x D marker paths cost more than the lines, and
    // a click on a line picks its nearest point all the same.
    const D = this.view.config.depth, x = layers(D), mode = D <= 20 ? "lines+markers" : "lines";
    this.axis = new LogAxis({ start: [-1, 1] });
    const ink = palette().strong;
    const line = (name, color, extra = {}) => ({ x, y: [], mode, name, line: { color, width: 1.8 }, marker: { size: D <= 20 ? 6 : 4 }, ...extra });
    Plotly.newPlot(this.el, [
      line("slope", OI.orange),
      line("weight", OI.blue),
      line("batchnorm", OI.green, { visible: this.view.config.batchnorm ? true : "legendonly" }),
      line("product", ink, { line: { color: ink, width: 2.6 }, uid: "product" }),  // .traceproduct: the click target in tests
      { x, y: [], mode: "lines", name: "theory", line: { color: ink, dash: "dot", width: 1.5 } },
    ], baseLayout({ hovermode: "closest", xaxis: { title: { text: "layer (input → output)", standoff: 4 }, dtick: layerTick(D), range: [0.5, D + 0.5] },
                    yaxis: { type: "log", ...this.axis.axis() } }), PLOT_CONFIG);
    this.el.on("plotly_click", (ev) => {
      const p = ev && ev.points && ev.points[0];
      if (p && typeof p.x === "number") this.view.selectLayer(p.x - 1);
    });
  }

  shapes() {
    const guide = (y, color) => ({ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: y, y1: y, line: { color, width: 1.2, dash: "dash" } });
    return [...(this.axis ? this.axis.shapes() : []), guide(1, OI.grey), guide(0.25, OI.orange)];
  }

  annotations() {
    const label = (y, text, color) => ({ xref: "paper", x: 1, yref: "y", y: Math.log10(y), text, showarrow: false,
      xanchor: "right", yanchor: "bottom", font: { size: 10, color } });
    return [label(1, "1: passes unchanged", OI.grey), label(0.25, "0.25: sigmoid's ceiling", OI.orange)];
  }

  configChanged(prev) {
    if (prev.batchnorm !== this.view.config.batchnorm) {
      Plotly.restyle(this.el, { visible: this.view.config.batchnorm ? true : "legendonly" }, [2]);
    }
    this.dirty = true;
  }

  draw() {
    const f = chainFactors(this.view.series.latest), theory = this.view.factors || [], ax = this.axis;
    const props = ax.update([...f.slope, ...f.weight, ...f.product, ...theory, 0.25, 1]);
    if (props) { Plotly.relayout(this.el, ax.keys("yaxis", props)); this.decorate(); }
    this.view.info.chain = f;
    animateTraces(this.el, [f.slope, f.weight, f.bn, f.product, theory].map((y) => ({ y: ax.ys(y) })), [0, 1, 2, 3, 4]);
  }
}
