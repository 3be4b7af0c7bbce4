// What a model is, as /api/meta describes it: the statistics it emits, whether it runs through
// time, whether it has gates, the activations it takes. The page asks here and never names a
// model: a chart applies to a model that emits the statistics it requires (spec.requires).

/** The statistics `model` emits: meta.recurrent.stats[model], or the MLP's groups (meta.stats). */
export function statsOf(meta, model) {
  const own = ((meta.recurrent || {}).stats || {})[model];
  if (Array.isArray(own)) return own;
  return Object.values(meta.stats || {}).flat();
}

/** Whether `model` emits every one of `stats`. */
export function emits(meta, model, stats = []) {
  const have = new Set(statsOf(meta, model));
  return stats.every((s) => have.has(s));
}

/** Whether `model` runs through time (a recurrent model: meta.recurrent lists its statistics). */
export function isRecurrent(meta, model) {
  return Array.isArray(((meta.recurrent || {}).stats || {})[model]);
}

/** Whether `model` has gates (its statistics include each gate's mean value). */
export function isGated(meta, model) {
  return emits(meta, model, ["gate_mean"]);
}

/**
 * The activations `model` takes: meta.activations_by_model where the server lists it; else the
 * MLP's list, the recurrent list for an ungated recurrent model, none for a gated one (its
 * gates have fixed sigmoids and tanh).
 */
export function activationsOf(meta, model) {
  const listed = (meta.activations_by_model || {})[model];
  if (Array.isArray(listed)) return listed;
  if (!isRecurrent(meta, model)) return meta.activations || [];
  return isGated(meta, model) ? [] : (meta.recurrent || {}).activations || [];
}

/** The default model (the MLP), the one meta.defaults starts with. */
export const defaultModel = (meta) => (meta.defaults || {}).model;
