// Bounded, downsampled buffers of the run's statistics, as the charts need them. No DOM, no Plotly.

/**
 * Keeps at most `cap` steps of the whole run: every `stride`-th step is kept and, when the
 * buffer fills, every other kept step is dropped and the stride doubles. The whole run stays
 * on one screen at bounded cost, whatever its length.
 *
 * `history` names the statistics kept per kept step (any shape: a number, a per-layer array,
 * per-layer histograms) in `h[name]`; `latest` those kept for the last step only, in `latest`
 * (with every history key).
 */
export class Series {
  constructor({ history = [], latest = [] } = {}, cap = 800) {
    this.keys = [...new Set(history)];
    this.latestKeys = [...new Set([...history, ...latest])];
    this.cap = cap;
    this.clear();
  }

  clear() {
    this.step = [];
    this.h = Object.fromEntries(this.keys.map((k) => [k, []]));
    this.stride = 1;
    this.count = 0;
    this.latest = null;
    this.provisional = false;  // true while it holds a new run's first look (Dashboard.preview), not trained rows
    this.version = (this.version || 0) + 1;
  }

  get lastStep() {
    return this.step.length ? this.step[this.step.length - 1] : -1;
  }

  /** Drop every kept step >= `step` (a rewind or a replay moved the counter back). */
  truncate(step) {
    let n = this.step.length;
    while (n > 0 && this.step[n - 1] >= step) n--;
    if (n === this.step.length) return;
    this.step.length = n;
    for (const a of Object.values(this.h)) a.length = n;
    this.version++;
  }

  /** Append a columnar block (a `stats` message or a history response); returns its step count. */
  append(block) {
    const steps = block.step || [];
    if (!steps.length) return 0;
    if (steps[0] <= this.lastStep) this.truncate(steps[0]);
    for (let i = 0; i < steps.length; i++) {
      if (this.count++ % this.stride !== 0) continue;
      this.step.push(steps[i]);
      for (const k of this.keys) this.h[k].push(block[k] ? block[k][i] ?? null : null);
      if (this.step.length > this.cap) this.halve();
    }
    const last = steps.length - 1, latest = { step: steps[last] };
    for (const k of this.latestKeys) if (block[k]) latest[k] = block[k][last];
    this.latest = latest;
    this.version++;
    return steps.length;
  }

  halve() {
    const keep = (a) => a.filter((_, i) => i % 2 === 0);
    this.step = keep(this.step);
    for (const k of this.keys) this.h[k] = keep(this.h[k]);
    this.stride *= 2;
  }
}

/** Convert whatever shape the history endpoint returns into one columnar block. */
export function toColumnar(data) {
  if (!data) return { step: [] };
  if (Array.isArray(data.step)) return data;
  for (const key of ["stats", "history", "columns", "data"]) {
    if (data[key] && typeof data[key] === "object") return toColumnar(data[key]);
  }
  const records = Array.isArray(data) ? data : data.records;
  if (!Array.isArray(records)) return { step: [] };
  const out = {};
  for (const rec of records) {
    for (const [k, v] of Object.entries(rec)) (out[k] ||= []).push(v);
  }
  out.step ||= [];
  return out;
}
