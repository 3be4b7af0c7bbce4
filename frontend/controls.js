// The control panel: one widget per config key, each with a short account of what it does to gradients.
import { formatValue } from "./state.js";
import { activationsOf, appliesOf, axisOf, datasetsOf, depthRange, exposedKeys, hidesRefused, initializersOf, isGated, controlSections, keysOf, menuModelsOf,
  modelName, namesWhere, networksOf, notExposedReason, refusableKeys, listNames, refusedKeys, siblingsOf } from "./models.js";

const log = (min, max) => ({ kind: "log", min, max });
const lin = (min, max, step) => ({ kind: "range", min, max, step });
// Whole numbers; the bounds of the size keys are replaced by meta.limits where it has them.
const num = (min, max) => ({ kind: "number", min, max });

/**
 * The Model control's explanation, from /api/meta: the models, grouped as their families are, and
 * what depth counts in each (along the layers, or stacked layers run through time) with its range.
 */
function modelHelp(meta) {
  const groups = new Map();  // one entry per family: its models' names, its axis and depth range
  for (const m of menuModelsOf(meta)) {
    const key = siblingsOf(meta, m).join();
    if (!groups.has(key)) groups.set(key, { names: [], axis: axisOf(meta, m), range: depthRange(meta, m), nets: Object.values(networksOf(meta, m)) });
    groups.get(key).names.push(modelName(meta, m));
  }
  const parts = [...groups.values()].map(({ names, axis, range, nets }) => {
    const span = range ? ` (${range[0]}-${range[1]})` : "";
    if (nets.length > 1) return `the ${listNames(names)}: a ${listNames(nets)}, each with its own depth${span}, learning rate and activation`;
    return axis === "time"
      ? `the ${listNames(names)}, trained by backpropagation through time on a sequence task, where depth counts stacked layers${span}`
      : `the ${listNames(names)}, where depth counts hidden layers${span}`;
  });
  return `The network: ${parts.join("; or ")}. Restarts training.`;
}

