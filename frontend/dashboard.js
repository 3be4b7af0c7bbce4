// The board: builds one card per chart module of the table, keeps the series they read, and
// redraws at most one chart per animation frame (the most overdue). What the charts share, the
// view, is this object: config, meta, series, events, theory, the highlighted layer.
import { Scheduler } from "./charts/scheduler.js";
import { OI, eventLabel, palette, retheme } from "./charts/plot.js";
import { Series } from "./series.js";
import { layerNamesOf, probeNamesOf, shows } from "./models.js";

const MARKER_CAP = 60, LABELLED = 4;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

export class Dashboard {
  /**
   * @param {HTMLElement} grid  where the cards go
   * @param {Function[]} table  chart classes (charts/index.js), in display order
   * @param {{latest?: string[]}} extra  statistics other readers (the diagnosis) need from the latest step
   */
  constructor(grid, table, extra = {}) {
    this.charts = new Map();
    this.cards = new Map();
    this.active = {};  // chart name -> whether it applies to the current model (models.js shows: spec.requires, spec.views)
    this.scheduler = new Scheduler();
    this.events = [];
    this.markers = { shapes: [], annotations: [] };
    this.layer = null;  // the highlighted layer index, or null
    this.windowMode = "recent";
    this.theory = null;
    this.factors = null;
    this.boundary = null;
    this.plane = null;  // the latest plane message (a GAN's data plane)
    this.config = null;
    this.meta = {};
    this.drawn = {};  // series version each chart last drew
    this.visible = {};
    this.waiting = "Waiting for the first steps…";  // why the charts are empty before any statistics (main.js says)
    this.emptyAt = 0;
    this.info = { renders: 0, markers: 0, profile: null, frames: 0, previews: 0, previewsReplaced: 0, busy: 0, labels: [], empty: {} };
    const io = new IntersectionObserver((entries) => {
      for (const e of entries) this.visible[e.target.dataset.chart] = e.isIntersecting;
    });
    for (const Cls of table) {
      const spec = Cls.spec, node = el("div", { id: `chart-${spec.name}`, class: spec.tall ? "chart tall" : "chart", "data-chart": spec.name });
      this.cards.set(spec.name, this.card(spec, node));
      grid.append(this.cards.get(spec.name));
      this.charts.set(spec.name, new Cls(node, this));
      this.scheduler.add(spec.name, spec.every, spec.share);
      io.observe(node);
    }
    const reads = (key) => [...table.flatMap((C) => C.spec[key] || [])];
    this.series = new Series({ history: reads("history"), latest: [...reads("latest"), ...(extra.latest || [])] });
  }

  /** <article> with the chart's title, subtitle, header select, container and explanation. */
  card(spec, node) {
    const header = el("header", {}, el("h2", {}, spec.title));
    if (spec.sub !== undefined) header.append(el("span", { class: "sub", id: `sub-${spec.name}` }, spec.sub));
    if (spec.select) {
      const sel = el("select", { id: spec.select.id, "aria-label": spec.select.label });
      sel.addEventListener("change", () => this.charts.get(spec.name).onSelect(sel.value));
      header.append(sel);
    }
    const empty = el("div", { class: "card-empty", id: `empty-${spec.name}`, role: "status" });
    empty.hidden = true;
    return el("article", { class: `card span${spec.span || 2}`, "data-card": spec.name },
      header, el("div", { class: "chart-wrap" }, node, empty), el("p", { class: "card-help" }, spec.help || ""));
  }

  /** Header selects: their options for the current config, and their values. */
  syncSelects(rebuild = false) {
    for (const chart of this.charts.values()) {
      const s = chart.spec.select;
      if (!s) continue;
      const sel = document.getElementById(s.id);
      if (rebuild) sel.replaceChildren(...s.options(this).map(([v, t]) => new Option(t, v)));
      sel.value = s.value(this, chart);
    }
  }

