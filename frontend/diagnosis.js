// Reads the latest statistics in plain words and proposes fixes that are plain config changes.
import { chainFactors, geomean } from "./charts/factors.js";
import { defaultSlope, derivative } from "./theory.js";
import { exposedKeys, familyFixes, gatedAlternative, keysOf } from "./models.js";

const sci = (v) => (v === 0 ? "0" : v >= 0.01 && v < 100 ? String(+Number(v).toPrecision(2))
  : Number(v).toExponential(0).replace("e+", "e"));
const pct = (v) => `${Math.round(100 * v)}%`;
const mean = (a) => (a.length ? a.reduce((s, v) => s + v, 0) / a.length : 0);
const finite = (a) => (a || []).filter((v) => typeof v === "number" && Number.isFinite(v));
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const SATURATING = ["sigmoid", "tanh"];
const RELU_LIKE = ["relu"];
const DEAD_LAYER = 0.9;  // a layer this dead is named, whatever the mean over all layers

/** A layer's 1-based number as text, the default label of spans and layerNames. */
const number = (i) => `${i + 1}`;

/**
 * 1-based spans of 0-based indices (ascending): "3", "1–11", "1–3, 5"; the first `most` spans, then
 * "and N more". `label(i)` names index i (its number by default; a run's layer names: "dense0–dense3").
 */
export function spans(indices, most = 4, label = number) {
  const runs = [];
  for (const i of indices) {
    const last = runs[runs.length - 1];
    if (last && i === last[1] + 1) last[1] = i;
    else runs.push([i, i]);
  }
  const text = runs.slice(0, most).map(([a, b]) => (a === b ? label(a) : `${label(a)}–${label(b)}`)).join(", ");
  const rest = runs.slice(most).reduce((n, [a, b]) => n + b - a + 1, 0);
  return rest ? `${text} and ${rest} more` : text;
}

/** "layer 3" or "layers 1–11": `indices` named with the right number (`label`: as spans). */
export function layerNames(indices, word = "layer", label = number) {
  return `${word}${indices.length === 1 ? "" : "s"} ${spans(indices, 4, label)}`;
}

/**
 * How the text calls layers: `one(i)` "layer 3" and `many(indices, word)` "layers 1–3", or with the
 * run's own layer names where it has them (`names`, models.js layerNamesOf): "dense2", "layers dense0–dense2".
 */
function namer(names) {
  const own = (i) => (Array.isArray(names) && names[i] !== undefined ? String(names[i]) : null);
  return { one: (i) => own(i) ?? `layer ${number(i)}`, many: (indices, word = "layer") => layerNames(indices, word, (i) => own(i) ?? number(i)) };
}

const where = (a, pred) => (a || []).flatMap((v, i) => (pred(v) ? [i] : []));

/** What diagnose() reads from the latest step, beyond what the charts keep. */
export const READS = ["grad_norm", "saturation", "dead", "loss", "global_grad_norm", "update_ratio",
                      "delta_norm", "h_grad_norm", "u_grad_norm"];

// For a dead layer, in the order they brought the README's demo back (sigmoid trained 10,000-30,000
// steps, then ReLU: layer 10 all 0): BatchNorm learned the spirals in 500-750 steps with the weights
// kept, ReLU + He restarted them and learned in 1,000-1,250, leaky ReLU took 4,000-19,500.
const DEAD_FIXES = ["batchnorm", "relu_he", "leaky"];
const DEAD_WAYS = {
  batchnorm: "BatchNorm recentres every layer's inputs, keeping the weights",
  relu_he: "ReLU + He init restarts the weights at a scale that ReLU keeps",
  leaky: "leaky ReLU lets a gradient through every unit, keeping the weights",
};

export const FIXES = {
  relu_he: { label: "Switch to ReLU + He init", changes: { activation: "relu", init: "he_normal" } },
  batchnorm: { label: "Add BatchNorm", changes: { batchnorm: true } },
  residual: { label: "Add residual connections", changes: { residual: true } },
  clip_norm: { label: "Clip by norm", changes: { clip_mode: "norm", clip_value: 1.0 } },
  lower_lr: { label: "Lower the learning rate ×10", changes: null },
  leaky: { label: "Switch to leaky ReLU", changes: { activation: "leaky_relu" } },
  glorot: { label: "Glorot init, gain 1", changes: { init: "glorot_normal", init_gain: 1.0 } },
  he: { label: "He init", changes: { init: "he_normal" } },
  // through time (timediagnosis.js); "gated", a switch to a gated cell, is the family's own (fixTable)
  orthogonal: { label: "Orthogonal W_hh, gain 1", changes: { init: "orthogonal", init_gain: 1.0 } },
  // Le, Jaitly & Hinton (2015) clip the IRNN's gradient: without it, ReLU + identity on `adding`
  // at the default SGD rate diverges within 100 steps; clipped by norm at 1 it learns the task
  identity_relu: { label: "ReLU + identity W_hh + clip (IRNN)", changes: { activation: "relu", init: "identity", init_gain: 1.0 },
          clip: { clip_mode: "norm", clip_value: 1.0 } },
};

