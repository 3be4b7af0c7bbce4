// The diagnosis in time steps, for the models whose family's views.diagnosis is "time" (models.js):
// how much of the gradient at the last step reaches the first, what the theory line expects, and
// whether the loss has left its baseline. Same result shape as diagnose() in diagnosis.js; the
// fixes are names of its fixTable.
import { spans } from "./diagnosis.js";
import { activationsOf, gatedAlternative, initializersOf } from "./models.js";

const sci = (v) => (v === 0 ? "0" : v >= 0.01 && v < 100 ? String(+Number(v).toPrecision(2))
  : Number(v).toExponential(0).replace("e+", "e"));
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const where = (a, pred) => (a || []).flatMap((v, i) => (pred(v) ? [i] : []));

/**
 * The fixes for a gradient that vanishes through time, minus those already applied: a model
 * without gates may switch to the gated cell its family names (Hochreiter & Schmidhuber 1997),
 * orthogonal W_hh at gain 1, and a model that takes ReLU and identity weights may become an
 * IRNN (Le, Jaitly & Hinton 2015).
 */
function vanishingFixes(config, meta) {
  const fixes = [], { model } = config;
  if (gatedAlternative(meta, model)) fixes.push("gated");
  if (!["orthogonal", "identity"].includes(config.init) || config.init_gain !== 1) fixes.push("orthogonal");
  const identityRelu = activationsOf(meta, model).includes("relu") && initializersOf(meta, model).includes("identity");
  if (identityRelu && !(config.activation === "relu" && config.init === "identity")) fixes.push("identity_relu");
  return fixes;
}

/**
 * The verdict when a whole layer's ||dL/dh_t|| is exactly 0 at every time step, or a parameter
 * group's gradient is; null when every layer and group gets some. Never green: zero gradients
 * teach nothing. Every group 0 with a finite loss: the loss itself gives none.
 */
function silentResult(config, s, rows, meta) {
  const groups = (s.grad_norm || []).filter((v) => typeof v === "number"), zero = groups.filter((v) => v === 0).length;
  const dead = where(rows, (r) => r.every((v) => v === 0)), T = rows[0].length;
  if (groups.length && zero === groups.length) {
    return { level: "warn", title: "No gradient: the loss gives none on this batch", fixes: [],
             lines: [`Loss ${sci(s.loss)}: every parameter's gradient is exactly 0.`] };
  }
  if (!dead.length && !zero) return null;
  const lines = [];
  const layers = `recurrent layer${dead.length === 1 ? "" : "s"} ${spans(dead)}`;
  if (dead.length) lines.push(`‖dL/dh_t‖ of ${layers} is exactly 0 at every one of the ${T} time steps.`);
  if (zero) lines.push(`${zero} of the ${groups.length} parameter groups get a gradient of exactly 0: training leaves them where they are.`);
  const title = dead.includes(config.depth - 1) ? "Dead network: no gradient reaches any time step"
    : dead.length ? `Dead network: no gradient reaches ${layers}` : `Dead network: no gradient reaches ${zero} of ${groups.length} parameter groups`;
  return { level: "bad", title, lines, fixes: vanishingFixes(config, meta) };
}

/** "No gradient at all reaches time steps 1–3 (of layer 1)" for each layer where some steps get exactly 0. */
function zeroStepLines(rows) {
  return rows.flatMap((r, l) => {
    const zero = where(r, (v) => v === 0);
    const of = rows.length > 1 ? ` of recurrent layer ${l + 1}` : "";
    return zero.length ? [`No gradient at all reaches time step${zero.length === 1 ? "" : "s"} ${spans(zero)}${of}: it is exactly 0 there.`] : [];
  });
}

/**
 * @param {object} config  the session's config (model, depth, seq_len, ...)
 * @param {object} s       the latest record: time_delta_norm (depth, seq_len), theory_factor, loss, baseline
 * @param {object} meta    /api/meta: which fixes the model takes (models.js); without it, none of those
 * @returns {{level: "ok"|"warn"|"bad", title: string, lines: string[], fixes: string[]}}
 */
export function diagnoseTime(config, s, meta = {}) {
  if (!s || !s.time_delta_norm) return { level: "ok", title: "Waiting for the first steps…", lines: [], fixes: [] };
  const rows = s.time_delta_norm, row = rows[config.depth - 1] || [], T = row.length, lines = [];
  if (!T || rows.some((r) => (r || []).some((v) => !isNum(v))) || !isNum(s.loss)) {
    return { level: "bad", title: "Non-finite gradients: the run is blowing up",
             lines: ["Some time steps' gradients are NaN or infinite."], fixes: ["clip_norm", "lower_lr"] };
  }
  const silent = silentResult(config, s, rows, meta);
  if (silent) return silent;
  const ratio = row[0] / row[T - 1];  // row[T - 1] > 0 here
  const relation = `step 1 receives ${sci(ratio)} of the gradient at step ${T}`;
  let level = "ok", title = "Gradients reach the first time step", fixes = [];
  if (ratio < 1e-3) {
    [level, title, fixes] = ["bad", "Vanishing gradients through time", vanishingFixes(config, meta)];
    lines.push(`${relation}: the network cannot learn dependencies that long.`);
  } else if (ratio > 1e3 || (s.global_grad_norm ?? 0) > 1e4) {
    [level, title, fixes] = ["bad", "Exploding gradients through time", config.clip_mode === "norm" ? ["lower_lr"] : ["clip_norm", "lower_lr"]];
    lines.push(`${relation}: a few steps of the sequence dominate every update.`);
  } else {
    lines.push(`${relation}, within a factor of 1000.`);
  }
  const zeroLines = zeroStepLines(rows);  // exact zeros: red whatever the ratio of the top layer says
  if (zeroLines.length) {
    lines.push(...zeroLines);
    if (level !== "bad") [level, title, fixes] = ["bad", "No gradient reaches some time steps", vanishingFixes(config, meta)];
  }
  const f = (s.theory_factor || [])[config.depth - 1];
  if (isNum(f)) lines.push(`Theory: spectral radius × RMS slope = ${sci(f)} per step, ${sci(Math.pow(f, T - 1))} over ${T - 1} steps.`);
  const fg = (s.forget_gate_mean || [])[config.depth - 1];
  if (isNum(fg)) lines.push(`Mean forget gate ${sci(fg)}: the cell keeps that share of its state each step.`);
  if (isNum(s.baseline) && s.loss > 0.9 * s.baseline) {
    lines.push(`Loss ${sci(s.loss)} is at the baseline ${sci(s.baseline)} of a model that ignores its input: not learning yet.`);
    if (level === "ok") [level, title] = ["warn", "Not learning yet"];
  }
  return { level, title, lines, fixes };
}
