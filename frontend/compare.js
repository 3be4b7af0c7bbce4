// The compare view: two runs (or one, for a lesson without a B) in the same charts, A and B in one
// colour pair, lockstep Play/Pause/Step when this browser holds both tokens, and a link to each
// run's own page (its controls). Runs whose models' charts run along the layers see the per-layer
// charts, those that run through time the time profile and time heat maps (models.js: the family's
// views); each card lists the models it applies to. Page: /compare/{a}/{b}.
import { ImageHeatmap, VIRIDIS } from "./charts/imagemap.js";
import { LogAxis } from "./charts/logaxis.js";
import { OI, PLOT_CONFIG, StickyRange, baseLayout, layers, logz, palette } from "./charts/plot.js";
import { READS, fixChanges, fixTable, renderDiagnosis } from "./diagnosis.js";
import { diagnoseFor } from "./diagnoses.js";
import { GAME_READS } from "./gamediagnosis.js";
import { CHARTS, COLORS, applies, chainTraces, clipShapes, fits, heatRows, layerTraces, reads, timeProfileTraces, timeTraces } from "./comparecharts.js";
import { RunKnobs } from "./compareknobs.js";
import { Run } from "./comparerun.js";
import { persistent } from "./net.js";
import { api } from "./api.js";

export { CHARTS, COLORS };
const Plotly = window.Plotly;
// a lesson's `look` names a dashboard chart; these are the compare view's closest
const LOOK = { profile: "profile", heatmap: "heatmap", chain: "chain", hist: "profile", acts: "acts", ratio: "ratio", loss: "loss",
  clip: "clip", boundary: "loss", val: "accuracy", time: "time", timeheat: "heatmap", spp: "spp" };
// the heat maps' two kinds (comparecharts.js heatRows), by the run's axis: layers, or time steps
const HEAT = {
  layer: { title: "Layer × step: log10 ‖dL/dW‖", ytitle: "layer", hover: "layer" },
  time: { title: "Time step × training step: log10 ‖dL/dh_t‖ of the top layer", ytitle: "time step", hover: "time step" },
};

export class CompareView {
  /** @param {HTMLElement} root  @param {{a: string, b?: string, look?: string}} opts */
  constructor(root, opts) {
    this.root = root;
    this.look = opts.look ? LOOK[opts.look] : null;
    this.listeners = [];
    this.meta = {};
    // the diagnoses read these from the latest step (baseline: timediagnosis.js)
    const keep = reads([...READS, ...GAME_READS, "baseline"]);
    this.runs = [opts.a, opts.b].filter(Boolean).map((id, k) => new Run("ab"[k], id, keep, () => this.changed()));
    this.dirty = true;
    this.build();
  }

  /** Call fn() whenever a run's status or step changes. */
  onChange(fn) { this.listeners.push(fn); }

  changed() {
    this.dirty = true;
    this.renderStatus();
    for (const fn of this.listeners) fn(this);
  }

  build() {
    const paired = this.runs.length === 2;
    this.root.innerHTML = `
      <div class="cmp-bar">
        <div class="cmp-runs"></div>
        <div class="cmp-transport" role="group" aria-label="both runs"
             title="Play and Step drive both runs in lockstep when this browser owns both; each run's own page has its controls">
          <button id="cmp-play" type="button" class="primary">▶ Play</button>
          <button id="cmp-step" type="button">Step</button>
        </div>
        <button id="cmp-link" type="button">Copy compare link</button>
      </div>
      <div class="cmp-grid"></div>`;
    const grid = this.root.querySelector(".cmp-grid");
    this.grid = grid;
    this.el = {};
    for (const [name, spec] of Object.entries(CHARTS)) if (!spec.own) grid.append(this.chartCard(name, spec));
    this.buildPairs(grid);
    this.root.querySelector("#cmp-play").addEventListener("click", () => this.control(this.anyRunning() ? "pause" : "play"));
    this.root.querySelector("#cmp-step").addEventListener("click", () => this.control("step"));
    this.root.querySelector("#cmp-link").hidden = !paired;
    this.root.querySelector("#cmp-link").addEventListener("click", () => this.copyLink());
  }

