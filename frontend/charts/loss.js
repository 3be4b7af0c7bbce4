// Loss and accuracy over time: per batch (faint) and smoothed.
import { Chart } from "./chart.js";
import { OI, PLOT_CONFIG, Plotly, StickyLogRange, animateTraces, axis, baseLayout, ema, logAxisKeys } from "./plot.js";
import { firstVisible, stepRange } from "./timeaxis.js";

export class LossChart extends Chart {
  static spec = {
    name: "loss", title: "Loss & accuracy", span: 2, every: 150, share: 0.1, markers: true, window: true,
    help: "The training batch's loss (log scale) and accuracy, faint per step and smoothed. When gradients vanish the loss sits on a plateau although the output layer is still learning; markers show when a setting changed.",
    history: ["loss", "accuracy"], models: ["mlp", "rnn", "lstm", "gru"],
    select: { id: "window", label: "time window", options: () => [["recent", "recent"], ["all", "whole run"]], value: (view) => view.windowMode },
  };

  reset() {
    this.xrange = null;
    this.yrange = new StickyLogRange(2.5, 0.1);
    const faint = (name, color, y2) => ({ x: [], y: [], mode: "lines", name, showlegend: false, hoverinfo: "skip",
      yaxis: y2 ? "y2" : "y", line: { color, width: 1 }, opacity: 0.3 });
    Plotly.newPlot(this.el, [
      faint("loss", OI.vermilion, false), faint("accuracy", OI.green, true),
      { x: [], y: [], mode: "lines", name: "loss", line: { color: OI.vermilion, width: 2.2 } },
      { x: [], y: [], mode: "lines", name: "accuracy", yaxis: "y2", line: { color: OI.green, width: 2.2 } },
    ], baseLayout({ xaxis: { title: { text: "step", standoff: 4 }, anchor: "y2", range: [0, 100] },
                    yaxis: { type: "log", dtick: 1, exponentformat: "power", domain: [0.45, 1], range: [-1, 0.5], title: { text: "loss", standoff: 2 } },
                    yaxis2: axis({ domain: [0, 0.37], range: [0, 1.02], tickformat: ".0%", dtick: 0.5, title: { text: "acc.", standoff: 2 } }) }), PLOT_CONFIG);
  }

  onSelect(value) {
    this.view.setWindow(value);
  }

  draw() {
    const S = this.view.series, x = S.step, loss = S.h.loss, acc = S.h.accuracy;
    const keys = {}, xr = stepRange(x, this.view.windowMode, this.xrange);
    if (xr) { this.xrange = xr; keys["xaxis.range"] = xr; }
    const yr = this.yrange.update(loss.slice(firstVisible(x, this.xrange[0])));
    if (yr) Object.assign(keys, logAxisKeys("yaxis", yr, 3));
    if (Object.keys(keys).length) Plotly.relayout(this.el, keys);
    animateTraces(this.el, [loss, acc, ema(loss), ema(acc)].map((y) => ({ x, y })), [0, 1, 2, 3]);
  }
}