/** [section, [key, label, widget, explanation]] in display order; keys the server does not know are left out. */
export const PANEL = [
  ["Activation & initialization", [
    ["activation", "Activation", { kind: "select" },
      "Backprop multiplies the gradient by the activation's slope at every layer. Sigmoid's slope is at most 0.25, so the signal shrinks layer after layer; ReLU passes it through unchanged wherever a unit is on."],
    ["leaky_alpha", "Leaky slope", lin(0, 1, 0.01),
      "Slope of leaky ReLU below zero. A small non-zero slope keeps some gradient flowing through units that plain ReLU would leave dead."],
    ["init", "Initializer", { kind: "select" },
      "How the first weights are drawn. Each layer scales the gradient by about sqrt(width·Var(W)·E[φ′²]): Glorot and LeCun keep that near 1 for tanh-like units, He does it for ReLU, a standard normal makes it explode."],
    ["init_gain", "Init gain", log(0.1, 10),
      "Multiplies the starting weights' spread. Above 1 every layer amplifies the gradient, below 1 it damps it, and depth compounds either way."],
  ]],
  ["Architecture", [
    ["batchnorm", "BatchNorm", { kind: "bool" },
      "Re-centres and re-scales each layer's pre-activations over the batch, so they stay where the activation has slope and the per-layer gain stays near 1 whatever the weights' scale."],
    ["residual", "Residual connections", { kind: "bool" },
      "Each layer adds its input to its output. The identity path carries the gradient past the multiplications, so it cannot vanish with depth."],
    ["dropout", "Dropout", lin(0, 0.9, 0.05),
      "Zeroes this fraction of hidden units on every training step and scales the rest up to match. The gradient flows only through the units kept, so each layer's slope factor gets noisier; evaluation on held-out data runs without it."],
    ["skip_init", "SkipInit", { kind: "bool" },
      "A zero-initialized gain on each residual branch, for the convolutional models: a deep residual net without BatchNorm then starts as the identity, its forward variance flat instead of doubling per block (SkipInit, De & Smith 2020). Restarts training."],
    ["stages", "Stages", num(1, 3),
      "Stride-2 stages of the convolutional models: each halves the image's resolution and doubles the channels, where a 1x1 projection carries the residual path. Restarts training."],
    ["depth", "Depth", num(1, 256),
      "Hidden layers. The gradient is multiplied once per layer, so any factor away from 1 grows or shrinks exponentially with depth. Restarts training."],
    ["width", "Width", num(2, 1024),
      "Units per hidden layer: the fan-in the initializers scale by. Wider layers make the per-layer factor more predictable. Restarts training."],
  ]],
  ["Optimization", [
    ["optimizer", "Optimizer", { kind: "select" },
      "How gradients become steps. SGD uses them as they are; momentum averages them; Adam and RMSprop divide by their running size, which hides a vanishing gradient's scale but not its noise. Its state restarts."],
    ["learning_rate", "Learning rate", log(1e-5, 10),
      "Step size. An update ratio |Δw|/|w| near 1e-3 is healthy; far above it the loss jumps or diverges, far below it nothing learns."],
    ["clip_mode", "Clipping", { kind: "select" },
      "Caps the gradient before the step: per entry (value), by rescaling the whole gradient when its norm is too large (norm), or unit by unit where a gradient is large against its weights (agc, adaptive gradient clipping, threshold relative to the weight norm). It tames exploding gradients; it cannot revive vanishing ones."],
    ["clip_value", "Clip threshold", log(1e-3, 1e3),
      "The cap. Only gradients above it are touched; the dashed line on the clipping chart."],
    ["l1", "L1", log(1e-7, 1, true),
      "Penalty on |w|: adds a constant-size pull toward zero to every weight's gradient, making weights sparse."],
    ["l2", "L2", log(1e-7, 1, true),
      "Penalty on w² (weight decay): shrinks weights every step, which keeps activations and gradients from growing."],
    ["batch_size", "Batch size", num(1, 4096),
      "Examples per step. Larger batches give less noisy gradients, and BatchNorm needs more than a handful. Restarts training."],
  ]],
  ["Model", [
    ["model", "Model", { kind: "select" }, modelHelp],
    ["seq_len", "Sequence length", num(2, 1000),
      "Time steps per sequence, for the models that run through time. The gradient reaching step 1 from step T is multiplied once per step in between, so length compounds a factor the way depth does. Restarts training."],
    ["forget_bias", "Forget bias", lin(-5, 5, 0.1),
      "The forget gate's starting bias, for a cell that has one. At 1 the cell keeps about 73% of its state per step, so gradients survive long delays; at 0 only half. Restarts training."],
  ]],
  ["Data", [
    ["dataset", "Dataset", { kind: "select" },
      "The problem. Spirals need depth to untangle; the 2-D sets also show the decision boundary. Restarts training."],
    ["noise", "Noise", lin(0, 2, 0.01),
      "Scatter added to the data: a floor under the loss and noisier gradients. Restarts training."],
    ["input_dim", "Input dim", num(2, 64),
      "Input dimension of the gaussian dataset (the others are fixed). Restarts training."],
    ["seed", "Seed", num(0, 2 ** 31 - 1),
      "Seed of the weights and data. With the timeline of changes it replays the run step for step. Restarts training."],
  ]],
];
for (const [, rows] of PANEL) for (const row of rows) if (row[2].kind === "log") row[2].zero = ["l1", "l2"].includes(row[0]);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

export class Controls {
  /**
   * @param {HTMLElement} root
   * @param {import("./state.js").Schema} schema  the config keys the server knows
   * @param {(changes: object) => void} onChange  called with {key: value} when the user changes one
   */
  constructor(root, schema, onChange) {
    this.root = root;
    this.schema = schema;
    this.onChange = onChange;
    this.widgets = new Map();
    this.config = {};
    this.enabled = true;
    this.why = new Map();  // key -> why it does not apply to the current model (the input stays disabled)
    this.hidden = new Set();  // keys of a section the current model takes none of, or that it refuses and hides (hidden, disabled)
    this.unexposed = new Set();  // keys the model takes that its run does not expose (models.js exposedKeys; greyed with the reason)
    this.build();
  }