  /** The card of chart `name`: its header, sub line and plot (this.el[name]). */
  chartCard(name, spec) {
    const card = document.createElement("article");
    card.className = "card cmp-card";
    card.dataset.chart = name;
    card.innerHTML = `<header><h2>${spec.title}</h2><span class="sub" id="cmp-sub-${name}"></span></header>
      <div class="chart-wrap"><div class="chart" id="cmp-${name}"></div><div class="card-empty" hidden></div></div>`;
    if (name === this.look) card.classList.add("highlight");
    this.el[name] = card.querySelector(".chart");
    return card;
  }

  /** A family's own cards (spec.own), built the first time a run fits them, before the heat maps. */
  buildOwn() {
    for (const [name, spec] of Object.entries(CHARTS)) {
      if (spec.own && !this.el[name] && this.runs.some((r) => fits(spec, r, this.meta))) {
        this.grid.insertBefore(this.chartCard(name, spec), this.el.heatmap);
      }
    }
  }

  /** The cards that show A and B in two panels (heat maps, diagnoses) and the chain-rule factors. */
  buildPairs(grid) {
    const card = (name, title, cls, inner) => {
      const el = document.createElement("article");
      el.className = `card cmp-card ${cls}`;
      el.dataset.chart = name;
      el.innerHTML = `<header><h2>${title}</h2></header>${inner}`;
      if (name === this.look) el.classList.add("highlight");
      grid.append(el);
      return el;
    };
    const panels = (kind) => this.runs.map((r) => `<div class="cmp-panel" data-run="${r.name}" style="border-color: ${COLORS[r.name]}">
      <h3>${r.name.toUpperCase()}</h3>${kind === "chart" ? "" : `<div class="cmp-knobs" id="cmp-knobs-${r.name}"></div>`}
      <div class="chart-wrap"><div class="${kind}" id="cmp-${kind === "chart" ? "heatmap" : "diagnosis"}-${r.name}"></div>${kind === "chart" ? '<div class="card-empty" hidden></div>' : ""}</div></div>`).join("");
    const heat = card("heatmap", HEAT.layer.title, "cmp-wide", `<div class="cmp-panels">${panels("chart")}</div>`);
    card("chain", "Chain-rule factors per hidden layer (solid: slope, dashed: weight)", "", '<div class="chart-wrap"><div class="chart" id="cmp-chain"></div><div class="card-empty" hidden></div></div>');
    this.el.heatmap = heat;  // the look's scroll target (start())
    this.el.chain = this.root.querySelector("#cmp-chain");
    this.axes = { chain: new LogAxis({ start: [-1, 1] }) };  // the chain's always spans the guides at 0.25 and 1
    const diag = card("diagnosis", "Each run: its live knobs and diagnosis", "cmp-wide", `<div class="cmp-panels">${panels("diagnosis")}</div>`);
    this.heat = { range: new StickyRange(1, 0.7), maps: {}, shown: {} };  // shown: the range each map's colour bar has
    for (const r of this.runs) {
      this.heat.maps[r.name] = new ImageHeatmap(heat.querySelector(`#cmp-heatmap-${r.name}`), { scale: VIRIDIS, zmin: -6, zmax: 0,
        xtitle: "step", ytitle: "layer", colorbar: "log10" });
      this.el[`diagnosis-${r.name}`] = diag.querySelector(`#cmp-diagnosis-${r.name}`);
    }
  }

  /** Join both runs and start drawing; returns the runs the server does not know (then nothing is drawn). */
  async start() {
    const [meta] = await Promise.all([persistent("GET", "/api/meta"), ...this.runs.map((r) => r.open())]);
    if (meta.ok && meta.data) this.meta = { ...meta.data, ...(meta.data.meta || {}) };
    for (const r of this.runs) r.meta = this.meta;
    const missing = this.runs.filter((r) => r.missing);
    if (missing.length) {
      for (const r of this.runs) if (r.socket) r.socket.close();
      return missing;
    }
    this.knobs = this.runs.map((r) => new RunKnobs(this.root.querySelector(`#cmp-knobs-${r.name}`), r, this.meta));
    this.fitModels();
    this.renderStatus();
    if (this.look && this.el[this.look]) this.el[this.look].closest(".card").scrollIntoView({ block: "center" });
    const loop = (now) => { if (this.dirty && now - (this.drawn || 0) > 150) this.draw(now); requestAnimationFrame(loop); };
    requestAnimationFrame(loop);
    return [];
  }