  /** Draw every chart afresh for `config` (on join and when the network's shape changes). */
  reset(config, meta = this.meta) {
    this.config = { ...config };
    this.meta = meta;
    this.series.clear();
    if (this.layer !== null && this.layer > config.depth) this.layer = null;
    for (const [name, chart] of this.charts) {
      this.active[name] = shows(meta, config.model, chart.spec);
      this.cards.get(name).hidden = !this.active[name];
      if (!this.active[name]) continue;
      delete chart.el.dataset.live;  // its next update is a full draw (plot.js animateTraces)
      chart.reset();
      chart.decorate();
      chart.dirty = true;
    }
    this.drawn = {};
    this.syncSelects(true);
  }

  setMeta(meta) {
    this.meta = { ...this.meta, ...(meta || {}) };
  }

  /** Take a stats message or history block; drawing waits for the next frame. The first trained
   * rows replace a first look (`preview`). */
  ingest(block) {
    this.info.frames++;
    if (this.series.provisional && (block.step || []).length) {
      this.series.clear();
      this.info.previewsReplaced++;
    }
    return this.series.append(block);
  }

  /**
   * A new run's first look (a `preview` message): step 0's statistics at the initial weights, sent
   * while the run's training step still compiles. Drawn like a row until the first trained rows
   * replace it (`ingest`); ignored where trained rows are shown. Returns whether it was taken.
   */
  preview(block) {
    if (this.series.lastStep >= 0 && !this.series.provisional) return false;
    this.series.clear();
    this.series.append(block);
    this.series.provisional = true;
    this.info.previews++;
    return true;
  }

  /** Mark the charts `names` to redraw at the next chance, even with no new data. */
  redrawSoon(...names) {
    for (const name of names) {
      this.charts.get(name).dirty = true;
      this.scheduler.due(name);
    }
  }

  /** Live keys changed: each chart sees the previous config (threshold lines, theory, ...). */
  updateConfig(config) {
    const prev = this.config;
    this.config = { ...config };
    for (const [name, chart] of this.charts) if (this.active[name]) chart.configChanged(prev);
  }

  /**
   * @param {number[]} factors  the theory's backward factor per hidden layer (D,)
   * @param {(anchor: number) => (number|null)[]} profileFn  the expected profile from the output layer's norm
   */
  setTheory(factors, profileFn) {
    this.factors = factors;
    this.theory = profileFn;
    this.redrawSoon(...this.named((s) => s.theory));
  }

  /** Names of the charts whose spec passes `test`. */
  named(test) {
    return [...this.charts.values()].filter((c) => test(c.spec)).map((c) => c.spec.name);
  }

  setBoundary(msg) {
    this.boundary = msg;
    this.redrawSoon("boundary");
  }

  setPlane(msg) {
    this.plane = msg;
    if (this.active.plane) this.redrawSoon("plane");
  }

  setWindow(mode) {
    this.windowMode = mode;
    this.redrawSoon(...this.named((s) => s.window));
    this.syncSelects();
  }

  /** Highlight layer `index` (0-based; null: none) on every per-layer chart. */
  selectLayer(index) {
    this.layer = index === this.layer ? null : index;
    for (const [name, chart] of this.charts) {
      if (chart.spec.layers && this.active[name]) chart.decorate();
      chart.dirty = true;
    }
    this.syncSelects();
  }

  /** The highlighted layer, or `fallback` when none is. */
  layerOr(fallback) {
    return this.layer === null ? fallback : this.layer;
  }

  /** The names of the layers along the per-layer charts, where the run names them (models.js layerNamesOf); null: numbered. */
  layerNames() {
    return this.config ? layerNamesOf(this.meta, this.config) : null;
  }

  /**
   * How many layers the per-layer charts show before any statistics: the named layers, else the
   * hidden layers and the readout (depth + 1). The charts follow the statistics' own length once they come.
   */
  layerCount() {
    const names = this.layerNames();
    return names ? names.length : this.config.depth + 1;
  }

