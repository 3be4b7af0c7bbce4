// The compare view: two runs (or one, for a lesson without a B) in the same charts, A and B in one
// colour pair, lockstep Play/Pause/Step when this browser holds both tokens. Page: /compare/{a}/{b}.
import { SessionSocket } from "./socket.js";
import { Series } from "./series.js";
import { chainFactors } from "./charts/factors.js";
import { ImageHeatmap, VIRIDIS } from "./charts/imagemap.js";
import { OI, StickyLogRange, StickyRange, baseLayout, layers, log10 } from "./charts/plot.js";
import { READS, diagnose, renderDiagnosis } from "./diagnosis.js";
import { diagnoseTime } from "./timediagnosis.js";

const Plotly = window.Plotly;
export const COLORS = { a: "#0072B2", b: "#E69F00" };  // Okabe-Ito blue / orange, as in the dashboard
const tokenKey = (id) => `gradscope.token.${id}`;
const FONT = { family: "Inter, system-ui, sans-serif", size: 11, color: "#39404a" };
// chart name -> what it plots: "layer" charts read the latest per-layer values, "time" ones the series
export const CHARTS = {
  profile: { title: "Gradient profile: ‖dL/dW‖ per layer", kind: "layer", stat: "grad_norm", log: true },
  acts: { title: "Activations: std per hidden layer (dotted: dead share)", kind: "layer", stat: "act_std", extra: "dead" },
  ratio: { title: "Update ratio ‖Δw‖/‖w‖ per layer", kind: "layer", stat: "update_ratio", log: true },
  loss: { title: "Loss", kind: "time", stat: "loss" },
  clip: { title: "Global gradient norm (dotted: after clipping)", kind: "time", stat: "global_grad_norm", extra: "clipped_global_grad_norm", log: true },
};
// a lesson's `look` names a dashboard chart; these are the compare view's closest
const LOOK = { profile: "profile", heatmap: "heatmap", chain: "chain", hist: "profile", acts: "acts", ratio: "ratio", loss: "loss", clip: "clip", boundary: "loss" };