  /** Resolves once every run's socket said hello (it is then watched: no idle pause). */
  whenConnected() {
    return new Promise((resolve) => {
      const check = () => { if (this.runs.every((r) => r.role)) { resolve(); return true; } return false; };
      if (!check()) this.onChange(check);
    });
  }

  anyRunning() { return this.runs.some((r) => r.status === "running"); }
  get owner() { return this.runs.every((r) => r.token); }
  get link() { return `${location.origin}/compare/${this.runs.map((r) => r.id).join("/")}`; }

  async copyLink() {
    this.copied = this.link;
    try { await navigator.clipboard.writeText(this.link); } catch { /* the link is shown in the status line */ }
  }

  /** play | pause | step: both runs at once, in lockstep (server-side), or the one run. */
  async control(action) {
    if (!this.owner) return null;
    const [a, b] = this.runs;
    const seq = (this.controlSeq = (this.controlSeq || 0) + 1);
    this.busy = action !== "pause";  // a run that lags catches up now, before the pair steps or plays
    this.changed();
    // patient: bringing a run level can take a while (thousands of steps) and is not a silent server
    const r = b
      ? await api("POST", `/api/compare/${a.id}/${b.id}/control`, { action }, { token: a.token, headers: { "X-Token-B": b.token }, patient: true })
      : await api("POST", `/api/sessions/${a.id}/control`, { action }, { token: a.token, patient: true });
    if (seq === this.controlSeq) this.busy = false;
    // Two quick clicks are two requests whose answers may cross: only the newest one's state counts.
    if (seq !== this.controlSeq) return r;
    if (r.ok && b) for (const run of this.runs) Object.assign(run, r.data[run.name]);
    else if (r.ok) { a.step = r.data.step + (action === "step" ? 1 : 0); a.status = r.data.applied.status; }
    this.changed();
    return r;
  }

  /** Each run's chip: what it changes from A, its status and step (text only: the link stays clickable). */
  renderStatus() {
    const box = this.root.querySelector(".cmp-runs");
    if (!box.children.length) box.replaceChildren(...this.runs.map((r) => runChip(r)));
    this.runs.forEach((r, k) => {
      const diff = r.name === "b" && r.config && this.runs[0].config ? describeDiff(this.runs[0].config, r.config) : "";
      box.children[k].firstChild.textContent = `${r.name.toUpperCase()}${diff ? ` (${diff})` : ""}: ${this.runState(r)} `;
      box.children[k].dataset.lag = String(Boolean(this.lagging(r)));
    });
    for (const k of this.knobs || []) k.sync();
    for (const b of this.root.querySelectorAll(".cmp-transport button")) b.disabled = !this.owner;
    this.root.querySelector("#cmp-play").textContent = this.anyRunning() ? "❚❚ Pause" : "▶ Play";
  }

  /** The run `r` is behind its partner by, or 0 (paired runs only). */
  lagging(r) {
    const other = this.runs.find((o) => o !== r);
    return other && other.config && r.config ? Math.max(0, other.step - r.step) : 0;
  }

  /** "running, step 120" · "catching up: step 800 of 3969" · "running, waits for B (lockstep)" */
  runState(r) {
    const other = this.runs.find((o) => o !== r), behind = this.lagging(r);
    if (r.compiling) return `compiling ${r.compiling.what}…, step ${r.step}`;  // never "running" while it compiles
    if (behind && (this.busy || r.status === "running" || other.status === "running")) return `catching up: step ${r.step} of ${other.step}`;
    if (behind) return `${r.status} at step ${r.step}, ${behind} behind ${other.name.toUpperCase()}: it catches up on Play or Step`;
    if (other && r.status === "running" && this.lagging(other)) return `running, waits for ${other.name.toUpperCase()} at step ${r.step} (lockstep)`;
    return `${r.status}, step ${r.step}`;
  }

