// The input and its saliency: the first held-out image beside dL/dx for it (the CNN's input_image
// and input_grad), the gradient that reaches the input itself, as two small heat maps.
import { Chart } from "./chart.js";
import { CIVIDIS } from "./imagemap.js";
import { DIVERGING, PLOT_CONFIG, Plotly, baseLayout, finite } from "./plot.js";

const GREY = CIVIDIS.map((c, i) => [i / (CIVIDIS.length - 1), c]);

/** The largest |v| among the finite entries of a 2-D array (0 if none). */
export function maxAbs(rows) {
  let m = 0;
  for (const row of rows || []) for (const v of row) if (finite(v) !== null && Math.abs(v) > m) m = Math.abs(v);
  return m;
}

export class SaliencyChart extends Chart {
  static spec = {
    name: "saliency", requires: ["input_grad", "input_image"], title: "Input and saliency", sub: "one held-out image · dL/dx, now",
    span: 3, every: 400, share: 0.04,
    help: "Left: one fixed held-out image. Right: the gradient of its loss with respect to each pixel (dL/dx, orange up, blue down, scaled to its largest value, printed above). It is the end of the backward pass: when gradients vanish through the conv stack, this map fades to nothing long before the last layers' gradients do, and a trained net's map outlines what it looks at.",
    latest: ["input_grad", "input_image"],
  };

  reset() {
    const axis = (domain, anchor) => ({ domain, anchor, showticklabels: false, showgrid: false, zeroline: false, constrain: "domain" });
    const yaxis = (anchor) => ({ autorange: "reversed", scaleanchor: anchor, showticklabels: false, showgrid: false, zeroline: false });
    Plotly.newPlot(this.el, [
      { type: "heatmap", z: [[]], colorscale: GREY, showscale: false, xaxis: "x", yaxis: "y",
        hovertemplate: "row %{y}, column %{x}<br>x %{z:.3g}<extra></extra>" },
      { type: "heatmap", z: [[]], colorscale: DIVERGING, zmid: 0, showscale: false, xaxis: "x2", yaxis: "y2",
        hovertemplate: "row %{y}, column %{x}<br>dL/dx %{z:.3g}<extra></extra>" },
    ], baseLayout({ showlegend: false, hovermode: "closest", margin: { l: 8, r: 8, t: 26, b: 8 },
                    xaxis: axis([0, 0.47], "y"), yaxis: yaxis("x"), xaxis2: axis([0.53, 1], "y2"), yaxis2: yaxis("x2"),
                    annotations: this.titles("") }), PLOT_CONFIG);
  }

  titles(scale) {
    const t = (x, text) => ({ x, y: 1.02, xref: "paper", yref: "paper", xanchor: "center", yanchor: "bottom", showarrow: false, text });
    return [t(0.235, "input"), t(0.765, `dL/dx${scale}`)];
  }

  annotations() {
    return this.titles(this.scaleText || "");
  }

  draw() {
    const s = this.view.series.latest || {};
    if (!s.input_grad || !s.input_image) return;
    const m = maxAbs(s.input_grad);
    const text = m > 0 ? ` (max |·| ${m.toExponential(1)})` : " (all zero)";
    Plotly.restyle(this.el, { z: [s.input_image, s.input_grad], zmin: [null, -m || -1], zmax: [null, m || 1] }, [0, 1]);
    if (text !== this.scaleText) {
      this.scaleText = text;
      this.decorate();
    }
  }
}
