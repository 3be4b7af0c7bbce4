// What a model is, as /api/meta describes it: its family (meta.model_family, meta.families), the
// statistics it emits, the views its family asks for (the axis its charts run along, the diagnosis
// and theory that read it, whether it has a decision boundary), the keys it refuses, its depth
// range, its gates and activations. This is the one module that reads those tables: the rest of
// the page asks here about capabilities and never names a model or a family.

const EMPTY = Object.freeze({});

/** The family record of `model` (meta.families[meta.model_family[model]]), or {} where meta has none. */
export function familyOf(meta, model) {
  const name = ((meta || EMPTY).model_family || EMPTY)[model];
  return ((meta || EMPTY).families || EMPTY)[name] || EMPTY;
}

/**
 * The views `model`'s family asks for: axis ("layer": charts along the layers; "time": along the
 * time steps), diagnosis ("layers" | "time"), theory ("chain" | "time"), boundary (a decision
 * boundary to draw), and gated_alternative ({label, changes}) where the family has one.
 */
export const viewsOf = (meta, model) => familyOf(meta, model).views || EMPTY;

/** The axis `model`'s per-layer charts run along: "layer" or "time". */
export const axisOf = (meta, model) => viewsOf(meta, model).axis || "layer";

/** The statistics `model` emits: its family's model_stats[model], else every statistic of its family. */
export function statsOf(meta, model) {
  const f = familyOf(meta, model), own = (f.model_stats || EMPTY)[model];
  return Array.isArray(own) ? own : Object.keys(f.stats || EMPTY);
}

/** Whether `model` emits every one of `stats`. */
export function emits(meta, model, stats = []) {
  const have = new Set(statsOf(meta, model));
  return stats.every((s) => have.has(s));
}

/**
 * Whether a chart or card `spec` applies to `model`: it emits spec.requires, and its family's
 * views have every value spec.views names (e.g. {boundary: true}).
 */
export function shows(meta, model, spec) {
  const views = viewsOf(meta, model);
  return emits(meta, model, spec.requires || []) && Object.entries(spec.views || EMPTY).every(([k, v]) => views[k] === v);
}

/**
 * The keys of `model` that apply only under some values of another key (its family's applies):
 * {key: {key: the key it depends on, values: the values under which it applies}}.
 */
export const appliesOf = (meta, model) => familyOf(meta, model).applies || EMPTY;

/** The networks `model`'s family trains side by side, {stat prefix: name} (views.networks); {} for one network. */
export const networksOf = (meta, model) => viewsOf(meta, model).networks || EMPTY;

/** The loss `config` trains with, where its family names the key that picks one (loss_key), else undefined. */
export const lossOf = (meta, config) => config[familyOf(meta, config.model).loss_key];

/** Whether the run's output is a probability under its loss (its family's probability_losses). */
export const isProbability = (meta, config) => (familyOf(meta, config.model).probability_losses || []).includes(lossOf(meta, config));

/** The control sections the families add for their own keys ({title, rows: [[key, label, widget, help]]}, views.controls), in meta's order. */
export const controlSections = (meta) => Object.values((meta || EMPTY).families || EMPTY).map((f) => (f.views || EMPTY).controls).filter(Boolean);

/**
 * The dataset the user draws on `model`'s data plane ({dataset, key, min, max}: the dataset's name, the
 * config key that carries the points, how few and how many it takes; views.draw), or null where there is none.
 */
export const drawingOf = (meta, model) => viewsOf(meta, model).draw || null;

/** The fixes `model`'s family offers beside the page's own ({name: {label, changes}}, views.fixes). */
export const familyFixes = (meta, model) => viewsOf(meta, model).fixes || EMPTY;

/** The knobs the compare page shows for the runs of the families that name some (views.compare_knobs), in meta's order. */
export const compareKnobs = (meta) => [...new Set(Object.values((meta || EMPTY).families || EMPTY).flatMap((f) => (f.views || EMPTY).compare_knobs || []))];

/** The number of modes of `dataset` for `model` (its family's modes: the mixtures), 0 for none. */
export const modesOf = (meta, model, dataset) => (familyOf(meta, model).modes || EMPTY)[dataset] || 0;

/** Whether `model` has gates (its statistics include each gate's mean value). */
export const isGated = (meta, model) => emits(meta, model, ["gate_mean"]);

/** The names of `model`'s gates (its family's gates[model]), [] where it lists none. */
export const gatesOf = (meta, model) => (familyOf(meta, model).gates || EMPTY)[model] || [];

/**
 * The switch that gives a model without gates a gated cell ({label, changes}, from its family's
 * views.gated_alternative), or null: a gated model, or a family that offers none.
 */
export function gatedAlternative(meta, model) {
  const alt = viewsOf(meta, model).gated_alternative;
  return alt && !isGated(meta, model) ? alt : null;
}

/** The activations `model` takes (meta.activations_by_model; [] = it ignores the activation), else meta.activations. */
export function activationsOf(meta, model) {
  const listed = ((meta || EMPTY).activations_by_model || EMPTY)[model];
  return Array.isArray(listed) ? listed : (meta || EMPTY).activations || [];
}

/** The initializers `model` takes (meta.initializers_by_model), else meta.initializers. */
export function initializersOf(meta, model) {
  const listed = ((meta || EMPTY).initializers_by_model || EMPTY)[model];
  return Array.isArray(listed) ? listed : (meta || EMPTY).initializers || [];
}

