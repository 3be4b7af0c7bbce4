// What mean-field theory expects of the gradient profile, so the page can draw it beside the data.
// Backpropagating through one hidden layer multiplies the gradient's scale by
//   chi = sqrt(width * Var(W) * E[phi'(z)^2]),  z ~ N(0, q_l),
// where q_l, the pre-activation variance, follows the forward recursion
//   q_{l+1} = width * Var(W) * E[phi(z)^2]   (Poole et al. 2016; Schoenholz et al. 2017).
// Expectations are computed by quadrature on a fine grid of the Gaussian density.

// The engine's constants (gradscope.core.activations); tests/test_page_tables.py checks that these,
// every activation and every initializer's variance agree with the backend's.
export const SELU_L = 1.0507009873554805, SELU_A = 1.6732632423543772;
export const RRELU_MEAN = (1 / 8 + 1 / 3) / 2, PRELU_INIT = 0.25;

const sigmoid = (z) => 1 / (1 + Math.exp(-z));

/** phi(z) for each activation name of the engine; `alpha` is the leaky slope. */
export function activation(name, alpha = 0.01) {
  switch (name) {
    case "linear": return (z) => z;
    case "sigmoid": return sigmoid;
    case "tanh": return Math.tanh;
    case "relu": return (z) => (z > 0 ? z : 0);
    case "leaky_relu": return (z) => (z >= 0 ? z : alpha * z);
    case "rrelu": return (z) => (z >= 0 ? z : RRELU_MEAN * z);
    case "prelu": return (z) => (z >= 0 ? z : PRELU_INIT * z);
    case "elu": return (z) => (z > 0 ? z : Math.expm1(z));
    case "selu": return (z) => SELU_L * (z > 0 ? z : SELU_A * Math.expm1(z));
    // jax.nn.gelu defaults to the tanh approximation
    case "gelu": return (z) => 0.5 * z * (1 + Math.tanh(0.7978845608028654 * (z + 0.044715 * z ** 3)));
    case "swish": return (z) => z * sigmoid(z);
    default: throw new Error(`unknown activation ${name}`);
  }
}

/** phi'(z) by central differences (exact enough for a plotted expectation). */
export function derivative(name, alpha = 0.01) {
  const f = activation(name, alpha), h = 1e-4;
  return (z) => (f(z + h) - f(z - h)) / (2 * h);
}

/** E[g(z)] for z ~ N(0, q), trapezoid rule over +-10 standard deviations. */
export function gaussianMean(g, q, n = 801) {
  const s = Math.sqrt(Math.max(q, 1e-12)), lo = -10, dx = 20 / (n - 1);
  let acc = 0, norm = 0;
  for (let i = 0; i < n; i++) {
    const u = lo + i * dx, w = Math.exp(-0.5 * u * u) * (i === 0 || i === n - 1 ? 0.5 : 1);
    acc += w * g(s * u);
    norm += w;
  }
  return acc / norm;
}

/** The variance each initializer aims for, times gain^2 (square hidden layers: fan_in = fan_out). */
export function kernelVariance(init, fanIn, fanOut, gain = 1) {
  const base = {
    standard_normal: 1, glorot_normal: 2 / (fanIn + fanOut), glorot_uniform: 2 / (fanIn + fanOut),
    lecun_normal: 1 / fanIn, lecun_uniform: 1 / fanIn, he_normal: 2 / fanIn, he_uniform: 2 / fanIn,
    orthogonal: 1 / Math.max(fanIn, fanOut),
  }[init];
  return (base ?? 1 / fanIn) * gain * gain;
}

/**
 * Per-layer backward factors chi_l for the hidden layers of `config`, input variance 1.
 * BatchNorm resets the pre-activation variance to 1 and divides the backward pass by the
 * forward scale; a residual branch adds the identity, so the factor becomes sqrt(1 + chi^2).
 * @returns {number[]} (depth,)
 */
export function layerFactors(config) {
  const { activation: act, leaky_alpha: alpha = 0.01, init, init_gain: gain = 1 } = config;
  const width = config.width, depth = config.depth;
  const phi = activation(act, alpha), dphi = derivative(act, alpha);
  const sw = width * kernelVariance(init, width, width, gain);
  const factors = [];
  let q = 1;
  for (let l = 0; l < depth; l++) {
    const qz = config.batchnorm ? 1 : Math.min(q, 1e6);
    const e2 = gaussianMean((z) => phi(z) ** 2, qz);
    const d2 = gaussianMean((z) => dphi(z) ** 2, qz);
    let chi2 = config.batchnorm ? d2 / Math.max(e2, 1e-12) : sw * d2;
    if (config.residual) chi2 = 1 + chi2;
    factors.push(Math.sqrt(chi2));
    q = config.residual ? q + sw * e2 : sw * e2;
  }
  return factors;
}

/**
 * Expected gradient norm per layer (depth + 1,), anchored at the measured output-layer norm:
 * layer l gets anchor * the product of the backward factors between it and the output.
 * @param {number[]} factors  layerFactors(config), (depth,)
 */
export function expectedProfile(factors, anchor) {
  const depth = factors.length, out = new Array(depth + 1);
  out[depth] = anchor;
  for (let l = depth - 1; l >= 0; l--) out[l] = out[l + 1] * factors[l];
  return out.map((v) => (Number.isFinite(v) && v > 0 ? v : null));
}
