// G's and D's layer × step heat maps: one statistic of every layer of one network over the whole
// run, log10, as an image (charts/imagemap.js, as the MLP's heat map). One class per network, made
// from its statistic prefix (the family's views.networks: "g", "d").
import { HeatmapChart } from "./heatmap.js";

const METRICS = ["grad_norm", "delta_norm", "update_ratio"];

/** The heat map of the network whose statistics are named `${p}_*` and whose depth is config[`${p}_depth`]. */
function heatmapChart(p, title) {
  const metrics = METRICS.map((m) => [`${p}_${m}`, `log10 ${m}`]);
  return class extends HeatmapChart {
    static spec = {
      name: `${p}heat`, requires: metrics.map(([k]) => k), title, span: 3, every: 80, share: 0.1, markers: true, labels: false,
      help: "Every layer of this network (rows, input at the bottom) at every step of the run (columns), coloured by one statistic on a log scale. A change of loss or Lipschitz constraint shows as a seam at its marker.",
      history: metrics.map(([k]) => k),
      select: { id: `${p}heat-metric`, label: `${p} heat map statistic`, options: () => metrics, value: (view, chart) => chart.metric },
    };

    constructor(el, view) {
      super(el, view);
      this.metric = `${p}_grad_norm`;
    }

    depth() {
      return this.view.config[`${p}_depth`] || 1;
    }
  };
}

export const GHeatmapChart = heatmapChart("g", "G: layer × step");
export const DHeatmapChart = heatmapChart("d", "D: layer × step");