  /** The page's sections, then the families' own (views.controls), in display order. */
  panel() {
    const own = controlSections(this.schema.meta || {}).map((c) => [c.title, c.rows]);
    return [...PANEL.slice(0, -1), ...own, PANEL[PANEL.length - 1]];  // the families' before Data (the seed) at the end
  }

  build() {
    this.sections = [];  // [section, its keys]
    for (const [title, rows] of this.panel()) {
      const section = el("section", { class: "ctl-section" }, el("h3", {}, title));
      this.sections.push([section, rows.map(([key]) => key).filter((k) => this.schema.has(k))]);
      for (const [key, label, spec, help] of rows) {
        if (!this.schema.has(key)) continue;
        const limits = spec.kind === "number" && this.schema.limits(key);
        const text = typeof help === "function" ? help(this.schema.meta || {}) : help;
        section.append(this.row(key, label, limits ? { ...spec, min: limits[0], max: limits[1] } : spec, text));
      }
      this.root.append(section);
    }
  }

  row(key, label, spec, help) {
    const id = `ctl-${key}`;
    const value = el("output", { class: "ctl-value", for: id });
    let input;
    if (spec.kind === "select") {
      input = el("select", { id, name: key });
      for (const c of this.choices(key)) input.append(el("option", { value: c }, c));
    } else if (spec.kind === "bool") {
      input = el("input", { id, name: key, type: "checkbox", role: "switch" });
    } else if (spec.kind === "number") {
      input = el("input", { id, name: key, type: "number", min: String(spec.min), max: String(spec.max), step: "1" });
    } else {
      const [min, max, step] = spec.kind === "log" ? [Math.log10(spec.min) - (spec.zero ? 0.5 : 0), Math.log10(spec.max), 0.05] : [spec.min, spec.max, spec.step];
      input = el("input", { id, name: key, type: "range", min: String(min), max: String(max), step: String(step) });
      input.addEventListener("input", () => { value.textContent = formatValue(this.read(key, spec, input)); });
    }
    input.addEventListener("change", () => {
      const v = this.read(key, spec, input);
      if (v === undefined || v === this.config[key]) return;
      value.textContent = formatValue(v);
      this.onChange(key === "model" ? { ...this.fitModel(v), model: v } : { [key]: v });
    });
    const live = this.schema.isLive(key);
    const tag = el("span", { class: live ? "tag live" : "tag reset", title: live ? "applies while training" : "restarts the run" }, live ? "live" : "restart");
    const why = el("p", { class: "ctl-why", hidden: true });
    const row = el("div", { class: `ctl ctl-${spec.kind}`, "data-key": key },
      el("div", { class: "ctl-head" }, el("label", { for: id }, label), tag, value),
      input, why, el("p", { class: "ctl-help" }, help));
    this.widgets.set(key, { input, value, spec, label, row, why });
    return row;
  }

  /** A menu's names: the schema's; the Model menu's, the models it offers (models.js menuModelsOf). */
  choices(key) {
    return key === "model" ? menuModelsOf(this.schema.meta || {}) : this.schema.choices[key];
  }

  read(key, spec, input) {
    if (spec.kind === "select") return input.value;
    if (spec.kind === "bool") return input.checked;
    const x = Number(input.value);
    if (!Number.isFinite(x)) return undefined;
    if (spec.kind === "number") return Math.round(Math.min(spec.max, Math.max(spec.min, x)));
    if (spec.kind === "log") {
      if (spec.zero && x < Math.log10(spec.min)) return 0;
      return +(10 ** x).toPrecision(2);
    }
    return x;
  }

