// Loss and accuracy over time: per batch (faint) and smoothed.
import { Chart } from "./chart.js";
import { LogAxis } from "./logaxis.js";
import { OI, PLOT_CONFIG, Plotly, animateTraces, axis, baseLayout, ema } from "./plot.js";
import { firstVisible, stepRange } from "./timeaxis.js";

export class LossChart extends Chart {
  static spec = {
    name: "loss", requires: ["loss"], title: "Loss & accuracy", span: 2, every: 150, share: 0.1, markers: true, window: true,
    help: "The training batch's loss (log scale) and accuracy, faint per step and smoothed. When gradients vanish the loss sits on a plateau although the output layer is still learning; markers show when a setting changed.",
    history: ["loss", "accuracy"],
    select: { id: "window", label: "time window", options: () => [["recent", "recent"], ["all", "whole run"]], value: (view) => view.windowMode },
  };

  reset() {
    this.xrange = null;
    this.axis = new LogAxis({ spare: 2.5, pad: 0.1, ticks: 3, start: [-1, 1] });
    const faint = (name, color, y2) => ({ x: [], y: [], mode: "lines", name, showlegend: false, hoverinfo: "skip",
      yaxis: y2 ? "y2" : "y", line: { color, width: 1 }, opacity: 0.3 });
    Plotly.newPlot(this.el, [
      faint("loss", OI.vermilion, false), faint("accuracy", OI.green, true),
      { x: [], y: [], mode: "lines", name: "loss", line: { color: OI.vermilion, width: 2.2 } },
      { x: [], y: [], mode: "lines", name: "accuracy", yaxis: "y2", line: { color: OI.green, width: 2.2 } },
    ], baseLayout({ xaxis: { title: { text: "step", standoff: 4 }, anchor: "y2", range: [0, 100] },
                    yaxis: { type: "log", domain: [0.45, 1], title: { text: "loss", standoff: 2 }, ...this.axis.axis() },
                    yaxis2: axis({ domain: [0, 0.37], range: [0, 1.02], tickformat: ".0%", dtick: 0.5, title: { text: "acc.", standoff: 2 } }) }), PLOT_CONFIG);
  }

  onSelect(value) {
    this.view.setWindow(value);
  }

  draw() {
    // x as it is at this draw: the series grows in place, and the plotted y are this draw's arrays
    const S = this.view.series, x = S.step.slice(), loss = S.h.loss, acc = S.h.accuracy;
    const keys = {}, xr = stepRange(x, this.view.windowMode, this.xrange);
    if (xr) { this.xrange = xr; keys["xaxis.range"] = xr; }
    const ax = this.axis, props = ax.update(loss.slice(firstVisible(x, this.xrange[0])));
    if (props) Object.assign(keys, ax.keys("yaxis", props));
    if (Object.keys(keys).length) Plotly.relayout(this.el, keys);
    if (props) this.decorate();
    animateTraces(this.el, [ax.ys(loss), acc, ax.ys(ema(loss)), ema(acc)].map((y) => ({ x, y })), [0, 1, 2, 3]);
  }

  shapes() {
    return this.axis ? this.axis.shapes() : [];
  }
}