async function api(method, path, body, headers = {}) {
  const res = await fetch(path, { method, headers: { "Content-Type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  return { ok: res.ok, status: res.status, data };
}

/** One run of the pair: its series, socket and status. */
class Run {
  constructor(name, id, onChange) {
    const history = Object.values(CHARTS).filter((c) => c.kind === "time").flatMap((c) => [c.stat, c.extra].filter(Boolean));
    history.push("grad_norm");  // the heat map: every layer's gradient norm at every kept step
    // the diagnosis and the chain-rule factors read the latest step's norms (baseline: timediagnosis.js)
    const latest = [...Object.values(CHARTS).filter((c) => c.kind === "layer").flatMap((c) => [c.stat, c.extra].filter(Boolean)), ...READS, "baseline"];
    Object.assign(this, { name, id, onChange, series: new Series({ history, latest }, 600), status: "connecting", step: 0, config: null });
    this.token = localStorage.getItem(tokenKey(id));
  }

  async open() {
    const s = await api("GET", `/api/sessions/${this.id}`);
    if (!s.ok) throw new Error(`run ${this.name.toUpperCase()} (${this.id}): ${s.status}`);
    Object.assign(this, { config: s.data.config, status: s.data.status, step: s.data.step });
    const h = await api("GET", `/api/sessions/${this.id}/history?max_points=600`);
    if (h.ok && h.data && h.data.step && h.data.step.length) this.series.append(h.data);
    const proto = location.protocol === "https:" ? "wss" : "ws";
    // commands go over HTTP with the tokens; the socket only watches (the token, where the
    // socket module takes one, makes the hello say "owner")
    this.socket = new SessionSocket(`${proto}://${location.host}/api/sessions/${this.id}/ws`, this.token);
    this.socket.on("hello", (m) => { this.role = m.role; this.status = m.status; this.step = m.step; this.onChange(); });
    this.socket.on("stats", (m) => { this.series.append(m); this.step = m.step[m.step.length - 1] + 1; this.onChange(); });
    this.socket.on("status", (m) => { this.status = m.status; this.step = m.step; this.onChange(); });
    this.socket.connect();
  }
}

export class CompareView {
  /** @param {HTMLElement} root  @param {{a: string, b?: string, look?: string}} opts */
  constructor(root, opts) {
    this.root = root;
    this.look = opts.look ? LOOK[opts.look] : null;
    this.listeners = [];
    this.runs = [new Run("a", opts.a, () => this.changed())];
    if (opts.b) this.runs.push(new Run("b", opts.b, () => this.changed()));
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
        <div class="cmp-transport" role="group" aria-label="both runs">
          <button id="cmp-play" type="button" class="primary">▶ Play</button>
          <button id="cmp-step" type="button">Step</button>
        </div>
        <button id="cmp-link" type="button">Copy compare link</button>
      </div>
      <div class="cmp-grid"></div>`;
    const grid = this.root.querySelector(".cmp-grid");
    this.el = {};
    for (const [name, spec] of Object.entries(CHARTS)) {
      const card = document.createElement("article");
      card.className = "card cmp-card";
      card.dataset.chart = name;
      card.innerHTML = `<header><h2>${spec.title}</h2></header><div class="chart" id="cmp-${name}"></div>`;
      if (name === this.look) card.classList.add("highlight");
      grid.append(card);
      this.el[name] = card.querySelector(".chart");
    }
    this.buildPairs(grid);
    this.root.querySelector("#cmp-play").addEventListener("click", () => this.control(this.anyRunning() ? "pause" : "play"));
    this.root.querySelector("#cmp-step").addEventListener("click", () => this.control("step"));
    this.root.querySelector("#cmp-link").hidden = !paired;
    this.root.querySelector("#cmp-link").addEventListener("click", () => this.copyLink());
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
      <h3>${r.name.toUpperCase()}</h3><div class="${kind}" id="cmp-${kind === "chart" ? "heatmap" : "diagnosis"}-${r.name}"></div></div>`).join("");
    const heat = card("heatmap", "Layer × step: log10 ‖dL/dW‖ (one colour scale for both)", "cmp-wide", `<div class="cmp-panels">${panels("chart")}</div>`);
    card("chain", "Chain-rule factors per hidden layer (solid: slope, dashed: weight)", "", '<div class="chart" id="cmp-chain"></div>');
    this.el.heatmap = heat;  // the look's scroll target (start())
    this.el.chain = this.root.querySelector("#cmp-chain");
    this.chainRange = new StickyLogRange();  // log10 units; always spans the guides at 0.25 and 1
    const diag = card("diagnosis", "Diagnosis", "cmp-wide", `<div class="cmp-panels">${panels("diagnosis")}</div>`);
    this.heat = { range: new StickyRange(1, 0.7), maps: {}, shown: {} };  // shown: the range each map's colour bar has
    for (const r of this.runs) {
      this.heat.maps[r.name] = new ImageHeatmap(heat.querySelector(`#cmp-heatmap-${r.name}`), { scale: VIRIDIS, zmin: -6, zmax: 0,
        xtitle: "step", ytitle: "layer", colorbar: "log10", hovertemplate: "step %{x:.0f}<br>layer %{y}<br>log10 %{z:.2f}<extra></extra>" });
      this.el[`diagnosis-${r.name}`] = diag.querySelector(`#cmp-diagnosis-${r.name}`);
    }
  }

  async start() {
    await Promise.all(this.runs.map((r) => r.open()));
    this.renderStatus();
    if (this.look) this.el[this.look].closest(".card").scrollIntoView({ block: "center" });
    const loop = (now) => { if (this.dirty && now - (this.drawn || 0) > 150) this.draw(now); requestAnimationFrame(loop); };
    requestAnimationFrame(loop);
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
    const r = b
      ? await api("POST", `/api/compare/${a.id}/${b.id}/control`, { action }, { Authorization: `Bearer ${a.token}`, "X-Token-B": b.token })
      : await api("POST", `/api/sessions/${a.id}/control`, { action }, { Authorization: `Bearer ${a.token}` });
    // Two quick clicks are two requests whose answers may cross: only the newest one's state counts.
    if (seq !== this.controlSeq) return r;
    if (r.ok && b) for (const run of this.runs) Object.assign(run, r.data[run.name]);
    else if (r.ok) { a.step = r.data.step + (action === "step" ? 1 : 0); a.status = r.data.applied.status; }
    this.changed();
    return r;
  }

  renderStatus() {
    const box = this.root.querySelector(".cmp-runs");
    box.replaceChildren(...this.runs.map((r) => {
      const span = document.createElement("span");
      span.className = "cmp-run";
      span.dataset.run = r.name;
      span.style.borderColor = COLORS[r.name];
      const diff = r.name === "b" && r.config && this.runs[0].config ? describeDiff(this.runs[0].config, r.config) : "";
      span.textContent = `${r.name.toUpperCase()}${diff ? ` (${diff})` : ""}: ${r.status}, step ${r.step}`;
      return span;
    }));
    for (const b of this.root.querySelectorAll(".cmp-transport button")) b.disabled = !this.owner;
    this.root.querySelector("#cmp-play").textContent = this.anyRunning() ? "❚❚ Pause" : "▶ Play";
  }

  draw(now) {
    this.drawn = now;
    this.dirty = false;
    for (const [name, spec] of Object.entries(CHARTS)) {
      const traces = this.runs.flatMap((r) => (spec.kind === "layer" ? layerTraces(r, spec) : timeTraces(r, spec)));
      // the series grow in place: datarevision tells Plotly.react the data changed
      const layout = { datarevision: now, margin: { l: 50, r: 10, t: 8, b: 32 }, font: FONT, paper_bgcolor: "rgba(0,0,0,0)",
        showlegend: true, legend: { orientation: "h", y: 1.12 },
        xaxis: { title: { text: spec.kind === "layer" ? "layer" : "step" } }, yaxis: { type: spec.log ? "log" : "linear" } };
      Plotly.react(this.el[name], traces, layout, { displaylogo: false, displayModeBar: false, responsive: true });
    }
    this.drawHeatmaps();
    this.drawChain(now);
    this.drawDiagnoses();
  }

  /** Both heat maps on one colour range (sticky, whole decades), so equal colours mean equal norms. */
  drawHeatmaps() {
    const logs = (r) => r.series.h.grad_norm.map((g) => (g || []).map(log10));
    const all = this.runs.map(logs);
    const zr = this.heat.range.update(all.flat(2));
    this.runs.forEach((r, k) => {
      const map = this.heat.maps[r.name], rows = (r.series.latest && r.series.latest.grad_norm || []).length;
      if (!rows || !r.series.step.length) return;
      if (!map.y || map.y.length !== rows) map.reset(layers(rows));
      if (zr || this.heat.shown[r.name] !== this.heat.range.range) {
        this.heat.shown[r.name] = this.heat.range.range;
        [map.opts.zmin, map.opts.zmax] = this.heat.range.range;
        Plotly.restyle(map.el, { zmin: map.opts.zmin, zmax: map.opts.zmax }, [0]);
      }
      map.draw(r.series.step, (row, i) => (all[k][i][row] ?? null));
    });
  }

  /** Slope factor delta/h and weight factor h/u (charts/factors.js) of each run, guides at 1 and 0.25. */
  drawChain(now) {
    const traces = this.runs.flatMap((r) => {
      if (!r.series.latest) return [];
      const f = chainFactors(r.series.latest), x = layers(f.slope.length), tag = r.name.toUpperCase(), color = COLORS[r.name];
      return [{ x, y: f.slope, name: `${tag} slope`, mode: "lines+markers", line: { color } },
        { x, y: f.weight, name: `${tag} weight`, mode: "lines+markers", line: { color, dash: "dash" } }];
    });
    this.chainRange.update([...traces.flatMap((t) => t.y), 0.25, 1]);
    // the guides of charts/chain.js, in grey and vermilion here: orange is run B
    const guide = (y, color) => ({ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: y, y1: y, line: { color, width: 1.2, dash: "dot" } });
    const label = (y, text, color) => ({ xref: "paper", x: 1, yref: "y", y: Math.log10(y), text, showarrow: false,
      xanchor: "right", yanchor: "bottom", font: { size: 10, color } });
    Plotly.react(this.el.chain, traces, baseLayout({ datarevision: now, hovermode: "closest",
      shapes: [guide(1, OI.grey), guide(0.25, OI.vermilion)],
      annotations: [label(1, "1: passes unchanged", OI.grey), label(0.25, "0.25: sigmoid's ceiling", OI.vermilion)],
      xaxis: { title: { text: "hidden layer (input → output)", standoff: 4 } }, yaxis: { type: "log", exponentformat: "power", range: this.chainRange.range } }),
    { displaylogo: false, displayModeBar: false, responsive: true });
  }

  /** Each run's diagnosis (as the dashboard reads it); the fixes are for the run's own page. */
  drawDiagnoses() {
    for (const r of this.runs) {
      if (!r.config || !r.series.latest) continue;
      const mlp = (r.config.model || "mlp") === "mlp";
      const result = mlp ? diagnose(r.config, r.series.latest) : diagnoseTime(r.config, r.series.latest);
      renderDiagnosis(this.el[`diagnosis-${r.name}`], result, { canFix: false, onFix: () => {} });
    }
  }
}

function layerTraces(run, spec) {
  const latest = run.series.latest;
  if (!latest || !latest[spec.stat]) return [];
  const y = latest[spec.stat];
  const x = y.map((_, i) => i + 1);
  const tag = run.name.toUpperCase();
  const out = [{ x, y, name: `${tag} ${spec.stat}`, mode: "lines+markers", line: { color: COLORS[run.name] } }];
  if (spec.extra && latest[spec.extra]) {
    out.push({ x, y: latest[spec.extra], name: `${tag} ${spec.extra}`, mode: "lines", line: { color: COLORS[run.name], dash: "dot" } });
  }
  return out;
}

function timeTraces(run, spec) {
  const s = run.series;
  const tag = run.name.toUpperCase();
  const out = [{ x: s.step, y: s.h[spec.stat], name: `${tag} ${spec.stat}`, mode: "lines", line: { color: COLORS[run.name] } }];
  if (spec.extra) out.push({ x: s.step, y: s.h[spec.extra], name: `${tag} clipped`, mode: "lines", line: { color: COLORS[run.name], dash: "dot" } });
  return out;
}

/** "activation tanh, init he_normal": what B's config changes from A's. */
export function describeDiff(a, b) {
  return Object.keys(b).filter((k) => a[k] !== b[k]).map((k) => `${k} ${b[k]}`).join(", ");
}

/** Compare button on a session page: run B from this session's very state with `changes`. */
export async function startCompare(app, changes) {
  const headers = app.token ? { Authorization: `Bearer ${app.token}` } : {};
  const r = await api("POST", `/api/sessions/${app.id}/compare`, { changes, paused: true }, headers);
  if (r.ok) localStorage.setItem(tokenKey(r.data.b.id), r.data.token);
  return r;
}

/** "learning_rate=0.5, activation=relu" -> {learning_rate: 0.5, activation: "relu"} */
export function parseChanges(text) {
  const out = {};
  for (const part of text.split(/[,\n]/).map((s) => s.trim()).filter(Boolean)) {
    const [k, ...rest] = part.split("=");
    const v = rest.join("=").trim();
    out[k.trim()] = v === "true" ? true : v === "false" ? false : v !== "" && !Number.isNaN(Number(v)) ? Number(v) : v;
  }
  return out;
}