  /** Show `config` in the widgets without reporting it as a change. */
  setConfig(config) {
    this.config = { ...config };
    this.applyModel(config.model);  // first: a menu's options must exist before its value is set
    for (const [key, { input, value, spec }] of this.widgets) {
      const v = config[key];
      if (v === undefined) continue;
      if (spec.kind === "bool") input.checked = Boolean(v);
      else if (spec.kind === "log") input.value = String(v > 0 ? Math.log10(v) : Number(input.min));
      else input.value = String(v);
      value.textContent = spec.kind === "bool" ? (v ? "on" : "off") : formatValue(v);
    }
    this.applyRules(config);
    // muted while the key they depend on turns them off, where the model takes that key
    const refused = refusedKeys(this.schema.meta, config.model);
    this.mute("leaky_alpha", config.activation !== "leaky_relu" && !("activation" in refused));
    this.mute("clip_value", config.clip_mode === "none" && !("clip_mode" in refused));
    this.mute("input_dim", config.dataset !== "gaussian" && !("dataset" in refused));
  }

  /** The choices of the menus that depend on the model, as meta lists them, and the keys that do not apply greyed out with the reason. */
  applyModel(model) {
    const meta = this.schema.meta;
    for (const [key, names] of Object.entries(this.menus(model))) this.offer(key, names || this.schema.choices[key]);
    // the Model menu offers menuModelsOf's models; a session of another (made elsewhere) shows its own, greyed
    const offered = this.choices("model");
    if (Array.isArray(offered) && this.widgets.has("model")) {
      this.offer("model", offered.includes(model) || !model ? offered : [...offered, model], [model].filter((m) => !offered.includes(m)));
    }
    const refused = refusedKeys(meta, model), name = modelName(meta, model), hide = hidesRefused(meta, model);
    // a section none of whose keys the model takes (another family's own) is hidden, its keys disabled without a note;
    // a model that hides what it refuses (models.js hidesRefused) hides each such key's row too
    this.hidden = new Set();
    for (const [section, keys] of this.sections) {
      section.hidden = keys.length > 0 && keys.every((k) => k in refused);
      for (const k of keys) if (k in refused && (section.hidden || hide)) this.hidden.add(k);
    }
    for (const [key, w] of this.widgets) w.row.hidden = this.hidden.has(key);
    const menu = menuModelsOf(meta);
    for (const key of refusableKeys(meta)) {
      if (this.hidden.has(key)) { this.inapplicable(key, false); continue; }
      const label = this.widgets.has(key) && this.widgets.get(key).label;
      const takers = listNames(menu.filter((m) => !(key in refusedKeys(meta, m))).map((m) => modelName(meta, m)));
      const these = listNames(siblingsOf(meta, model).map((m) => modelName(meta, m)));
      this.inapplicable(key, key in refused && `${label} applies to the ${takers} only; the server refuses it for the ${these}.`);
    }
    // a run whose family lists the keys a page may change (models.js exposedKeys): the others it takes are greyed
    const exposed = exposedKeys(meta, { ...this.config, model });
    for (const key of this.unexposed) if (!(key in refused)) this.inapplicable(key, false);  // the previous model's
    this.unexposed = new Set();
    if (exposed) {
      const knobs = listNames(exposed.map((k) => (this.widgets.has(k) ? this.widgets.get(k).label : k)));
      for (const [key, w] of this.widgets) {
        if (key in refused || exposed.includes(key)) continue;
        // a live key is a knob the run could expose (its family says how); any other key is fixed by the run itself
        const why = this.schema.isLive(key) && notExposedReason(meta, model)
          ? `${w.label}: ${notExposedReason(meta, model)}.`
          : `${w.label} is set by the run's own script: the page changes only the knobs it exposes${exposed.length ? ` (${knobs})` : ", and it exposes none"}.`;
        this.inapplicable(key, why);
        this.unexposed.add(key);
      }
    }
    const acting = namesWhere(meta, (m) => activationsOf(meta, m).length > 0);
    const cell = isGated(meta, model) ? `The ${name} cell has fixed sigmoid gates and tanh` : `The ${name} takes no activation`;
    if (!("activation" in refused)) this.inapplicable("activation", !activationsOf(meta, model).length && `${cell}; the activation applies to the ${acting}.`);
  }

