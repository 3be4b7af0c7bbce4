// The banner of a diverged run: where it broke, and what can be done about it. Rewind is
// offered only where the server has a checkpoint to go back to (`rewind_to`), with the learning
// rate to resume with (a tenth of the one that diverged, by default). A run that diverged before
// any checkpoint gets the fixes that change its outcome, each with its values; each restarts the
// weights, which are no longer finite.

import { axisOf, initializersOf } from "./models.js";

const round = (v) => +Number(v).toPrecision(2);
const fmt = (v) => (typeof v === "number" ? String(+v.toPrecision(3)) : String(v));

/** The initializer that suits `config`'s activation (Glorot & Bengio 2010; He et al. 2015;
 * Klambauer et al. 2017 for SELU), or orthogonal weights for a model that runs through time (its
 * family's views.axis, models.js; Saxe et al. 2014), from the names `meta` lists. */
function suitedInit(config, meta) {
  const names = initializersOf(meta, config.model);
  const act = config.activation || "";
  const want = axisOf(meta, config.model) === "time" ? "orthogonal"
    : act.endsWith("relu") ? "he_normal" : act === "selu" ? "lecun_normal" : "glorot_normal";
  return names.includes(want) ? want : null;
}

/**
 * The fixes for a run that diverged with no checkpoint: [{name, label, changes}], each a change
 * of the outcome (the same config would diverge again).
 */
export function divergenceFixes(config, meta) {
  const fixes = [];
  if (typeof config.learning_rate === "number") {
    const lr = round(config.learning_rate / 10);
    fixes.push({ name: "lr", label: `learning rate ${fmt(config.learning_rate)} → ${fmt(lr)}`, changes: { learning_rate: lr } });
  }
  if (config.clip_mode !== "norm" || config.clip_value > 1) {
    fixes.push({ name: "clip", label: "clip by norm at 1", changes: { clip_mode: "norm", clip_value: 1 } });
  }
  const init = suitedInit(config, meta);
  if (init && init !== config.init) {
    const gain = config.init_gain !== 1 ? `, gain ${fmt(config.init_gain)} → 1` : "";
    fixes.push({ name: "init", label: `init ${config.init} → ${init}${gain}`, changes: { init, init_gain: 1 } });
  } else if (config.init_gain > 1) {
    fixes.push({ name: "init", label: `init gain ${fmt(config.init_gain)} → 1`, changes: { init_gain: 1 } });
  }
  return fixes;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

export class DivergedBanner {
  /**
   * @param {HTMLElement} root  the banner (#banner)
   * @param {{onRewind: (lr: number) => void, onFix: (changes: object) => void}} actions
   */
  constructor(root, actions) {
    Object.assign(this, { root, actions, key: null });
  }

  hide() {
    this.root.hidden = true;
    this.key = null;
  }

  /**
   * @param {{config: object, meta: object, step: number, diverged: {step, layer}|null,
   *          rewindTo: number|null|undefined, canAct: boolean, scripted?: boolean, names?: string[]|null}} s
   *   scripted: a run its own script trains (models.js isScripted): no rewind nor restart here, only the advice;
   *   names: the run's layer names (models.js layerNamesOf), else the layers go by number
   */
  show({ config, meta, step, diverged, rewindTo, canAct, scripted = false, names = null }) {
    const d = diverged || {};
    const key = JSON.stringify([d.step, d.layer, rewindTo, canAct, scripted, config.learning_rate, config.clip_mode, config.init, config.init_gain]);
    this.root.hidden = false;
    if (key === this.key) return;  // the learning rate being typed stays as it is
    this.key = key;
    const layer = typeof d.layer === "number" ? (names && names[d.layer] !== undefined ? names[d.layer] : `layer ${d.layer + 1}`) : null;
    const where = layer ? `; ${layer} went non-finite first` : "";
    const text = el("span", { id: "banner-text" }, `Training diverged at step ${d.step ?? step}${where}.`);
    const parts = [text];
    if (scripted) {
      text.append(" Its own script trains it, and the server keeps no weights to go back to: lower the learning rate or clip the gradient in the script, and run it again.");
    } else if (rewindTo !== null && rewindTo !== undefined) {
      text.append(` Rewind to step ${rewindTo}, the last finite checkpoint, with a smaller learning rate:`);
      const lr = el("input", { id: "banner-lr", type: "number", min: "0", step: "any", "aria-label": "learning rate to resume with",
                               value: String(round(config.learning_rate / 10)) });
      const go = el("button", { id: "banner-rewind", type: "button", class: "primary" }, `Rewind to step ${rewindTo}`);
      go.addEventListener("click", () => {
        const v = Number(lr.value);
        if (Number.isFinite(v) && v > 0) this.actions.onRewind(v);
      });
      lr.addEventListener("keydown", (e) => { if (e.key === "Enter") go.click(); });
      parts.push(el("label", { class: "banner-lr" }, "learning rate ", lr), go);
    } else {
      text.append(" There is no earlier checkpoint to rewind to, and its weights are no longer finite: restart them with a change that prevents it.");
      const fixes = divergenceFixes(config, meta).map((f) => {
        const b = el("button", { type: "button", class: "banner-fix", "data-fix": f.name }, f.label);
        b.addEventListener("click", () => this.actions.onFix(f.changes));
        return b;
      });
      parts.push(el("span", { class: "banner-fixes" }, ...fixes));
    }
    this.root.replaceChildren(...parts);
    for (const b of this.root.querySelectorAll("button, input")) {
      b.disabled = !canAct;
      if (!canAct) b.title = "only the session's owner can change it: fork it to try a fix";
    }
  }
}
