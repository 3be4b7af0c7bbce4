"""Recurrent models: `depth` stacked Elman RNN, LSTM or GRU layers run over time with
`lax.scan`, then a Dense readout of the top layer's hidden state.

Parameters (L = depth, H = width, G gates: rnn 1, lstm 4 (i f g o), gru 3 (r z n)):
  layers: L dicts  w_xh (n_in_l, G*H), w_hh (H, G*H), b (G*H,)   n_in_0 = n_in, else H
  out:    w (H, C), b (C,)
Gate blocks are stacked along the last axis in the order of GATES[model].

Equations, batch-major rows (x_t (B, n_in), h_t (B, H)):
  rnn   h_t = phi(x_t W_xh + h_{t-1} W_hh + b)                      phi: the live activation
  lstm  [i f g o] = x_t W_xh + h_{t-1} W_hh + b;  i f o sigmoid, g tanh
        c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)                   (Gers et al. 2000, no peepholes)
  gru   r, z = sigmoid(x_t W_x{r,z} + h_{t-1} W_h{r,z} + b_{r,z})
        n = tanh(x_t W_xn + b_n + r * (h_{t-1} W_hn));  h_t = (1 - z) n + z h_{t-1}
        (cuDNN's and PyTorch's variant: the reset gate after the recurrent product; one bias per gate)

Like the MLP's deltas, `eps` (L, T, B, H) are zero probes added to every h_t: the gradient
of the loss with respect to them is dL/dh_t, the gradient reaching step t through time.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradscope.core.activations import ACTIVATIONS, derivative
from gradscope.core.initializers import INITIALIZERS, init_kernel

MODELS = ("rnn", "lstm", "gru")
GATES = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
# The gate whose mean is the fraction of the old state carried on: LSTM's forget gate, GRU's z.
CARRY_GATE = {"lstm": 1, "gru": 1}
# Gates read through tanh (saturated when |v| > 1 - SAT); the others are sigmoids (v < SAT or v > 1 - SAT).
TANH_GATES = {"rnn": (), "lstm": (2,), "gru": (2,)}
RECURRENT_INITIALIZERS = INITIALIZERS + ("identity",)
# rrelu draws random slopes and prelu learns one per layer: neither is defined for these cells.
RNN_ACTIVATIONS = tuple(a for a in ACTIVATIONS if a not in ("rrelu", "prelu"))
SAT = 0.05
POWER_STEPS = 48  # from a random start (initialization, the standalone function)
WARM_POWER_STEPS = 8  # per training step, continuing from the last step's vectors


class RecurrentShape(NamedTuple):
    """Everything that fixes array shapes (and so the compiled executable) for one run."""

    model: str
    task: str
    n_in: int
    depth: int
    width: int
    n_out: int
    out_steps: int
    batch: int
    seq_len: int


def _gate_kernels(init, key, fan_in, width, gates, gain, recurrent):
    """(fan_in, G*H): one (fan_in, H) draw per gate, so fans are those of one gate's map."""
    keys = jax.random.split(key, gates)
    if init == "identity":
        if recurrent:
            return jnp.tile(gain * jnp.eye(width), (1, gates))
        init, gain = "glorot_normal", 1.0  # IRNN: only W_hh is the identity; W_xh stays Glorot
    return jnp.concatenate([init_kernel(init, k, (fan_in, width), gain) for k in keys], axis=1)


def init_params(key, shape: RecurrentShape, init: str, gain: float, forget_bias: float = 1.0):
    """Kernels drawn with `init` (W_hh: gain * I for `identity`), biases 0, LSTM forget bias `forget_bias`."""
    g, h = len(GATES[shape.model]), shape.width
    keys = jax.random.split(key, 2 * shape.depth + 1)
    layers = []
    for l in range(shape.depth):
        fan_in = shape.n_in if l == 0 else h
        b = jnp.zeros((g * h,))
        if shape.model == "lstm":
            b = b.at[h:2 * h].set(forget_bias)
        layers.append({
            "w_xh": _gate_kernels(init, keys[2 * l], fan_in, h, g, gain, False),
            "w_hh": _gate_kernels(init, keys[2 * l + 1], h, h, g, gain, True),
            "b": b,
        })
    out_init, out_gain = ("glorot_normal", 1.0) if init == "identity" else (init, gain)
    return {"layers": layers, "out": {"w": init_kernel(out_init, keys[-1], (h, shape.n_out), out_gain), "b": jnp.zeros((shape.n_out,))}}


def zero_eps(shape: RecurrentShape, batch: int):
    """The probes: (L, T, B, H) zeros."""
    return jnp.zeros((shape.depth, shape.seq_len, batch, shape.width))


