// The chain rule's factors per layer, from one step's norms (pure: no DOM, no Plotly).
// delta_l / delta_{l+1} = (u_{l+1} / delta_{l+1}) * (h_l / u_{l+1}) * (delta_l / h_l):
// BatchNorm factor, weight factor, slope factor (docs/protocol.md). The output layer's u is its z.

// 0 / b is a real factor of 0 (a dead layer: nothing passes); a / 0 and non-finite ones have none
const ratio = (a, b) => (typeof a === "number" && typeof b === "number" && a >= 0 && b > 0 && Number.isFinite(a / b) ? a / b : null);

/**
 * @param {object} s  a step's record: delta_norm (D+1), h_grad_norm (D), u_grad_norm (D)
 * @returns {{bn: (number|null)[], weight: (number|null)[], slope: (number|null)[], product: (number|null)[]}}
 *   each (D,): the factors of going back from layer l+1 to layer l, for hidden layer l = 0..D-1
 */
export function chainFactors(s) {
  const d = s.delta_norm || [], h = s.h_grad_norm || [], u = s.u_grad_norm || [], D = h.length;
  const uNext = (l) => (l + 1 < D ? u[l + 1] : d[l + 1]);
  const idx = Array.from({ length: D }, (_, l) => l);
  return {
    bn: idx.map((l) => ratio(uNext(l), d[l + 1])),
    weight: idx.map((l) => ratio(h[l], uNext(l))),
    slope: idx.map((l) => ratio(d[l], h[l])),
    product: idx.map((l) => ratio(d[l], d[l + 1])),
  };
}

/** Geometric mean of the positive entries; null when there are none. */
export function geomean(values) {
  const logs = values.filter((v) => typeof v === "number" && v > 0 && Number.isFinite(v)).map(Math.log);
  return logs.length ? Math.exp(logs.reduce((a, b) => a + b, 0) / logs.length) : null;
}
