// The compare view's traces: A and B in one colour pair, each chart built from the runs' series
// (comparerun.js). Pure data in, Plotly trace objects out; compare.js draws them.
import { chainFactors } from "./charts/factors.js";
import { layers, pos } from "./charts/plot.js";
import { timeTheory } from "./charts/timeprofile.js";
import { emits, modesOf, taskOf } from "./models.js";

export const COLORS = { a: "#0072B2", b: "#E69F00" };  // Okabe-Ito blue / orange, as in the dashboard
const regression = (run, meta) => Boolean(taskOf(meta, run.model, run.config.dataset).regression);

/**
 * chart name -> what it plots. kind "layer": the latest per-layer values; "time": the series over
 * training steps; "timeprofile": the latest ‖dL/dh_t‖ over the time steps. `requires`: the
 * statistics a run's model must emit for its traces to be drawn (models.js; a card none of the
 * runs fits is hidden); `skip(run, meta)`: why a run that fits still has no trace (said in the
 * card's header), or "". `own`: a family's own card, built only once a run that fits it joins.
 */
export const CHARTS = {
  time: { title: "Time profile: ‖dL/dh_t‖ per time step, top layer (dotted: theory)", kind: "timeprofile", requires: ["time_delta_norm"], log: true },
  profile: { title: "Gradient profile: ‖dL/dW‖ per layer", kind: "layer", stat: "grad_norm", log: true, requires: ["delta_norm"] },
  acts: { title: "Activations: std per hidden layer (dotted: dead share)", kind: "layer", stat: "act_std", extra: "dead", requires: ["act_std"] },
  ratio: { title: "Update ratio ‖Δw‖/‖w‖ per layer", kind: "layer", stat: "update_ratio", log: true, requires: ["update_ratio", "delta_norm"] },
  spp: { title: "Signal propagation: average channel variance at each unit's end (dotted: the residual branch's)", kind: "layer",
    stat: "spp_var", extra: "spp_res_var", log: true, gaps: true, requires: ["spp_var"] },
  loss: { title: "Loss", kind: "time", stat: "loss", requires: ["loss"] },
  accuracy: { title: "Accuracy", kind: "time", stat: "accuracy", requires: ["accuracy"],
    skip: (run, meta) => (regression(run, meta) ? `${run.config.dataset} is a regression: no accuracy` : "") },
  clip: { title: "Global gradient norm (dotted: after clipping, dashed: threshold)", kind: "time", stat: "global_grad_norm",
    extra: "clipped_global_grad_norm", log: true, requires: ["global_grad_norm"] },
  // the GAN's (two networks): G's profile is the one its heat map shows (heat)
  gprofile: { title: "G: gradient profile ‖dL/dW‖ per layer", kind: "layer", stat: "g_grad_norm", log: true, requires: ["g_grad_norm"],
    heat: true, own: true },
  dprofile: { title: "D: gradient profile ‖dL/dW‖ per layer", kind: "layer", stat: "d_grad_norm", log: true, requires: ["d_grad_norm"], own: true },
  logit: { title: "G's gradient at D's logit, |dL_G/dlogit|", kind: "time", stat: "g_logit_grad", log: true, requires: ["g_logit_grad"], own: true },
  odds: { title: "D(G(z)) on G's samples (dotted: D(x) on real points)", kind: "time", stat: "d_fake", extra: "d_real", extraName: "d_real",
    requires: ["d_fake", "d_real"], own: true },
  modes: { title: "Modes covered", kind: "time", stat: "modes_covered", gaps: true, requires: ["modes_covered"], own: true,
    skip: (run, meta) => (modesOf(meta, run.model, run.config.dataset) ? "" : `${run.config.dataset} is not a mixture: no modes`) },
};

/** The per-layer statistic `run`'s heat map shows: a layer chart's marked `heat` that its model emits, else grad_norm. */
export function heatStat(run, meta) {
  const spec = Object.values(CHARTS).find((c) => c.heat && emits(meta, run.model, c.requires));
  return spec ? spec.stat : "grad_norm";
}

/** Whether `run`'s model emits what chart `spec` requires (its config known). */
export const fits = (spec, run, meta) => Boolean(run.config) && emits(meta, run.model, spec.requires);

/** Whether `run` has something to draw on chart `spec`. */
export function applies(spec, run, meta) {
  return fits(spec, run, meta) && !(spec.skip && spec.skip(run, meta));
}