/** The steepest slope of `config`'s activation: the most its slope factor can be without dropout. */
function maxSlope(config) {
  const d = derivative(config.activation, defaultSlope(config.activation, config.leaky_alpha));
  let m = 0;
  for (let z = -6; z <= 6; z += 0.01) m = Math.max(m, Math.abs(d(z)));
  return m;
}

/**
 * Lines and fixes from the chain-rule factors (geometric means over the hidden layers): a summary,
 * and in a vanishing or exploding run the factor that causes it.
 * @param {"vanishing"|"exploding"|null} trouble
 */
function factorLines(config, s, trouble, lines, fixes) {
  if (!s.h_grad_norm || !s.u_grad_norm || !s.delta_norm) return;
  const f = chainFactors(s), slope = geomean(f.slope), weight = geomean(f.weight), bn = geomean(f.bn);
  if (slope === null || weight === null) return;
  if (trouble === "vanishing" && slope < 0.6) {
    const top = maxSlope(config);
    const why = top <= 0.3 ? `${config.activation}'s ceiling is ${sci(top)}` : "many inputs sit where the slope is flat";
    lines.push(`Slope factor ${sci(slope)} per layer: ${why}.`);
  }
  const glorot = config.init === "glorot_normal" && config.init_gain <= 1;
  if (trouble === "exploding" && weight > 1.6) {
    lines.push(`Weight factor ${sci(weight)} per layer: the weights are too large, try a smaller init gain${glorot ? "" : " or Glorot"}.`);
    if (!glorot) fixes.add("glorot");
  } else if (trouble === "vanishing" && weight < 0.6) {
    lines.push(`Weight factor ${sci(weight)} per layer: the weights are too small, try He init or a larger gain.`);
    fixes.add("he");
  }
  const bnPart = config.batchnorm && bn !== null ? ` × BatchNorm ${sci(bn)}` : "";
  lines.push(`Per layer back: slope factor ${sci(slope)} × weight factor ${sci(weight)}${bnPart}.`);
}

/**
 * @param {object} config  the session's config
 * @param {object} s       the latest record: per-layer arrays grad_norm (depth+1), saturation, dead (depth)
 * @param {string[]|null} [names]  the layers' names, where the run names them (models.js layerNamesOf): the text
 *   says "dense0 receives ... of dense9 (output)" instead of numbering them
 * @returns {{level: "ok"|"warn"|"bad", title: string, lines: string[], fixes: string[]}}
 */
