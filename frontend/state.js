// The run's configuration as one flat object, declared key by key, and its URL form.
// Names and defaults follow docs/protocol.md exactly (one name everywhere).

export const CHOICES = {
  dataset: ["spirals", "circles", "moons", "xor", "gaussian", "digits"],
  init: ["standard_normal", "glorot_normal", "glorot_uniform", "lecun_normal",
         "lecun_uniform", "he_normal", "he_uniform", "orthogonal"],
  activation: ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "rrelu", "prelu",
               "elu", "selu", "gelu", "swish"],
  clip_mode: ["none", "value", "norm"],
  optimizer: ["sgd", "momentum", "adam", "rmsprop"],
};

// key -> [type, default, live]; "reset" keys re-initialize the network on the server.
export const KEYS = {
  dataset: ["choice", "spirals", false],
  input_dim: ["int", 2, false],
  noise: ["float", 0.1, false],
  depth: ["int", 10, false],
  width: ["int", 64, false],
  batch_size: ["int", 128, false],
  init: ["choice", "glorot_normal", false],
  init_gain: ["float", 1.0, false],
  seed: ["int", 0, false],
  activation: ["choice", "sigmoid", true],
  leaky_alpha: ["float", 0.01, true],
  batchnorm: ["bool", false, true],
  residual: ["bool", false, true],
  clip_mode: ["choice", "none", true],
  clip_value: ["float", 1.0, true],
  optimizer: ["choice", "sgd", true],
  learning_rate: ["float", 0.1, true],
  l1: ["float", 0.0, true],
  l2: ["float", 0.0, true],
};

export function defaults() {
  return Object.fromEntries(Object.entries(KEYS).map(([k, [, d]]) => [k, d]));
}

export function isLive(key) {
  return Boolean(KEYS[key] && KEYS[key][2]);
}

/** Parse one value of `key` from text; undefined when it does not parse. */
export function parseValue(key, text) {
  const spec = KEYS[key];
  if (!spec || text === null || text === undefined) return undefined;
  const [type] = spec;
  if (type === "bool") {
    const t = String(text).toLowerCase();
    if (["1", "true", "yes", "on"].includes(t)) return true;
    if (["0", "false", "no", "off"].includes(t)) return false;
    return undefined;
  }
  if (type === "int") {
    const n = Number(text);
    return Number.isInteger(n) ? n : undefined;
  }
  if (type === "float") {
    const n = Number(text);
    return Number.isFinite(n) ? n : undefined;
  }
  return CHOICES[key] && !CHOICES[key].includes(String(text)) ? undefined : String(text);
}

/** The config keys named in a query string (`?activation=relu&depth=30`); unknown keys are dropped. */
export function fromQuery(search) {
  const params = new URLSearchParams(search);
  const out = {};
  for (const key of Object.keys(KEYS)) {
    if (!params.has(key)) continue;
    const value = parseValue(key, params.get(key));
    if (value !== undefined) out[key] = value;
  }
  return out;
}

/** Query string (with `?`) that reproduces `config`: every key that differs from the default, and the seed. */
export function toQuery(config) {
  const base = defaults();
  const params = new URLSearchParams();
  for (const key of Object.keys(KEYS)) {
    if (!(key in config)) continue;
    if (key === "seed" || config[key] !== base[key]) params.set(key, String(config[key]));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

/** Format a value for people: compact numbers, names as they are. */
export function formatValue(value) {
  if (typeof value === "number" && !Number.isInteger(value)) {
    return Math.abs(value) < 1e-3 || Math.abs(value) >= 1e4 ? value.toExponential(1) : String(+value.toPrecision(3));
  }
  return String(value);
}