/** What the series keep: every time chart's statistics, and the latest step's for the rest. */
export function reads(extraLatest) {
  const stats = (kind) => Object.values(CHARTS).filter((c) => c.kind === kind).flatMap((c) => [c.stat, c.extra].filter(Boolean));
  // the heat maps: every layer's gradient norm (axis "layer"), every time step's (axis "time"), at every kept step
  const heat = Object.values(CHARTS).filter((c) => c.heat).map((c) => c.stat);
  const history = [...stats("time"), "grad_norm", "time_delta_norm", ...heat];
  return { history, latest: [...stats("layer"), "theory_factor", "forget_gate_mean", "gate_mean", "slope_rms", ...extraLatest] };
}

export function layerTraces(run, spec) {
  const latest = run.series.latest;
  if (!latest || !latest[spec.stat]) return [];
  const y = latest[spec.stat], x = layers(y.length), tag = run.name.toUpperCase(), color = COLORS[run.name];
  // gaps: a statistic with no value inside a residual block (NaN) is drawn from one unit's end to the next
  const gaps = Boolean(spec.gaps);
  const out = [{ x, y, name: `${tag} ${spec.stat}`, mode: "lines+markers", line: { color }, connectgaps: gaps }];
  if (spec.extra && latest[spec.extra]) {
    out.push({ x, y: latest[spec.extra], name: `${tag} ${spec.extra}`, mode: "lines", line: { color, dash: "dot" }, connectgaps: gaps });
  }
  return out;
}

export function timeTraces(run, spec) {
  const s = run.series, tag = run.name.toUpperCase(), color = COLORS[run.name];
  const gaps = Boolean(spec.gaps);  // a statistic measured once a call: its rows between have none
  const out = [{ x: s.step, y: s.h[spec.stat], name: `${tag} ${spec.stat}`, mode: "lines", line: { color }, connectgaps: gaps }];
  if (spec.extra) out.push({ x: s.step, y: s.h[spec.extra], name: `${tag} ${spec.extraName || "clipped"}`, mode: "lines", line: { color, dash: "dot" } });
  return out;
}

/** The clipping threshold of each clipping run, dashed in its colour (a norm cap or a per-entry cap). */
export function clipShapes(runs) {
  return runs.filter((r) => r.config && r.config.clip_mode !== "none").map((r) => ({ type: "line", xref: "paper", x0: 0, x1: 1,
    yref: "y", y0: r.config.clip_value, y1: r.config.clip_value, line: { color: COLORS[r.name], width: 1.3, dash: "dash" } }));
}

/**
 * The top layer's ‖dL/dh_t‖ over t = 1..T at the latest step, and (a model that emits theory_factor) the theory line
 * ‖dL/dh_T‖ · theory_factor^(T − t), cut where it falls 1e3 below the measured curve's minimum.
 */
export function timeProfileTraces(run) {
  const s = run.series.latest, L = run.config.depth;
  if (!s || !s.time_delta_norm) return [];
  const row = (s.time_delta_norm[L - 1] || []).map(pos), T = row.length, x = layers(T), tag = run.name.toUpperCase(), color = COLORS[run.name];
  const out = [{ x, y: row, name: `${tag} ‖dL/dh_t‖`, mode: "lines", line: { color, width: 2.2 } }];
  const seen = row.filter((v) => v !== null), floor = seen.length ? Math.min(...seen) / 1e3 : 0;
  const theory = timeTheory(row[T - 1], (s.theory_factor || [])[L - 1], T);
  if (theory.length) out.push({ x, y: theory.map((v) => (v !== null && v > floor ? v : null)), name: `${tag} theory`, mode: "lines", line: { color, dash: "dot", width: 1.4 } });
  return out;
}

/** Slope factor delta/h and weight factor h/u (charts/factors.js) of a run that emits them. */
export function chainTraces(run) {
  if (!run.series.latest || !run.series.latest.h_grad_norm) return [];
  const f = chainFactors(run.series.latest), x = layers(f.slope.length), tag = run.name.toUpperCase(), color = COLORS[run.name];
  return [{ x, y: f.slope, name: `${tag} slope`, mode: "lines+markers", line: { color } },
    { x, y: f.weight, name: `${tag} weight`, mode: "lines+markers", line: { color, dash: "dash" } }];
}

/** The heat map of a run: rows (its axis: layers, or time steps of the top layer) and their values at every kept step. */
export function heatRows(run) {
  const S = run.series, latest = S.latest || {};
  if (run.axis === "time") {
    const top = run.config.depth - 1, n = ((latest.time_delta_norm || [])[top] || []).length;
    return { kind: "time", n, value: (row, i) => { const c = S.h.time_delta_norm[i]; return c && c[top] ? c[top][row] : null; } };
  }
  const stat = heatStat(run, run.meta || {});
  return { kind: "layer", n: (latest[stat] || []).length, value: (row, i) => ((S.h[stat] || [])[i] || [])[row] };
}