export function diagnose(config, s, names = null) {
  const call = namer(names);
  if (!s || !s.grad_norm) return { level: "ok", title: "Waiting for the first steps…", lines: [], fixes: [] };
  const g = s.grad_norm, L = g.length - 1, lines = [], fixes = new Set();
  if (g.some((v) => v === null) || s.loss === null) {
    return { level: "bad", title: "Non-finite gradients: the run is blowing up", lines: ["Some layers' gradients are NaN or infinite."], fixes: ["clip_norm", "lower_lr"] };
  }
  const zero = where(g, (v) => v === 0), deadLayers = where(s.dead, (v) => isNum(v) && v >= DEAD_LAYER);
  if (zero.length && (zero.length === g.length || deadLayers.length)) return finish(config, deadNetwork(config, s, zero, deadLayers, call));
  let level = "ok", title = "Gradients flow: every layer learns at a similar rate";
  const first = g[0], last = g[L];
  const sat = mean(finite(s.saturation)), dead = mean(finite(s.dead));
  const act = config.activation;
  const ratio = first / last;  // finite, or not a ratio when the output layer is silent (said below)
  const relation = `${call.one(0)} receives ${sci(ratio)} of the gradient of ${call.one(L)} (output)`;
  if (last === 0) {
    // no relation to the output's gradient: the silent layers below say what is wrong
  } else if (ratio < 1e-3) {
    level = "bad";
    title = "Vanishing gradients";
    let why = relation;
    if (SATURATING.includes(act) && sat > 0.05) why += `; ${pct(sat)} of ${act} units are saturated`;
    lines.push(`${why}: the first layers barely learn.`);
    ["relu_he", "batchnorm", "residual"].forEach((f) => fixes.add(f));
  } else if (ratio > 1e3 || (s.global_grad_norm ?? 0) > 1e4) {
    level = "bad";
    title = "Exploding gradients";
    lines.push(`${relation}: each step throws the early layers around.`);
    ["clip_norm", "batchnorm", "lower_lr"].forEach((f) => fixes.add(f));
  } else {
    lines.push(`${relation}, within a factor of 1000.`);
  }
  if (zero.length) {  // some layers but no dead one: a gradient that rounds to 0 on its way back
    lines.push(`No gradient at all reaches ${call.many(zero)}: it is exactly 0 there, so ${zero.length === 1 ? "it does" : "they do"} not learn.`);
    if (level !== "bad") [level, title] = ["bad", `No gradient reaches ${call.many(zero)}`];
    ["relu_he", "batchnorm", "residual"].forEach((f) => fixes.add(f));
  }
  if (deadLayers.length) {
    [level, title] = level === "bad" ? [level, title] : ["warn", `Dead units in ${call.many(deadLayers)}`];
    lines.push(`${deadLine(s, deadLayers, call)}: no gradient reaches their weights.`);
    DEAD_FIXES.forEach((f) => fixes.add(f));
  } else if (RELU_LIKE.includes(act) && dead > 0.4) {
    level = level === "bad" ? "bad" : "warn";
    if (level === "warn") title = "Dead ReLUs";
    lines.push(`${pct(dead)} of ReLU units never fire on this batch: no gradient reaches their weights.`);
    ["leaky", "batchnorm", "lower_lr"].forEach((f) => fixes.add(f));
  } else if (SATURATING.includes(act) && sat > 0.5 && level === "ok") {
    level = "warn";
    title = "Saturated units";
    lines.push(`${pct(sat)} of ${act} units are saturated, where their slope is nearly zero.`);
    ["batchnorm", "relu_he"].forEach((f) => fixes.add(f));
  }
  factorLines(config, s, title === "Vanishing gradients" ? "vanishing" : title === "Exploding gradients" ? "exploding" : null, lines, fixes);
  const ur = finite(s.update_ratio);
  if (ur.length) {
    const med = ur.slice().sort((a, b) => a - b)[Math.floor(ur.length / 2)];
    if (med > 3e-2) {
      lines.push(`Updates change weights by ${sci(med)} of their size per step (healthy is about 1e-3): the learning rate is high.`);
      fixes.add("lower_lr");
      if (level === "ok") { level = "warn"; title = "Steps too large"; }
    } else if (level === "ok") {
      lines.push(`Median update ratio ${sci(med)} (healthy is about 1e-3).`);
    }
  }
  return finish(config, { level, title, lines, fixes: [...fixes] });
}

/** "Layer 10: 100% of its units are 0 for every example" (the most dead first when several are); `call`: namer's. */
function deadLine(s, layers, call) {
  const fr = layers.map((l) => s.dead[l]), lo = Math.min(...fr), hi = Math.max(...fr);
  const share = lo === hi ? pct(hi) : `${pct(lo)} to ${pct(hi)}`;
  return `${call.many(layers, "Layer")}: ${share} of ${layers.length === 1 ? "its" : "their"} units are 0 for every example in the batch`;
}

/**
 * Some layers' weight gradients are exactly 0 and either every layer's is or a layer is dead
 * (units 0 on the whole batch): nothing passes back through a dead layer, and the layer above it
 * gets inputs of 0. Red whatever the ratios say, unless the loss itself gives no gradient.
 */
function deadNetwork(config, s, zero, deadLayers, call) {
  const L = s.grad_norm.length - 1;
  if ((s.delta_norm || [])[L] === 0) {
    const lines = ["No gradient leaves the output (‖dL/dlogits‖ = 0): every example in the batch is fit exactly."];
    if (deadLayers.length) lines.push(`${deadLine(s, deadLayers, call)}.`);
    return { level: "warn", title: "No gradient: the loss gives none on this batch", fixes: [], lines };
  }
  const lines = [`Every weight gradient of ${call.many(zero)}${zero.includes(L) ? ` (${call.one(L)} is the output)` : ""} is exactly 0: training leaves these weights where they are.`];
  if (deadLayers.length) {
    const them = deadLayers.length === 1 && s.dead[deadLayers[0]] === 1 ? "it" : "their dead units";
    lines.push(`${deadLine(s, deadLayers, call)}: nothing passes back through ${them}, and the layer above gets inputs of 0 from ${them === "it" ? "it" : "them"}.`);
    const result = finish(config, { level: "bad", title: "", lines, fixes: DEAD_FIXES });
    const ways = result.fixes.map((f) => DEAD_WAYS[f]);
    if (ways.length) lines.push(`${ways.join("; ")}.`.replace(/^./, (c) => c.toUpperCase()));
  } else if (SATURATING.includes(config.activation)) {
    lines.push(`${pct(mean(finite(s.saturation)))} of ${config.activation} units are saturated: their slope is 0 in float32.`);
  }
  const fixes = deadLayers.length || !SATURATING.includes(config.activation) ? DEAD_FIXES : ["relu_he", "batchnorm", "residual"];
  return { level: "bad", title: `Dead network: no gradient reaches ${call.many(zero)}`, lines, fixes: [...fixes] };
}

