// The critic's activation gradients: ||dD/dh_l|| at each of D's hidden layers, on real and on
// generated points (WGAN-GP's Figure 1b: under weight clipping they grow or shrink geometrically
// toward the input with the clip value; under the gradient penalty they stay flat).
import { Chart } from "./chart.js";
import { LogAxis } from "./logaxis.js";
import { OI, PLOT_CONFIG, Plotly, animateTraces, baseLayout, layerTick, layers } from "./plot.js";

export class CriticGradChart extends Chart {
  static spec = {
    name: "critic", requires: ["critic_act_grad"], title: "Critic's activation gradients", span: 2, every: 200, share: 0.06,
    sub: "‖dD/dh_l‖ per D hidden layer, now",
    help: "How strongly D's output reacts to each of its hidden layers' activations, on real points and on G's samples. Weight clipping forces every layer's weights into [−c, c]: with a large c the gradient explodes toward the input, with a small one it vanishes, and G, which learns from D's input gradient, gets it too. The gradient penalty keeps D 1-Lipschitz without that, and these curves flat.",
    latest: ["critic_act_grad"],
  };

  reset() {
    const n = this.view.config.d_depth || 1, x = layers(n);
    this.axis = new LogAxis({ start: [-3, 1] });
    Plotly.newPlot(this.el, [
      { x, y: [], mode: "lines+markers", name: "real", line: { color: OI.green, width: 2.2 }, marker: { size: 5 } },
      { x, y: [], mode: "lines+markers", name: "generated", line: { color: OI.vermilion, width: 2, dash: "dash" }, marker: { size: 4 } },
    ], baseLayout({ xaxis: { title: { text: "D hidden layer (input → output)", standoff: 4 }, dtick: layerTick(n), range: [0.5, n + 0.5] },
                    yaxis: { type: "log", ...this.axis.axis() } }), PLOT_CONFIG);
  }

  shapes() {
    return this.axis ? this.axis.shapes() : [];
  }

  draw() {
    const rows = this.view.series.latest.critic_act_grad || [], ax = this.axis;
    const props = ax.update(rows.flat());
    if (props) { Plotly.relayout(this.el, ax.keys("yaxis", props)); this.decorate(); }
    animateTraces(this.el, [0, 1].map((r) => ({ y: ax.ys(rows[r] || []) })), [0, 1]);
  }
}
