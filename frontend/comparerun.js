// One run of a compare pair: its config, the statistics the compare view reads, a socket that
// watches it, and this browser's owner token for it (if any). No Plotly here.
import { SessionSocket } from "./socket.js";
import { Series } from "./series.js";
import { persistent } from "./net.js";
import { api, storeToken, storedToken } from "./api.js";
import { axisOf, viewsOf } from "./models.js";

/** {key: [old, new]} or {key: new} -> {key: new} */
const newValues = (changes) => Object.fromEntries(Object.entries(changes || {}).map(([k, v]) => [k, Array.isArray(v) ? v[1] : v]));

export class Run {
  /**
   * @param {"a"|"b"} name
   * @param {string} id  the session id
   * @param {{history: string[], latest: string[]}} reads  what the Series keeps (series.js)
   * @param {() => void} onChange  called when the status, step or config changed, or stats arrived
   */
  constructor(name, id, reads, onChange) {
    Object.assign(this, { name, id, onChange, series: new Series(reads, 600), status: "connecting", step: 0, config: null });
    this.token = storedToken(id);
    this.reshaped = true;  // the view re-checks which cards apply and redraws its maps afresh
  }

  get model() { return this.config && this.config.model; }
  /** The axis the run's charts run along, "layer" or "time" (`meta`: /api/meta, set by the compare view once loaded). */
  get axis() { return axisOf(this.meta || {}, this.model); }
  /** The views its model's family asks for (models.js viewsOf). */
  get views() { return viewsOf(this.meta || {}, this.model); }
  /** The run's own session page: its owner controls it there (the page reads the same stored token). */
  get href() { return `/s/${encodeURIComponent(this.id)}`; }

  /** Join the run: its summary, history and socket. False (and `missing`) when the server does not know it. */
  async open() {
    const s = await persistent("GET", `/api/sessions/${encodeURIComponent(this.id)}`);
    if (s.status === 404) { this.missing = true; this.status = "not found"; return false; }
    if (!s.ok) throw new Error(`run ${this.name.toUpperCase()} (${this.id}): HTTP ${s.status}`);
    Object.assign(this, { config: s.data.config, status: s.data.status, step: s.data.step });
    const h = await api("GET", `/api/sessions/${this.id}/history?max_points=600`);
    if (h.ok && h.data && h.data.step && h.data.step.length) this.series.append(h.data);
    const proto = location.protocol === "https:" ? "wss" : "ws";
    // commands go over HTTP with the tokens; the socket only watches (the token, where the
    // socket module takes one, makes the hello say "owner")
    this.socket = new SessionSocket(`${proto}://${location.host}/api/sessions/${this.id}/ws`, this.token);
    this.socket.on("hello", (m) => {
      if (m.config) this.setConfig(m.config, false);
      if ("compiling" in m) this.compiling = m.compiling;
      Object.assign(this, { role: m.role, status: m.status, step: m.step });
      this.onChange();
    });
    this.socket.on("stats", (m) => { this.series.append(m); this.step = m.step[m.step.length - 1] + 1; this.onChange(); });
    this.socket.on("status", (m) => { this.status = m.status; this.step = m.step; this.onChange(); });
    // {what, since} while the server compiles for this run (compiling.js on the session page)
    this.socket.on("compile", (m) => { this.compiling = m.state === "end" ? null : m; this.onChange(); });
    // a change made on the run's own page: live ones update the config shown, a reset (model,
    // sequence length, ...) starts its series over
    this.socket.on("event", (m) => {
      const ev = m.event || {};
      if (ev.kind === "reset") this.series.clear();
      // a rewind restores its checkpoint's config, then applies again the live knobs set since (`reapplied`)
      if (ev.kind === "change" || ev.kind === "reset" || ev.kind === "rewind") {
        this.setConfig({ ...this.config, ...(ev.config || {}), ...newValues(ev.changes), ...newValues(ev.reapplied) }, ev.kind === "reset");
      }
      this.onChange();
    });
    this.socket.connect();
    return true;
  }

  setConfig(config, reshaped) {
    const prev = this.config || {};
    this.config = config;
    if (reshaped || ["model", "dataset", "depth", "seq_len"].some((k) => prev[k] !== config[k])) this.reshaped = true;
  }

  /** Live changes from the compare page (owner only): {ok, status, data} of POST /config. */
  async set(changes) {
    const r = await api("POST", `/api/sessions/${this.id}/config`, { changes }, { token: this.token });
    if (r.ok && r.data && r.data.applied) this.setConfig({ ...this.config, ...newValues(r.data.applied.changes) }, r.data.applied.kind === "reset");
    this.onChange();
    return r;
  }
}

/** Compare button on a session page: run B from this session's very state with `changes`. */
export async function startCompare(app, changes) {
  const r = await api("POST", `/api/sessions/${app.id}/compare`, { changes, paused: true }, { token: app.token });
  if (r.ok) storeToken(r.data.b.id, r.data.token);
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
