// One run of a compare pair: its config, the statistics the compare view reads, a socket that
// watches it, and this browser's owner token for it (if any). No Plotly here.
import { SessionSocket } from "./socket.js";
import { Series } from "./series.js";

export const RECURRENT = ["rnn", "lstm", "gru"];
export const tokenKey = (id) => `gradscope.token.${id}`;

/** fetch with JSON in and out: {ok, status, data}; `token` goes in the Authorization header. */
export async function api(method, path, body, headers = {}) {
  const res = await fetch(path, { method, headers: { "Content-Type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  return { ok: res.ok, status: res.status, data };
}

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
    this.token = localStorage.getItem(tokenKey(id));
    this.reshaped = true;  // the view re-checks which cards apply and redraws its maps afresh
  }

  get model() { return (this.config && this.config.model) || "mlp"; }
  get recurrent() { return RECURRENT.includes(this.model); }
  /** The run's own session page: its owner controls it there (the page reads the same stored token). */
  get href() { return `/s/${encodeURIComponent(this.id)}`; }

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
    this.socket.on("hello", (m) => {
      if (m.config) this.setConfig(m.config, false);
      Object.assign(this, { role: m.role, status: m.status, step: m.step });
      this.onChange();
    });
    this.socket.on("stats", (m) => { this.series.append(m); this.step = m.step[m.step.length - 1] + 1; this.onChange(); });
    this.socket.on("status", (m) => { this.status = m.status; this.step = m.step; this.onChange(); });
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
  }

  setConfig(config, reshaped) {
    const prev = this.config || {};
    this.config = config;
    if (reshaped || ["model", "dataset", "depth", "seq_len"].some((k) => prev[k] !== config[k])) this.reshaped = true;
  }

  /** Live changes from the compare page (owner only): {ok, status, data} of POST /config. */
  async set(changes) {
    const r = await api("POST", `/api/sessions/${this.id}/config`, { changes }, { Authorization: `Bearer ${this.token}` });
    if (r.ok && r.data && r.data.applied) this.setConfig({ ...this.config, ...newValues(r.data.applied.changes) }, r.data.applied.kind === "reset");
    this.onChange();
    return r;
  }
}