  /**
   * Which cards apply to the runs' models (a card none fits is hidden; one that a run skips says
   * why in its header), and the heat maps' kind. Again whenever a run's model or shape changes.
   */
  fitModels() {
    const notes = [];
    this.buildOwn();
    for (const [name, spec] of Object.entries(CHARTS)) {
      if (!this.el[name]) continue;
      const fitting = this.runs.filter((r) => fits(spec, r, this.meta));
      const skipped = fitting.filter((r) => !applies(spec, r, this.meta)), shown = fitting.length > skipped.length;
      const reasons = [...new Set(skipped.map((r) => spec.skip(r, this.meta)))];  // "A, B: adding is a regression: no accuracy"
      const why = reasons.map((w) => `${skipped.filter((r) => spec.skip(r, this.meta) === w).map((r) => r.name.toUpperCase()).join(", ")}: ${w}`);
      this.el[name].closest(".card").hidden = !shown;
      this.root.querySelector(`#cmp-sub-${name}`).textContent = shown ? why.join(" · ") : "";
      if (!shown && why.length) notes.push(...why);
    }
    this.root.querySelector("#cmp-sub-loss").textContent = notes.join(" · ");  // e.g. adding: no accuracy card
    const known = this.runs.filter((r) => r.config), axes = Object.keys(HEAT).filter((a) => known.some((r) => r.axis === a));
    this.el.chain.closest(".card").hidden = !known.some((r) => r.views.theory === "chain");
    const title = axes.map((a) => HEAT[a].title).join(" · ") || HEAT.layer.title;
    this.el.heatmap.querySelector("h2").textContent = `${title} (one colour scale for both)`;
    for (const r of this.runs) r.reshaped = false;
  }

  draw(now) {
    this.drawn = now;
    this.dirty = false;
    if (this.runs.some((r) => r.reshaped)) this.fitModels();
    const T = Math.max(2, ...this.runs.map((r) => (r.axis === "time" ? r.config.seq_len : 0)));
    for (const [name, spec] of Object.entries(CHARTS)) {
      if (!this.el[name] || this.el[name].closest(".card").hidden) continue;
      const runs = this.runs.filter((r) => applies(spec, r, this.meta));
      let traces = runs.flatMap((r) => (spec.kind === "layer" ? layerTraces(r, spec) : spec.kind === "time" ? timeTraces(r, spec) : timeProfileTraces(r)));
      const xaxis = spec.kind === "timeprofile" ? { title: { text: "time step (first → last)" }, range: [0.5, T + 0.5] }
        : { title: { text: spec.kind === "layer" ? "layer" : "step" } };
      let yaxis = { type: "linear", ...(name === "accuracy" ? { range: [0, 1.02], tickformat: ".0%" } : {}) }, floor = [];
      if (spec.log) {  // zeros on the floor band (logaxis.js), not holes
        const ax = (this.axes[name] ||= new LogAxis());
        ax.update(traces.flatMap((t) => t.y));
        traces = traces.map((t) => ({ ...t, y: ax.ys(t.y) }));
        yaxis = { type: "log", ...ax.axis() };
        floor = ax.shapes();
      }
      // the series grow in place: datarevision tells Plotly.react the data changed
      const layout = baseLayout({ datarevision: now, margin: { l: 50, r: 10, t: 8, b: 32 }, hovermode: "closest",
        legend: { orientation: "h", y: 1.12 }, shapes: [...floor, ...(name === "clip" ? clipShapes(this.runs) : [])], xaxis, yaxis });
      Plotly.react(this.el[name], traces, layout, PLOT_CONFIG);
      this.say(this.el[name], traces.length ? "" : this.emptyText(runs));
    }
    this.drawHeatmaps();
    if (!this.el.chain.closest(".card").hidden) this.drawChain(now);
    this.drawDiagnoses();
  }

  /** Why a chart of `runs` has no trace: a run still catching up, or no statistics yet. */
  emptyText(runs) {
    const lag = runs.find((r) => this.lagging(r) && !r.series.latest);
    if (lag) return `${lag.name.toUpperCase()}: ${this.runState(lag)}`;
    const paused = runs.every((r) => r.status === "paused");
    return paused ? "No statistics yet: press Play or Step." : "Waiting for the first steps…";
  }

  /** Show `text` over the chart `el` (its .card-empty sibling); "" hides it. */
  say(el, text) {
    const box = el.parentElement.querySelector(".card-empty");
    if (!box) return;
    if (box.textContent !== text) box.textContent = text;
    box.hidden = !text;
  }

