// Signal propagation (Brock, De & Smith 2021): per residual block (per layer in a plain net), the
// average squared channel mean and channel variance of its output and the variance of its residual
// branch, on a log scale, with what theory expects of the variance for the run's architecture.
import { Chart } from "./chart.js";
import { OI, PLOT_CONFIG, Plotly, StickyRange, animateTraces, baseLayout, pos } from "./plot.js";

/** The finite entries of `a` as [x (1-based layer), y]; NaN marks layers inside a residual block. */
const points = (a) => (a || []).map((v, i) => [i + 1, pos(v)]).filter(([, v]) => v !== null);

/**
 * What theory expects of the output variance over the blocks, from the first one's value v0 and
 * the branch variance r: an unnormalized residual net under He init doubles it per block (each
 * block adds a branch of the same variance as its input); with BatchNorm each block adds a
 * branch of about unit-order variance r, so it grows linearly; SkipInit's zero gains keep it at v0.
 * A plain net: none drawn (its variance follows the initializer, not the blocks).
 * @returns {{name: string, y: number[]} | null}
 */
export function sppTheory(config, xs, v0, r) {
  if (!config.residual || v0 === null) return null;
  const b = xs.map((_, k) => k);
  if (config.skip_init) return { name: "theory: flat (SkipInit)", y: b.map(() => v0) };
  if (config.batchnorm) return { name: "theory: linear (BatchNorm)", y: b.map((k) => v0 + k * (r ?? v0)) };
  return { name: "theory: doubles per block", y: b.map((k) => v0 * 2 ** k) };
}

export class SppChart extends Chart {
  static spec = {
    name: "spp", requires: ["spp_var"], title: "Signal propagation", sub: "per block, this batch · dotted: theory",
    span: 3, every: 250, share: 0.06, layers: true, theory: true,
    help: "The forward signal through the net, block by block (layer by layer in a plain net), on this step's batch: the average channel variance of each block's output, its average squared channel mean, and the variance of the residual branch at its end. Without normalization a residual net under He init doubles its variance every block, which ends in exploding activations and gradients; BatchNorm makes the growth linear, SkipInit (a zero gain on each branch) keeps it flat at the start. The dotted line is that expectation for this run's settings.",
    latest: ["spp_mean_sq", "spp_var", "spp_res_var"],
  };

  reset() {
    this.range = new StickyRange(1);
    this.theoryName = "theory";
    const D = this.view.config.depth;
    const line = (name, color, dash) => ({ x: [], y: [], mode: "lines+markers", name, line: { color, width: 2, dash }, marker: { size: 4 }, connectgaps: true });
    Plotly.newPlot(this.el, [
      line("variance", OI.blue), line("squared mean", OI.orange), line("branch variance", OI.green),
      { x: [], y: [], mode: "lines", name: "theory", line: { color: OI.grey, width: 1.5, dash: "dot" } },
    ], baseLayout({ xaxis: { title: { text: "layer (input → output)", standoff: 4 }, range: [0.5, D + 0.5] },
                    yaxis: { type: "log", title: { text: "per channel", standoff: 2 } } }), PLOT_CONFIG);
  }

  draw() {
    const s = this.view.series.latest || {};
    const [v, m, r] = [s.spp_var, s.spp_mean_sq, s.spp_res_var].map(points);
    const xs = v.map(([x]) => x);
    const rs = r.map(([, y]) => y), branch = rs.length ? rs.reduce((a, b) => a + b, 0) / rs.length : null;
    const theory = sppTheory(this.view.config, xs, v.length ? v[0][1] : null, branch);
    const t = theory ? { x: xs, y: theory.y, name: theory.name } : { x: [], y: [], name: "theory" };
    const logs = [...v, ...m, ...r].map(([, y]) => Math.log10(y)).concat(theory ? theory.y.map(Math.log10) : []);
    const range = this.range.update(logs);
    if (range) Plotly.relayout(this.el, { "yaxis.range": range });
    if (t.name !== this.theoryName) {  // a legend change redraws the plot: only when the architecture changed
      this.theoryName = t.name;
      Plotly.restyle(this.el, { name: [t.name] }, [3]);
    }
    animateTraces(this.el, [v, m, r].map((p) => ({ x: p.map(([x]) => x), y: p.map(([, y]) => y) })).concat([{ x: t.x, y: t.y }]), [0, 1, 2, 3]);
  }
}
