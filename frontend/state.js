// The run's configuration as one flat object and its URL form. The keys, their defaults, which
// are live and the valid names all come from the server's `/api/meta` (one name everywhere):
// nothing here is a copy of the backend's tables. A link's parameters go to the server as the
// text they are (pageparams.js): it parses them and names every one it refuses.

import { pageModelsOf } from "./models.js";

// Which list of names in meta holds each named-choice key's valid values.
const CHOICE_LISTS = { dataset: "datasets", init: "initializers", activation: "activations",
                       clip_mode: "clip_modes", optimizer: "optimizers", model: "models" };

export class Schema {
  /** @param {object} meta  `/api/meta`: defaults, live_keys, limits and the name lists */
  constructor(meta) {
    this.meta = meta;
    this.keys = Object.keys(meta.defaults || {});
    this.live = new Set(meta.live_keys || []);
    this.choices = Object.fromEntries(Object.entries(CHOICE_LISTS)
      .filter(([k, list]) => this.keys.includes(k) && Array.isArray(meta[list])).map(([k, list]) => [k, meta[list]]));
    for (const [k, names] of Object.entries(meta.choices || {})) if (!(k in this.choices)) this.choices[k] = names;  // a family's own menus
    if (this.choices.model) this.choices.model = pageModelsOf(meta);  // the Model menu: the models the page has views for
  }

  has(key) {
    return this.keys.includes(key);
  }

  defaults() {
    return { ...this.meta.defaults };
  }

  isLive(key) {
    return this.live.has(key);
  }

  /** "choice" | "bool" | "number", from the key's choices or its default. */
  type(key) {
    if (key in this.choices) return "choice";
    return typeof this.meta.defaults[key] === "boolean" ? "bool" : "number";
  }

  /** [min, max] of a size key from meta.limits, or null. */
  limits(key) {
    const l = (this.meta.limits || {})[key];
    return Array.isArray(l) ? l : null;
  }

  /** Query string (with `?`) that reproduces `config`: every key that differs from the default, and the seed. */
  toQuery(config) {
    const base = this.meta.defaults, params = new URLSearchParams();
    for (const key of this.keys) {
      if (!(key in config)) continue;
      if (key === "seed" || config[key] !== base[key]) params.set(key, String(config[key]));
    }
    const text = params.toString();
    return text ? `?${text}` : "";
  }
}

/** Format a value for people: compact numbers, names as they are. */
export function formatValue(value) {
  if (typeof value === "number" && !Number.isInteger(value)) {
    return Math.abs(value) < 1e-3 || Math.abs(value) >= 1e4 ? value.toExponential(1) : String(+value.toPrecision(3));
  }
  return String(value);
}
