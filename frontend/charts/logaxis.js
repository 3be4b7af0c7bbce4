// A log axis for the charts: a range that moves in jumps (its ticks are redrawn a few times a
// run, not at every update), readable ticks (whole decades, a few labels), and a floor for exact
// zeros. log(0) is -inf: a dead layer's zero gradient would be a hole in the line or a missing
// bar; here it is drawn on a shaded band below the lowest decade, ticked "0".
import { palette, pos } from "./plot.js";

const SUPER = { "-": "⁻", 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵", 6: "⁶", 7: "⁷", 8: "⁸", 9: "⁹" };

/** 10^k as people read it: 0.01 … 1000 plainly, 10⁻⁵ or 10⁶ beyond. */
export function decadeLabel(k) {
  if (k >= -2 && k <= 3) return String(10 ** k >= 1 ? 10 ** k : +(10 ** k).toFixed(-k));
  return `10${String(k).split("").map((c) => SUPER[c]).join("")}`;
}

export class LogAxis {
  /**
   * @param {object} [o]
   * @param {number} [o.spare]  decades the range may leave unused before it shrinks
   * @param {number} [o.pad]    decades a new range leaves beyond the data
   * @param {number} [o.ticks]  the most tick labels (a short axis: 3)
   * @param {number[]} [o.start]  [lo, hi] in log10 units before any data
   */
  constructor({ spare = 4, pad = 0.5, ticks = 5, start = [-3, 0] } = {}) {
    Object.assign(this, { spare, pad, ticks, start });
    this.range = null;  // [lo, hi] of the decades shown, log10, without the floor
    this.zero = false;  // whether the floor is shown
  }

  /** The axis range (log10) with the floor band under it when zeros are shown. */
  get full() {
    const [lo, hi] = this.range || this.start;
    return [this.zero ? lo - 1 : lo, hi];
  }

  /** Where an exact zero is drawn: the middle of the floor band. */
  get floor() {
    return 10 ** (this.full[0] + 0.5);
  }

  /**
   * Take the values now shown; returns the axis' new properties ({range, tickmode, tickvals,
   * ticktext}) when its range or floor must change, else null.
   */
  update(values) {
    let lo = Infinity, hi = -Infinity, zero = false;
    for (const v of values) {
      if (v === 0) zero = true;
      else if (pos(v) !== null) { if (v < lo) lo = v; if (v > hi) hi = v; }
    }
    let moved = false;
    if (Number.isFinite(lo)) {
      const a = Math.log10(lo), b = Math.log10(hi), r = this.range;
      if (!r || a < r[0] || b > r[1] || (a - r[0]) + (r[1] - b) > this.spare) {
        const lo2 = Math.floor(a - this.pad);
        this.range = [lo2, Math.max(Math.ceil(b + this.pad), lo2 + 1)];
        moved = true;
      }
    }
    // the floor appears with the first zero; it goes when a new range is drawn without one
    if (zero && !this.zero) { this.zero = true; moved = true; }
    else if (!zero && this.zero && moved) this.zero = false;
    return moved || !this.drawn ? this.axis() : null;
  }

  /** The axis' properties for the current range: range, decade ticks and the floor's "0". */
  axis() {
    this.drawn = true;
    const [lo, hi] = this.range || this.start, step = Math.max(1, Math.ceil((hi - lo) / this.ticks));
    const decades = [];
    for (let k = Math.ceil(lo); k <= hi; k += step) decades.push(k);
    const vals = decades.map((k) => 10 ** k), text = decades.map(decadeLabel);
    if (this.zero) { vals.unshift(this.floor); text.unshift("0"); }
    return { range: this.full, tickmode: "array", tickvals: vals, ticktext: text };
  }

  /** The same as relayout keys of axis `name` ("yaxis", "yaxis2"). */
  keys(name, props = this.axis()) {
    return Object.fromEntries(Object.entries(props).map(([k, v]) => [`${name}.${k}`, v]));
  }

  /** The plotted value of `v`: itself when positive, the floor for an exact 0, null (a gap) when non-finite. */
  y(v) {
    return v === 0 ? (this.zero ? this.floor : null) : pos(v);
  }

  ys(values) {
    return (values || []).map((v) => this.y(v));
  }

  /** The floor band, a shaded strip under the lowest decade with a dashed edge (the axis break); [] without zeros. */
  shapes(yref = "y") {
    if (!this.zero) return [];
    const [lo] = this.full, c = palette().floor;
    return [{ type: "rect", xref: "paper", x0: 0, x1: 1, yref, y0: 10 ** lo, y1: 10 ** (lo + 1), fillcolor: c, opacity: 0.16,
              line: { width: 0 }, layer: "below" },
            { type: "line", xref: "paper", x0: 0, x1: 1, yref, y0: 10 ** (lo + 1), y1: 10 ** (lo + 1), line: { color: c, width: 1, dash: "dot" } }];
  }
}