  /**
   * Each run's heat map (layer × step, or time step × training step for a model that runs through
   * time), all on one colour range (sticky, whole decades), so equal colours mean equal norms.
   * A run with no statistics yet says why (catching up with its partner, paused).
   */
  drawHeatmaps() {
    const rows = this.runs.map(heatRows);
    const logs = this.runs.map((r, k) => r.series.step.map((_, i) => layers(rows[k].n, 0).map((row) => logz(rows[k].value(row, i)))));
    const zr = this.heat.range.update(logs.flat(2));
    this.runs.forEach((r, k) => {
      const map = this.heat.maps[r.name], { kind, n } = rows[k], h = HEAT[kind];
      this.say(map.el, n && r.series.step.length ? "" : this.emptyText([r]));
      if (!n || !r.series.step.length) return;
      if (!map.y || map.y.length !== n || map.kind !== kind) {
        Object.assign(map.opts, { ytitle: h.ytitle, hovertemplate: `step %{x:.0f}<br>${h.hover} %{y}<br>log10 %{z:.2f}<extra></extra>` });
        map.kind = kind;
        map.reset(layers(n));
        this.heat.shown[r.name] = null;
      }
      if (zr || this.heat.shown[r.name] !== this.heat.range.range) {
        this.heat.shown[r.name] = this.heat.range.range;
        [map.opts.zmin, map.opts.zmax] = this.heat.range.range;
        Plotly.restyle(map.el, { zmin: map.opts.zmin, zmax: map.opts.zmax }, [0]);
      }
      map.draw(r.series.step, (row, i) => logs[k][i][row] ?? null);
    });
  }

  /** Slope factor delta/h and weight factor h/u (charts/factors.js) of each run that has them, guides at 1 and 0.25. */
  drawChain(now) {
    const ax = this.axes.chain, p = palette();
    const traces = this.runs.flatMap(chainTraces);
    ax.update([...traces.flatMap((t) => t.y), 0.25, 1]);
    // the guides of charts/chain.js, in grey and vermilion here: orange is run B
    const guide = (y, color) => ({ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: y, y1: y, line: { color, width: 1.2, dash: "dot" } });
    const label = (y, text, color) => ({ xref: "paper", x: 1, yref: "y", y: Math.log10(y), text, showarrow: false,
      xanchor: "right", yanchor: "bottom", font: { size: 10, color } });
    Plotly.react(this.el.chain, traces.map((t) => ({ ...t, y: ax.ys(t.y) })), baseLayout({ datarevision: now, hovermode: "closest",
      shapes: [...ax.shapes(), guide(1, p.floor), guide(0.25, OI.vermilion)],
      annotations: [label(1, "1: passes unchanged", p.floor), label(0.25, "0.25: sigmoid's ceiling", OI.vermilion)],
      xaxis: { title: { text: "hidden layer (input → output)", standoff: 4 } }, yaxis: { type: "log", ...ax.axis() } }), PLOT_CONFIG);
    this.say(this.el.chain, traces.length ? "" : this.emptyText(this.runs));
  }

  /** Each run's diagnosis (as the dashboard reads it); its fixes apply to that run where this browser owns it. */
  drawDiagnoses() {
    for (const r of this.runs) {
      if (!r.config || !r.series.latest) continue;
      const result = diagnoseFor(this.meta, r.config, r.series.latest), fixes = fixTable(this.meta, r.model);
      renderDiagnosis(this.el[`diagnosis-${r.name}`], result, { canFix: Boolean(r.token), fixes,
        onFix: (name) => r.set(fixChanges(name, r.config, fixes)) });
    }
  }
}

/** A run's chip in the bar: its status text, then a link to its own page (its controls, for its owner). */
function runChip(r) {
  const span = document.createElement("span");
  Object.assign(span, { className: "cmp-run" });
  span.dataset.run = r.name;
  span.style.borderColor = COLORS[r.name];
  const open = document.createElement("a");
  Object.assign(open, { className: "cmp-open", href: r.href, target: "_blank", textContent: `${r.name.toUpperCase()}'s page ↗`,
    title: r.token ? "This run's own page, with its controls (you own it)" : "This run's own page (as a viewer)" });
  span.append(document.createTextNode(""), open);
  return span;
}

/** "activation tanh, init he_normal": what B's config changes from A's. */
export function describeDiff(a, b) {
  return Object.keys(b).filter((k) => a[k] !== b[k]).map((k) => `${k} ${b[k]}`).join(", ");
}