def _cell(model, act, slope):
    """One time step: (carry, (x_proj (B, G*H), e (B, H)), w_hh) -> (carry, (h, aux (2, G)))."""
    phi = ACTIVATIONS.get(act)

    def rnn(carry, xp, e, w_hh):
        z = xp + carry @ w_hh
        h = phi(z, slope) + e
        d = derivative(act, z, slope)  # phi'(z): the unit's slope, which BPTT multiplies in
        aux = jnp.stack([(jnp.abs(d) < SAT).mean()[None], jnp.square(d).mean()[None]])
        return h, h, aux

    def lstm(carry, xp, e, w_hh):
        h0, c0 = carry
        i, f, g, o = jnp.split(xp + h0 @ w_hh, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        c = f * c0 + i * g
        h = o * jnp.tanh(c) + e
        return (h, c), h, _gate_aux(jnp.stack([i, f, g, o], axis=1), TANH_GATES["lstm"])

    def gru(carry, xp, e, w_hh):
        xr, xz, xn = jnp.split(xp, 3, axis=-1)
        hr, hz, hn = jnp.split(carry @ w_hh, 3, axis=-1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h = (1 - z) * n + z * carry + e
        return h, h, _gate_aux(jnp.stack([r, z, n], axis=1), TANH_GATES["gru"])

    return {"rnn": rnn, "lstm": lstm, "gru": gru}[model]


def _gate_aux(v, tanh_gates):
    """v (B, G, H) gate values -> (2, G): saturated fraction, mean value."""
    g = v.shape[1]
    sig_tail = (v < SAT) | (v > 1 - SAT)
    tanh_tail = jnp.abs(v) > 1 - SAT
    is_tanh = jnp.zeros((g,), bool).at[jnp.asarray(tanh_gates, jnp.int32)].set(True)[None, :, None]
    tail = jnp.where(is_tanh, tanh_tail, sig_tail)
    return jnp.stack([tail.mean(axis=(0, 2)), v.mean(axis=(0, 2))])


def run_layer(model, act, layer, xs, eps, slope):
    """One recurrent layer over time. xs (T, B, n_in), eps (T, B, H) -> hs (T, B, H), aux (T, 2, G)."""
    batch, width = xs.shape[1], layer["w_hh"].shape[0]
    xp = xs @ layer["w_xh"] + layer["b"]  # (T, B, G*H): the input projection, one matmul for all steps
    cell = _cell(model, act, slope)
    h0 = jnp.zeros((batch, width), xs.dtype)
    carry0 = (h0, h0) if model == "lstm" else h0

    def body(carry, inputs):
        xp_t, e_t = inputs
        carry, h, aux = cell(carry, xp_t, e_t, layer["w_hh"])
        return carry, (h, aux)

    _, (hs, aux) = jax.lax.scan(body, carry0, (xp, eps))
    return hs, aux


def forward(model, act, params, xs, eps, slope):
    """xs (T, B, n_in) -> top hidden states (T, B, H), per-layer aux (L, 2, G) averaged over time.

    aux[l, 0]: saturated fraction per gate (rnn: |phi'| < SAT); aux[l, 1]: mean gate value
    (rnn: mean phi'^2, whose root is the RMS slope of the theory line).
    """
    h, auxes = xs, []
    for l, layer in enumerate(params["layers"]):
        h, aux = run_layer(model, act, layer, h, eps[l], slope)
        auxes.append(aux.mean(axis=0))
    return h, jnp.stack(auxes)


def readout(out, hs, out_steps):
    """The Dense readout of the last `out_steps` hidden states: (S, B, C)."""
    return hs[-out_steps:] @ out["w"] + out["b"]


def _power_steps(blocks, v, steps, unroll):
    """`steps` power iterations on each (H, H) block at once. blocks (G, H, H), v (G, H) unit rows.

    Returns the new vectors and the log growth per iteration (steps, G). The growth rate of
    ||W^k v|| converges to the spectral radius for complex dominant pairs too, where the
    Rayleigh quotient oscillates.
    """
    def body(v, _):
        u = jnp.einsum("gij,gi->gj", blocks, v)  # W^T v: the direction backpropagation multiplies by
        n = jnp.maximum(jnp.linalg.norm(u, axis=-1, keepdims=True), 1e-30)
        return u / n, jnp.log(n[:, 0])

    return jax.lax.scan(body, v, None, length=steps, unroll=unroll)


def spectral_radius(w, steps=POWER_STEPS):
    """|lambda_max| of one square (H, H) matrix by power iteration from a fixed start, on device."""
    v0 = jax.random.normal(jax.random.PRNGKey(0), (1, w.shape[0]), w.dtype)
    _, logs = _power_steps(w[None], v0 / jnp.linalg.norm(v0), steps, 1)
    return jnp.exp(logs[steps // 2:, 0].mean())


def _blocks(w_hh, gates):
    h = w_hh.shape[0]
    return w_hh.reshape(h, gates, h).swapaxes(0, 1)  # (G, H, H): each gate's recurrent block


def init_power(params, model):
    """Converged power-iteration vectors for every gate block: a list of L arrays (G, H).

    Training steps continue from them (`gate_radii`) with a few iterations each: W_hh moves
    little per step, so the vectors stay converged and each step's estimate is cheap.
    """
    g, out = len(GATES[model]), []
    for layer in params["layers"]:
        h = layer["w_hh"].shape[0]
        v0 = jax.random.normal(jax.random.PRNGKey(0), (g, h))
        v, _ = _power_steps(_blocks(layer["w_hh"], g), v0 / jnp.linalg.norm(v0, axis=-1, keepdims=True), POWER_STEPS, 1)
        out.append(v)
    return out


def gate_radii(params, model, vectors, steps=WARM_POWER_STEPS):
    """Spectral radius of each gate's recurrent block W_hh[:, gate] -> (L, G), and the advanced vectors."""
    g, radii, new = len(GATES[model]), [], []
    for layer, v in zip(params["layers"], vectors, strict=True):
        v, logs = _power_steps(_blocks(layer["w_hh"], g), v, steps, True)  # unrolled: a loop costs more than 8 matvecs
        radii.append(jnp.exp(logs.mean(0)))
        new.append(v)
    return jnp.stack(radii), new


def theory_factor(radius, slope_rms):
    """Predicted ||dL/dh_{t-1}|| / ||dL/dh_t|| for an Elman RNN: rho(W_hh) * RMS phi'.

    Backpropagation through one step multiplies by W_hh diag(phi'(z_t)): W_hh stretches a
    vector by about its spectral radius (exactly for a scaled orthogonal matrix, on average
    for a Gaussian one by the circular law), diag(phi') by the RMS slope when the slopes are
    not aligned with the gradient. So dL/dh_t ~ factor^(T - t) dL/dh_T.
    """
    return radius * slope_rms