/** The datasets `model` takes (meta.datasets_by_model), or undefined where meta does not say. */
export const datasetsOf = (meta, model) => ((meta || EMPTY).datasets_by_model || EMPTY)[model];

/** The keys `model` takes (meta.keys_by_model), or undefined where meta does not say. */
export const keysOf = (meta, model) => ((meta || EMPTY).keys_by_model || EMPTY)[model];

/**
 * The keys the server refuses for `model` (another model's keys: a config of `model` does not hold
 * them), each with the value the page shows for it, greyed: {key: value}.
 */
export function refusedKeys(meta, model) {
  const taken = keysOf(meta, model), out = {};
  if (!Array.isArray(taken)) return out;
  for (const [k, v] of Object.entries((meta || EMPTY).defaults || EMPTY)) if (!taken.includes(k)) out[k] = v;
  return out;
}

/** Every key some model refuses (refusedKeys), in meta.defaults' order. */
export function refusableKeys(meta) {
  const keys = new Set();
  for (const m of modelsOf(meta)) for (const k of Object.keys(refusedKeys(meta, m))) keys.add(k);
  return Object.keys((meta || EMPTY).defaults || EMPTY).filter((k) => keys.has(k));
}

/** [lo, hi] of `model`'s depth: its family's depth_range, else meta.limits.depth, else null. */
export function depthRange(meta, model) {
  const r = familyOf(meta, model).depth_range || ((meta || EMPTY).limits || EMPTY).depth;
  return Array.isArray(r) && r.length === 2 ? r : null;
}

/** What `model`'s family says of `dataset` as a task ({baseline, regression}), or {}. */
export const taskOf = (meta, model, dataset) => (familyOf(meta, model).tasks || EMPTY)[dataset] || EMPTY;

/** Every model meta lists, in its order. */
export const modelsOf = (meta) => (meta || EMPTY).models || Object.keys((meta || EMPTY).model_family || EMPTY);

/** The models the page has views for (a family's views.page false: trained by the API and CLI only). */
export const pageModelsOf = (meta) => modelsOf(meta).filter((m) => {
  const family = ((meta || EMPTY).model_family || EMPTY)[m];
  return ((((meta || EMPTY).families || EMPTY)[family] || EMPTY).views || EMPTY).page !== false;
});

/**
 * The models the Model menu offers: the page's (pageModelsOf) less those whose family's views.menu
 * is false (a session of them is made elsewhere, e.g. by the user's own training script). A session
 * of such a model still shows its model in the menu, greyed (controls.js).
 */
export const menuModelsOf = (meta) => pageModelsOf(meta).filter((m) => viewsOf(meta, m).menu !== false);

/**
 * Whether `model`'s runs are trained by the user's own script, which the server only records: its
 * family names the config key that lists the knobs the script exposes (views.exposed), the only
 * keys a page may change. The page then hides the keys the model refuses instead of greying them,
 * and disables what would act on the training itself (play, step, reset, rewind, fork).
 */
export const isScripted = (meta, model) => Boolean(viewsOf(meta, model).exposed);

/** Whether the control panel hides the keys `model` refuses (refusedKeys) instead of greying them with the reason. */
export const hidesRefused = isScripted;

/**
 * The keys a page may change on `config`'s run where its family restricts them: the list in
 * config[views.exposed] ([] where the config has none); null where every key the model takes is the page's.
 */
export function exposedKeys(meta, config) {
  const key = viewsOf(meta, (config || EMPTY).model).exposed;
  if (!key) return null;
  const listed = config[key];
  return Array.isArray(listed) ? listed : [];
}

/** Why a key the page could change for `model` is not exposed by its run (views.not_exposed), or null. */
export const notExposedReason = (meta, model) => viewsOf(meta, model).not_exposed || null;

/** A list of names in `config` under the key views[view] names, or null where there is none or it is empty. */
function namedList(meta, config, view) {
  const key = viewsOf(meta, (config || EMPTY).model)[view], names = key ? config[key] : null;
  return Array.isArray(names) && names.length ? names.map(String) : null;
}

/** The names of the layers along `config`'s per-layer charts (config[views.layer_names]), or null: the charts number them. */
export const layerNamesOf = (meta, config) => namedList(meta, config, "layer_names");

/** The names of the probed activations whose ‖dL/dz‖ delta_norm holds (config[views.probe_names]), or null: delta_norm is per layer. */
export const probeNamesOf = (meta, config) => namedList(meta, config, "probe_names");

/** `model`'s display name (meta.model_names), else the name itself. */
export const modelName = (meta, model) => ((meta || EMPTY).model_names || EMPTY)[model] || String(model);

/** The models `model`'s family holds, `model` itself where meta does not say. */
export const siblingsOf = (meta, model) => familyOf(meta, model).models || [model];

/** "A", "A and B", "A, B and C". */
export function listNames(names) {
  return names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

/** The display names of the models for which `pred(model)` holds, listed ("A, B and C"). */
export const namesWhere = (meta, pred) => listNames(modelsOf(meta).filter(pred).map((m) => modelName(meta, m)));

/** The default model, the one meta.defaults starts with. */
export const defaultModel = (meta) => ((meta || EMPTY).defaults || EMPTY).model;
