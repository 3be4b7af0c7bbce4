// The diagnosis of a GAN, for the models whose family's views.diagnosis is "game" (models.js): is
// G's gradient alive (the saturating loss under a confident D), does weight clipping make the
// critic's gradients explode or vanish over its layers, do G's layers get a gradient at all, and
// (on a mixture) how many modes G covers. Same result shape as diagnose() in diagnosis.js; the
// fixes are names of the family's own (views.fixes: its loss switch, WGAN-GP), dropped where the
// config already has what they change.
import { familyFixes, isProbability, lossOf, modesOf } from "./models.js";

const sci = (v) => (v === 0 ? "0" : v >= 0.01 && v < 100 ? String(+Number(v).toPrecision(2))
  : Number(v).toExponential(0).replace("e+", "e"));
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const CONFIDENT = 0.1;  // D(G(z)) below this: D rejects G's samples (the issue's lesson 1)
const SPREAD = 10;  // the critic's activation gradient changing this much over its layers

/** What diagnoseGame() reads from the latest step, beyond what the charts keep. */
export const GAME_READS = ["d_real", "d_fake", "g_logit_grad", "g_grad_norm", "critic_act_grad", "modes_covered", "high_quality"];

/** The ratio of the largest to the smallest positive entry of `a`, or null. */
function spread(a) {
  const pos = (a || []).filter((v) => isNum(v) && v > 0);
  return pos.length > 1 ? Math.max(...pos) / Math.min(...pos) : null;
}

/** The verdict on the latest statistics `s` of a GAN run with `config`. */
export function diagnoseGame(config, s, meta) {
  if (!s || !("d_fake" in s)) return { level: "ok", title: "Waiting for the first steps…", lines: [], fixes: [] };
  const g = s.g_grad_norm || [];
  if (!isNum(s.d_fake) || !isNum(s.d_real) || g.some((v) => v === null)) {
    return { level: "bad", title: "Non-finite values: the game is blowing up", lines: ["D's outputs or G's gradients are NaN or infinite."],
             fixes: ["wgan_gp"] };
  }
  const lines = [], fixes = [];
  let level = "ok", title = "Both networks get a gradient";
  const prob = isProbability(meta, config);
  lines.push(prob ? `D(x) ${sci(s.d_real)} on real points, D(G(z)) ${sci(s.d_fake)} on G's samples.`
    : `The critic's mean value: ${sci(s.d_real)} on real points, ${sci(s.d_fake)} on G's samples.`);
  if (isNum(s.g_logit_grad)) lines.push(`G's gradient at D's logit: ${sci(s.g_logit_grad)}.`);
  if (lossOf(meta, config) === "saturating" && s.d_fake < CONFIDENT) {
    level = "bad";
    title = "G's gradient vanishes: the saturating loss under a confident D";
    lines.push(`D rejects G's samples (D(G(z)) ${sci(s.d_fake)}), and the saturating loss passes G only sigmoid(logit) = D(G(z)) of D's gradient; the non-saturating loss would pass 1 − D(G(z)) = ${sci(1 - s.d_fake)}.`);
    fixes.push("non_saturating");
  }
  const critic = (s.critic_act_grad || [])[0], ratio = spread(critic);
  if (config.lipschitz === "clip" && ratio !== null && ratio > SPREAD) {
    const grows = critic[0] > critic[critic.length - 1];
    if (level === "ok") { level = "warn"; title = `Weight clipping: the critic's gradient ${grows ? "explodes" : "vanishes"} toward the input`; }
    lines.push(`Under clipping at c = ${sci(config.clip_c)} the critic's activation gradient changes ${sci(ratio)}× over its layers.`);
    fixes.push("wgan_gp");
  }
  const gr = g.length > 1 && g[g.length - 1] > 0 ? g[0] / g[g.length - 1] : null;
  if (gr !== null && gr < 1e-3) {
    if (level === "ok") { level = "warn"; title = "G's first layers barely learn"; }
    lines.push(`G's layer 1 receives ${sci(gr)} of the gradient of its output layer.`);
  }
  const n = modesOf(meta, config.model, config.dataset);
  if (n && isNum(s.modes_covered)) {
    lines.push(`G covers ${Math.round(s.modes_covered)} of ${n} modes${isNum(s.high_quality) ? `, ${Math.round(100 * s.high_quality)}% of its samples near one` : ""}.`);
    if (level === "ok" && s.modes_covered < n / 2 && isNum(s.high_quality) && s.high_quality > 0.5) {
      level = "warn";
      title = "Mode collapse: good samples of few modes";
      fixes.push("wgan_gp");
    }
  }
  const table = familyFixes(meta, config.model);
  const applied = (name) => !table[name] || Object.entries(table[name].changes).every(([k, v]) => config[k] === v);
  return { level, title, lines, fixes: [...new Set(fixes)].filter((f) => !applied(f)) };
}