/** `result` without the fixes `config` already has. */
function finish(config, result) {
  const fixes = new Set(result.fixes), act = config.activation;
  if (config.batchnorm) fixes.delete("batchnorm");
  if (config.residual) fixes.delete("residual");
  if (config.clip_mode === "norm") fixes.delete("clip_norm");
  if (act === "relu" && config.init === "he_normal") fixes.delete("relu_he");
  if (act === "leaky_relu") fixes.delete("leaky");
  if (config.init === "glorot_normal" && config.init_gain === 1) fixes.delete("glorot");
  if (config.init.startsWith("he_")) fixes.delete("he");
  return { ...result, fixes: [...fixes] };
}

/**
 * The fixes `model` may be offered: FIXES, and "gated" where its family names a gated alternative
 * for it (models.js gatedAlternative: {label, changes}, e.g. a switch of model).
 */
export function fixTable(meta, model) {
  const alt = gatedAlternative(meta, model), own = familyFixes(meta, model);
  const table = Object.keys(own).length ? { ...FIXES, ...own } : FIXES;
  return alt ? { ...table, gated: { label: alt.label, changes: { ...alt.changes } } } : table;
}

/** Changes that apply fix `name` (of `table`: FIXES or fixTable's) to `config`. */
export function fixChanges(name, config, table = FIXES) {
  if (name === "lower_lr") return { learning_rate: +(config.learning_rate / 10).toPrecision(2) };
  const fix = table[name];
  const clip = fix.clip && config.clip_mode === "none" ? fix.clip : {};  // a clipping run keeps its own
  return { ...fix.changes, ...clip };
}

/**
 * Whether the page may apply fix `name` (of `table`) to `config`'s run: every key it changes is one
 * that the model it leaves the run with (a switch's, else config.model) takes (models.js keysOf) and,
 * where the run's family lists the keys a page may change (models.js exposedKeys), one of those.
 */
export function fixApplies(meta, config, name, table = FIXES) {
  if (!table[name]) return false;
  const changes = fixChanges(name, config, table) || {}, model = changes.model ?? config.model;
  const taken = keysOf(meta, model), exposed = exposedKeys(meta, config);
  return Object.keys(changes).every((k) => (!Array.isArray(taken) || taken.includes(k)) && (!exposed || exposed.includes(k)));
}

/**
 * Render `diagnose(...)` into `root`; fix buttons (the fixes of `fixes`, FIXES or fixTable's, that
 * the result names and `offered` lets through) call `onFix(name)` and are rebuilt only when the fixes
 * change. The fixes `offered` turns down are left out, or, with `advice` (e.g. "In your script"), listed
 * after it as text: what to change where the page cannot change it.
 */
export function renderDiagnosis(root, result, { canFix, onFix, fixes: table = FIXES, offered = () => true, advice = null }) {
  if (!root.firstChild) {
    const title = document.createElement("div");
    title.className = "diag-title";
    const fixes = document.createElement("div");
    fixes.className = "diag-fixes";
    root.replaceChildren(title, document.createElement("ul"), fixes);
  }
  const [title, body, fixes] = root.children;
  root.dataset.level = result.level;
  title.textContent = result.title;
  const text = result.lines.join("\n");
  if (body.dataset.text !== text) {
    body.dataset.text = text;
    body.replaceChildren(...result.lines.map((line) => {
      const li = document.createElement("li");
      li.textContent = line;
      return li;
    }));
  }
  const all = result.fixes.filter((name) => table[name]), names = all.filter((name) => offered(name));
  const told = advice ? all.filter((name) => !names.includes(name)) : [];
  const key = JSON.stringify([names, names.map((name) => table[name].label), canFix, told, advice]);
  if (fixes.dataset.key === key) return;
  fixes.dataset.key = key;
  const note = told.length ? [Object.assign(document.createElement("p"), { className: "diag-advice",
    textContent: `${advice}: ${told.map((name) => table[name].label).join(" · ")}` })] : [];
  fixes.replaceChildren(...note, ...names.map((name) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "fix";
    b.dataset.fix = name;
    b.textContent = table[name].label;
    b.disabled = !canFix;
    b.title = canFix ? "applies now, as a marker on the charts" : "fork the session to change it";
    b.addEventListener("click", () => onFix(name));
    return b;
  }));
}