  /**
   * Where delta_norm's values sit along the layers (0-based) when the run names its probes
   * (models.js probeNamesOf: one value per probe, not per layer): each probe at the layer of the
   * same name, if every probe names a layer. null otherwise: delta_norm is drawn one value per layer
   * from the first, as for a run without probes. A probe that names no layer leaves all of them
   * there, so that a partial match never draws some probes at their layer and others at their index.
   */
  probeLayers() {
    const probes = this.config ? probeNamesOf(this.meta, this.config) : null, names = this.layerNames();
    if (!probes || !names) return null;
    const at = probes.map((p) => names.indexOf(p));
    return at.every((i) => i >= 0) ? at : null;
  }

  /** The names of delta_norm's values where the run names its probes, else null. */
  probeNames() {
    return this.config ? probeNamesOf(this.meta, this.config) : null;
  }

  /** x of the highlighted layer on the per-layer charts (layer numbers start at 1), or null. */
  highlightX() {
    return this.layer === null ? null : this.layer + 1;
  }

  setEvents(events) {
    this.events = (events || []).filter((e) => e && typeof e.step === "number");
    this.drawMarkers();
  }

  addEvent(ev) {
    this.events.push(ev);
    this.drawMarkers();
  }

  /** Why every chart is still empty (no statistics yet): "waiting for the first steps", "compiling", ... */
  setWaiting(text) {
    this.waiting = text;
  }

  /** Say over each empty chart why it is empty; a chart with something to show says nothing. */
  updateEmpties() {
    for (const [name, chart] of this.charts) {
      if (!this.active[name]) continue;
      const why = this.series.latest === null && (chart.spec.history || chart.spec.latest) ? this.waiting : chart.emptyReason();
      const box = document.getElementById(`empty-${name}`);
      if (box.textContent !== (why || "")) box.textContent = why || "";
      box.hidden = !why;
      this.info.empty[name] = why || null;
    }
  }

  /** The theme changed: every chart's colours, and the markers' labels. */
  retheme() {
    for (const [name, chart] of this.charts) if (this.active[name]) retheme(chart.el);
    this.drawMarkers();
  }

  /** Vertical marker lines on the time charts; the latest few carry their label. */
  drawMarkers() {
    const p = palette();
    const evs = this.events.filter((e) => e.kind !== "paused" && e.kind !== "resumed").slice(-MARKER_CAP);
    const labelled = evs.slice(-LABELLED);
    this.markers = {
      shapes: evs.map((e) => ({ type: "line", xref: "x", x0: e.step, x1: e.step, yref: "paper", y0: 0, y1: 1,
        line: { color: e.kind === "diverged" ? OI.vermilion : p.strong, width: 1, dash: "dot" }, opacity: 0.55 })),
      annotations: labelled.map((e, i) => ({ xref: "x", x: e.step, yref: "paper", y: 0.98 - 0.11 * (labelled.length - 1 - i),
        text: eventLabel(e), showarrow: false, xanchor: "left", yanchor: "top", font: { size: 10, color: p.strong },
        bgcolor: p.label, bordercolor: p.line, borderwidth: 1, borderpad: 2 })),
    };
    this.info.markers = evs.length;
    this.info.labels = evs.map(eventLabel);
    if (!this.config) return;
    for (const [name, chart] of this.charts) if (chart.spec.markers && this.active[name]) chart.decorate();
  }

  /** Whether chart `name` is on screen and has something new to show. */
  wants(name) {
    const chart = this.charts.get(name), s = chart.spec;
    const reads = (s.history || []).length + (s.latest || []).length > 0;
    if (!this.active[name] || this.visible[name] === false || (reads && this.series.latest === null)) return false;
    return chart.dirty || (reads && this.drawn[name] !== this.series.version);
  }

  /** One animation frame: the most overdue charts redraw (see Scheduler). */
  render(now) {
    if (!this.config) return;
    if (now - this.emptyAt > 250) { this.emptyAt = now; this.updateEmpties(); }
    this.info.busy += this.scheduler.frame(now, (n) => this.wants(n), (name) => {
      const chart = this.charts.get(name);
      chart.dirty = false;
      this.drawn[name] = this.series.version;
      chart.draw(now);
    });
  }
}