  /**
   * The keys of the model that apply only under some values of another (its family's applies, e.g.
   * clip_c under lipschitz clip) greyed out with the reason while the other key has none of them.
   */
  applyRules(config) {
    const meta = this.schema.meta, refused = refusedKeys(meta, config.model);
    for (const [key, rule] of Object.entries(appliesOf(meta, config.model))) {
      if (key in refused || !this.widgets.has(key)) continue;
      const on = rule.values.includes(config[rule.key]), label = this.widgets.get(key).label;
      this.inapplicable(key, !on && `${label} applies under ${rule.key} ${listNames(rule.values)} only; the server refuses it under ${rule.key} ${config[rule.key]}.`);
    }
  }

  /** {key: valid names for `model`} from meta, for the menus that depend on it (undefined: the full list). */
  menus(model) {
    const meta = this.schema.meta;
    const acts = activationsOf(meta, model);
    return { dataset: datasetsOf(meta, model), init: initializersOf(meta, model), activation: acts.length ? acts : undefined };
  }

  /**
   * The changes that go with switching to `model`: each menu's value moved into the model's list (its
   * default where that is in it) and the depth into the model's range. (The keys the model does not
   * take the server drops with the switch.)
   */
  fitModel(model) {
    const meta = this.schema.meta, c = this.config, d = this.schema.defaults(), out = {};
    for (const [key, names] of Object.entries(this.menus(model))) {
      if (Array.isArray(names) && !names.includes(c[key])) out[key] = names.includes(d[key]) ? d[key] : names[0];
    }
    const [lo, hi] = depthRange(meta, model) || [c.depth, c.depth];
    if (c.depth < lo || c.depth > hi) out.depth = Math.min(hi, Math.max(lo, c.depth));
    const takes = keysOf(meta, model);  // a key the model does not take is not sent with the switch (the server would refuse it)
    return Array.isArray(takes) ? Object.fromEntries(Object.entries(out).filter(([k]) => takes.includes(k))) : out;
  }

  /** Replace a menu's options with `names` (kept as they are when unchanged), those of `off` shown but disabled. */
  offer(key, names, off = []) {
    const w = this.widgets.get(key);
    if (!w || !Array.isArray(names)) return;
    if ([...w.input.options].map((o) => o.value).join() !== names.join()) w.input.replaceChildren(...names.map((c) => el("option", { value: c }, c)));
    for (const o of w.input.options) o.disabled = off.includes(o.value);
  }

  /** Grey out `key` with `reason` shown under it and as its tooltip; a falsy reason restores it. */
  inapplicable(key, reason) {
    const w = this.widgets.get(key);
    if (!w) return;
    if (reason) this.why.set(key, reason);
    else this.why.delete(key);
    w.why.textContent = reason || "";
    w.why.hidden = !reason;
    w.row.classList.toggle("inapplicable", Boolean(reason));
    w.row.title = reason || "";
    w.input.disabled = !this.enabled || Boolean(reason) || this.hidden.has(key);
  }

  mute(key, muted) {
    const row = this.root.querySelector(`[data-key="${key}"]`);
    if (row) row.classList.toggle("muted", muted);
  }

  /** Widget ranges, for the test that checks them against the config schema's bounds. */
  ranges() {
    return Object.fromEntries([...this.widgets].filter(([, w]) => w.spec.min !== undefined)
      .map(([k, { spec }]) => [k, [spec.zero ? 0 : spec.min, spec.max]]));
  }

  setEnabled(enabled) {
    this.enabled = enabled;
    for (const [key, { input }] of this.widgets) input.disabled = !enabled || this.why.has(key) || this.hidden.has(key);
    this.root.classList.toggle("disabled", !enabled);
  }
}
