// Layer x step: one statistic of every layer over the whole run, log10, as an image.
import { Chart } from "./chart.js";
import { ImageHeatmap, VIRIDIS } from "./imagemap.js";
import { layers, logz } from "./plot.js";

const METRICS = [["grad_norm", "log10 grad_norm"], ["delta_norm", "log10 delta_norm"], ["update_ratio", "log10 update_ratio"]];

export class HeatmapChart extends Chart {
  static spec = {
    name: "heatmap", requires: ["delta_norm"], title: "Layer × step", span: 3, tall: true, every: 50, share: 0.2, markers: true, labels: false,
    help: "Every layer (rows, input at the bottom) at every step of the run (columns), coloured by the size of one statistic on a log scale. A vanishing gradient is a dark band along the first layers; a change of activation or initializer shows as a vertical seam at its marker.",
    history: METRICS.map(([k]) => k),
    select: { id: "heat-metric", label: "heatmap statistic", options: () => METRICS, value: (view, chart) => chart.metric },
  };

  constructor(el, view) {
    super(el, view);
    this.metric = "grad_norm";
    this.map = new ImageHeatmap(el, { scale: VIRIDIS, zmin: -6, zmax: 0, autoz: true, xtitle: "step", ytitle: "layer", colorbar: "log10",
      hovertemplate: "step %{x:.0f}<br>layer %{y}<br>log10 %{z:.2f}<extra></extra>" });
  }

  /** Hidden layers drawn (the readout adds one row). */
  depth() {
    return this.view.config.depth;
  }

  /**
   * The rows of the statistic shown, input at the bottom: {n, names, at, title}: how many, their names
   * (the run's layer names, or null: numbered), at(row): the index of the row's value in the statistic's
   * array (null: none), and what a row is. A run's named probes (delta_norm: one value per probe) sit at
   * their layers' rows where every probe names a layer, else get a row each (as dashboard.js probeLayers).
   */
  rows() {
    const v = this.view, names = v.layerNames(), probes = this.metric === "delta_norm" ? v.probeNames() : null;
    const byLayer = { n: names ? names.length : this.depth() + 1, names, at: (r) => r, title: "layer" };
    if (!probes) return byLayer;
    const at = v.probeLayers();
    return at ? { ...byLayer, at: (r) => (at.includes(r) ? at.indexOf(r) : null) } : { n: probes.length, names: probes, at: (r) => r, title: "probe" };
  }

  reset() {
    this.shape = this.rows();
    this.map.reset(layers(this.shape.n), { names: this.shape.names, ytitle: this.shape.title });
  }

  onSelect(value) {
    this.metric = value;
    this.reset();  // a fresh colour range
    this.decorate();
    this.dirty = true;
  }

  draw() {
    const S = this.view.series, cols = S.h[this.metric], at = this.shape.at;
    this.map.draw(S.step, (row, i) => {
      const k = at(row);
      return cols[i] && k !== null ? logz(cols[i][k]) : null;
    });
  }
}
