// Each run's live knobs on the compare page: activation, learning rate, clipping, and those its family names. A lecturer
// changes B's rate without leaving the comparison; the change is a marker on B's charts as on
// its own page. Enabled where this browser owns the run (its token); a viewer sees the values.
import { activationsOf, compareKnobs, keysOf } from "./models.js";
import { errorText } from "./net.js";
import { compileKeys } from "./compiling.js";

// [config key, label, widget]; the choices come from /api/meta, as the control panel's do
const KNOBS = [
  ["activation", "activation", "select"],
  ["learning_rate", "learning rate", "number"],
  ["clip_mode", "clipping", "select"],
  ["clip_value", "at", "number"],
];

/** The knobs: the common ones, then those the families name (views.compare_knobs, a menu where meta lists choices). */
const knobsOf = (meta) => [...KNOBS, ...compareKnobs(meta).filter((k) => !KNOBS.some(([key]) => key === k))
  .map((k) => [k, k.replace(/_/g, " "), k in (meta.choices || {}) ? "select" : "number"])];

export class RunKnobs {
  /**
   * @param {HTMLElement} root  the run's knob row
   * @param {import("./comparerun.js").Run} run
   * @param {object} meta  /api/meta: activations_by_model (models.js), clip_modes
   */
  constructor(root, run, meta) {
    Object.assign(this, { root, run, meta, inputs: {}, model: null });
    root.replaceChildren();
    this.knobs = knobsOf(meta);
    for (const [key, label, kind] of this.knobs) {
      const input = document.createElement(kind === "select" ? "select" : "input");
      if (kind === "number") Object.assign(input, { type: "number", min: "0", step: "any" });
      input.id = `cmp-knob-${run.name}-${key}`;
      input.addEventListener("change", () => this.change(key, kind === "number" ? Number(input.value) : input.value));
      const wrap = document.createElement("label");
      wrap.className = "cmp-knob";
      wrap.dataset.key = key;
      wrap.append(`${label} `, input);
      root.append(wrap);
      this.inputs[key] = input;
    }
    this.error = document.createElement("span");
    this.error.className = "cmp-knob-error";
    root.append(this.error);
  }

  /** The activations the run's model takes (models.js: none for a gated cell), or the clip modes. */
  choices(key) {
    if (key === "clip_mode") return this.meta.clip_modes || [];
    if (key === "activation") return activationsOf(this.meta, this.run.model);
    return (this.meta.choices || {})[key] || [];
  }

  /** Whether the run's model takes `key` (meta.keys_by_model; every key where meta does not say). */
  takes(key) {
    const keys = keysOf(this.meta, this.run.model);
    return !Array.isArray(keys) || keys.includes(key);
  }

  /** Show the run's config (a knob being edited is left alone) and who may change it. */
  sync() {
    const c = this.run.config;
    if (!c) return;
    if (this.model !== this.run.model) {
      this.model = this.run.model;
      for (const [key, , kind] of this.knobs) {
        if (kind === "select") this.inputs[key].replaceChildren(...this.choices(key).map((v) => new Option(v, v)));
        this.inputs[key].parentElement.hidden = !this.takes(key) || (kind === "select" && !this.choices(key).length);
      }
    }
    for (const [key, input] of Object.entries(this.inputs)) {
      if (!(key in c)) continue;
      if (document.activeElement !== input && input.value !== String(c[key])) input.value = String(c[key]);
      input.disabled = !this.run.token || (key === "clip_value" && c.clip_mode === "none");
    }
    this.root.title = this.run.token ? "" : "You watch this run: its owner changes it (or fork it on its own page)";
  }

  async change(key, value) {
    // a change that may compile says so at once (the answer comes when the compile is done)
    if (compileKeys(this.meta).has(key)) this.error.textContent = `applying ${key} ${value}…`;
    this.error.classList.toggle("busy-note", compileKeys(this.meta).has(key));
    const r = await this.run.set({ [key]: value });
    this.error.classList.remove("busy-note");
    this.error.textContent = r.ok ? "" : errorText(r);
    if (!r.ok) this.inputs[key].value = String(this.run.config[key]);  // back to what the run has
    this.sync();
  }
}
