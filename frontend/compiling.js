// What keeps the steps from coming: a compile (the first use of an activation, an optimizer, a
// model or a shape takes XLA seconds). Shown in the frame of the click that may cause it
// ("applying activation…"), then as the server reports it ("compiling activation relu… 3 s"),
// until the command's ack or the compile's end. No Plotly; one element of the top bar.

const TICK_MS = 250;

/** The config keys whose change may compile: meta.compile_keys where the server lists them, else
 * every restart key and the live keys that pick code rather than a number (activation, optimizer). */
export function compileKeys(meta) {
  if (Array.isArray(meta.compile_keys)) return new Set(meta.compile_keys);
  return new Set([...(meta.reset_keys || []), "activation", "optimizer"]);
}

/** Seconds since `since` (server unix seconds), or since `local` (ms) when the clocks disagree. */
function elapsed(since, local) {
  const s = Date.now() / 1000 - since;
  return typeof since === "number" && s >= 0 && s < 3600 ? s : (Date.now() - local) / 1000;
}

export class CompileIndicator {
  /**
   * @param {HTMLElement} el  the chip; hidden while nothing is pending
   * @param {() => void} onChange  called when it starts or stops being busy (the status pill follows)
   */
  constructor(el, onChange = () => {}) {
    Object.assign(this, { el, onChange, pending: new Map(), server: null, timer: 0, next: 1, first: false });
    this.info = { shown: [] };  // every text shown, for the browser tests
  }

  /** "queued" while the session waits for a place on a cluster, "compiling" while the server reports a
   * compile, "applying" while a click waits for its answer, else null. */
  get busy() {
    if (this.server) return this.server.queue ? "queued" : "compiling";
    return this.pending.size ? "applying" : null;
  }

  /** A click that may compile: shows "applying `what`…" at once; returns the token to answer with. */
  applying(what) {
    const token = this.next++;
    this.pending.set(token, { what, at: Date.now() });
    this.update(true);
    return token;
  }

  /** The click's ack (or error) came: its "applying" ends; a compile the server reported goes on. */
  answered(token) {
    if (this.pending.delete(token)) this.update(true);
  }

  /**
   * A `compile` message ({state: "start"|"end", what, since, seconds, queue?}) or hello's / a summary's
   * `compiling` ({what, since, queue?} | null). `queue`: the session's place in a cluster's queue
   * (`gradscope serve --ray`), `what` then names the wait ("a place on the cluster (2 sessions ahead)").
   */
  compile(msg) {
    const start = msg && (msg.state === undefined || msg.state === "start");
    this.server = start ? { what: msg.what || "", since: msg.since, at: Date.now(), queue: msg.queue || 0 } : null;
    if (!start) this.pending.clear();  // what was waiting for the compile has its answer
    this.update(true);
  }

  /** Whether the charts show a new run's first look (step 0 before training) while its step compiles. */
  preview(shown) {
    this.first = Boolean(shown);
    this.update(true);
  }

  text() {
    if (this.server) {
      const s = Math.floor(elapsed(this.server.since, this.server.at));
      const text = `${this.server.queue ? "waiting for" : "compiling"} ${this.server.what}… ${s} s`.replace(" … ", "… ");
      return this.first ? `step 0 shown, before training; ${text}` : text;
    }
    const first = this.pending.values().next().value;
    if (!first) return "";
    const s = Math.floor((Date.now() - first.at) / 1000);
    return `applying ${first.what}…${s >= 1 ? ` ${s} s` : ""}`;
  }

  update(changed = false) {
    const busy = this.busy, text = this.text();
    this.el.hidden = !busy;
    this.el.dataset.state = busy || "";
    if (this.el.textContent !== text) {
      this.el.textContent = text;
      if (text && this.info.shown.at(-1) !== text.replace(/ \d+ s$/, "")) this.info.shown.push(text.replace(/ \d+ s$/, ""));
    }
    if (busy && !this.timer) this.timer = setInterval(() => this.update(), TICK_MS);
    if (!busy && this.timer) { clearInterval(this.timer); this.timer = 0; }
    if (changed) this.onChange(busy);
  }
}
