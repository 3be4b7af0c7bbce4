// Training batch against the held-out split: loss and accuracy (held-out every meta.val_every steps).
import { Chart } from "./chart.js";
import { LogAxis } from "./logaxis.js";
import { OI, PLOT_CONFIG, Plotly, animateTraces, axis, baseLayout, ema } from "./plot.js";
import { firstVisible, stepRange } from "./timeaxis.js";

/**
 * (x, y) of the non-null entries of `y` (the held-out numbers are null on most rows), at the
 * step of the evaluation: the last multiple of `every` at or before the row's step (a row
 * covers the steps since the previous measured one, and the evaluation ran among them).
 */
function present(x, y, every) {
  const xs = [], ys = [];
  for (let i = 0; i < y.length; i++) {
    if (typeof y[i] === "number") { xs.push(every > 0 ? Math.floor(x[i] / every) * every : x[i]); ys.push(y[i]); }
  }
  return { x: xs, y: ys };
}

export class ValChart extends Chart {
  static spec = {
    name: "val", requires: ["val_loss"], title: "Training vs held-out", span: 2, every: 300, share: 0.05, markers: true, labels: false, window: true,
    help: "Loss (top, log scale) and accuracy (bottom) on the training batches, smoothed, and on a held-out fifth of the data that the network never trains on, measured every few dozen steps in evaluation mode (no dropout, running BatchNorm statistics). A gap that opens between them is overfitting; both flat is a network that is not learning.",
    history: ["loss", "accuracy", "val_loss", "val_accuracy"],
  };

  reset() {
    this.xrange = null;
    this.axis = new LogAxis({ spare: 2.5, pad: 0.1, ticks: 3, start: [-1, 1] });
    const line = (name, color, y2, dash) => ({ x: [], y: [], mode: dash ? "lines+markers" : "lines", name,
      yaxis: y2 ? "y2" : "y", line: { color, width: 2, dash: dash ? "dot" : "solid" }, marker: { size: 4 } });
    Plotly.newPlot(this.el, [
      line("train loss", OI.vermilion, false, false), line("held-out loss", OI.vermilion, false, true),
      line("train acc.", OI.green, true, false), line("held-out acc.", OI.green, true, true),
    ], baseLayout({ xaxis: { title: { text: "step", standoff: 4 }, anchor: "y2", range: [0, 100] },
                    yaxis: { type: "log", domain: [0.45, 1], title: { text: "loss", standoff: 2 }, ...this.axis.axis() },
                    yaxis2: axis({ domain: [0, 0.37], range: [0, 1.02], tickformat: ".0%", dtick: 0.5, title: { text: "acc.", standoff: 2 } }) }), PLOT_CONFIG);
  }

  draw() {
    const S = this.view.series, x = S.step.slice(), h = S.h;
    const every = this.view.meta.val_every || 0;
    const vl = present(x, h.val_loss, every), va = present(x, h.val_accuracy, every);
    const keys = {}, xr = stepRange(x, this.view.windowMode, this.xrange);
    if (xr) { this.xrange = xr; keys["xaxis.range"] = xr; }
    const i0 = firstVisible(x, this.xrange[0]);
    const ax = this.axis, props = ax.update([...h.loss.slice(i0), ...vl.y.slice(firstVisible(vl.x, this.xrange[0]))]);
    if (props) Object.assign(keys, ax.keys("yaxis", props));
    if (Object.keys(keys).length) Plotly.relayout(this.el, keys);
    if (props) this.decorate();
    this.view.info.val = vl.y.length;
    animateTraces(this.el, [{ x, y: ax.ys(ema(h.loss)) }, { x: vl.x, y: ax.ys(vl.y) }, { x, y: ema(h.accuracy) }, va], [0, 1, 2, 3]);
  }

  shapes() {
    return this.axis ? this.axis.shapes() : [];
  }
}
