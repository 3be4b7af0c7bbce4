// The contract every chart module implements, and what they share: shapes (event markers on time
// charts, the highlighted layer on per-layer charts) applied in one relayout.
import { Plotly, highlightShape } from "./plot.js";

/**
 * A chart on the board. Subclasses set `static spec` and implement `reset()` and `draw(now)`.
 *
 * spec fields:
 *   name      container id `chart-<name>` and the scheduler's key
 *   requires  statistics the model must emit (models.js) for the chart to apply; the card hides otherwise
 *   title, sub, help   card header, subtitle and the one-paragraph explanation under the chart
 *   span, tall         grid columns (of 6) and height
 *   every, share       fastest redraw interval (ms) and the most of the main thread it may take
 *   history, latest    statistics it reads from the series: kept over time / only the latest step
 *   markers            true: the timeline's event markers are drawn on it (x = step)
 *   layers             true: its x axis is the layer number and it shows the highlighted layer
 *   theory, window     true: redrawn when the theory curve / the time window changes
 *   select             optional header <select>: {id, label, options(view) -> [[value, text]], value(view)}
 */
export class Chart {
  static spec = {};

  /** @param {HTMLElement} el  the chart's container; @param view  the Dashboard (config, series, ...) */
  constructor(el, view) {
    this.el = el;
    this.view = view;
    this.dirty = true;  // redraw at the next chance even when no new data arrived
  }

  get spec() {
    return this.constructor.spec;
  }

  /** Plot afresh for `view.config` (on join and when the network's shape changes). */
  reset() {}

  /** Update the plot from the view; called by the scheduler, at most once per animation frame. */
  draw() {}

  /** Live keys changed; `prev` is the config before (`view.config` the new one). Default: redraw. */
  configChanged() {
    this.dirty = true;
  }

  /**
   * Why the chart shows nothing although the run has statistics (a dataset it does not apply
   * to, data that come later), or null. The board says it over the chart.
   */
  emptyReason() { return null; }

  /** The header select changed to `value`. */
  onSelect() {}

  /** Shapes and annotations of this chart itself (guides, thresholds), kept under any marker update. */
  shapes() { return []; }
  annotations() { return []; }

  /** Re-apply every shape: event markers, the highlighted layer, the chart's own. */
  decorate() {
    const v = this.view, s = this.spec;
    const shapes = [...(s.markers ? v.markers.shapes : []), ...(s.layers ? highlightShape(v.highlightX()) : []), ...this.shapes()];
    const annotations = [...(s.markers && s.labels !== false ? v.markers.annotations : []), ...this.annotations()];
    Plotly.relayout(this.el, { shapes, annotations });
  }
}
