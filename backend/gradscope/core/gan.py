"""The GAN core (issue 20): 2-D data, a generator G and a critic D (MLPs), their losses, the
Lipschitz constraints on D, and one compiled training step that measures both networks.

Pure functions over jax arrays; nothing here is wired into the server yet.

Networks (W = width; G has g_depth hidden layers, D has d_depth):
  G: z (B, z_dim) -> W -> ... -> W -> x (B, 2)       optional BatchNorm before each hidden phi
  D: x (B, 2) -> W -> ... -> W -> one logit / critic value (B,)
Params are {"hidden": [{"w", "b"}, ...], "out": {"w", "b"}} (kernels laid out (fan_in, fan_out)),
G's with "bn": {"gamma": (g_depth, W), "beta": (g_depth, W)}. A network's *layers* for the
per-layer statistics are its kernels, hidden then output: g_depth+1 and d_depth+1 of them.

The step: `make_step(shape, spec)` -> step(state, knobs, real_data, key) -> (state, stats):
n_critic D updates, then one G update, every statistic (STAT_NAMES, shapes in stat_shapes)
computed inside the one compiled program. The learning rates and the Lipschitz constants
(GanKnobs) are traced: changing them does not recompile.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradscope.core.activations import ACTIVATIONS
from gradscope.core.activations import REGISTRY as ACTIVATION_REGISTRY
from gradscope.core.initializers import init_kernel
from gradscope.core.network import BN_EPS, activation_stats, tap
from gradscope.core.optimizers import OPTIMIZERS

# --------------------------------------------------------------------------- data

DATASETS = ("ring8", "grid25", "swissroll", "moons")
N_POINTS = 2000  # points per generated dataset
RING_RADIUS, RING_STD = 2.0, 0.02  # ring8: 8 Gaussians on a circle of radius 2, std 0.02 (Metz et al. 2017)
GRID_SPACING, GRID_STD = 2.0, 0.05  # grid25: 5x5 Gaussians at {-4, -2, 0, 2, 4}^2, std 0.05 (VEEGAN)
SWISSROLL_SCALE, SWISSROLL_NOISE = 7.5, 0.25  # sklearn's 2-D swiss roll divided by 7.5 (WGAN-GP's toy), noise before scaling
MOONS_NOISE = 0.05
MIN_DRAWN, MAX_DRAWN = 8, 5000  # how many user-drawn points `drawn` accepts by default
DRAWN = "drawn"  # the dataset of points the user draws (config key `points`)
DRAWN_JITTER = 0.05  # std of the noise around each drawn point in the training set (a stroke, not single pixels)


def _ring8(rng, n):
    angles = 2 * np.pi * np.arange(8) / 8
    modes = RING_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    k = rng.integers(0, 8, n)
    return modes[k] + RING_STD * rng.standard_normal((n, 2)), modes, RING_STD


def _grid25(rng, n):
    ticks = GRID_SPACING * (np.arange(5) - 2)
    modes = np.stack(np.meshgrid(ticks, ticks, indexing="ij"), axis=-1).reshape(-1, 2)
    k = rng.integers(0, 25, n)
    return modes[k] + GRID_STD * rng.standard_normal((n, 2)), modes, GRID_STD


def _swissroll(rng, n):
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(size=n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) + SWISSROLL_NOISE * rng.standard_normal((n, 2))
    return x / SWISSROLL_SCALE, None, None


def _moons(rng, n):
    upper = rng.integers(0, 2, n).astype(bool)
    angle = rng.uniform(0, np.pi, n)
    a = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    b = np.stack([1.0 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    x = np.where(upper[:, None], a, b) - np.array([0.5, 0.25])  # centred on the origin
    return x + MOONS_NOISE * rng.standard_normal((n, 2)), None, None


_LOADERS = {"ring8": _ring8, "grid25": _grid25, "swissroll": _swissroll, "moons": _moons}


def load(name, *, n=N_POINTS, seed=0):
    """(points float32 (n, 2), modes float32 (K, 2) or None, mode_std float or None), fixed by
    `seed`. The mixtures (ring8, grid25) give their K means and their common std; swissroll and
    moons are not mixtures (modes and mode_std None)."""
    if name not in _LOADERS:
        raise ValueError(f"unknown GAN dataset {name!r}: one of {', '.join(DATASETS)}")
    points, modes, std = _LOADERS[name](np.random.default_rng(seed), n)
    return points.astype(np.float32), None if modes is None else modes.astype(np.float32), std


def drawn(points, max_points=MAX_DRAWN):
    """User-drawn points as a float32 (N, 2) array, after checking them: an (N, 2) array of
    numbers, every entry finite, MIN_DRAWN <= N <= max_points. Raises ValueError naming the problem."""
    try:
        a = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"drawn points must be a list of [x, y] number pairs ({e})") from None
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"drawn points must be an (N, 2) array of [x, y] pairs, got shape {a.shape}")
    bad = int(np.sum(~np.isfinite(a)))
    if bad:
        raise ValueError(f"drawn points must be finite: {bad} coordinates are NaN or infinite")
    if a.shape[0] < MIN_DRAWN:
        raise ValueError(f"too few drawn points: {a.shape[0]}, at least {MIN_DRAWN} are needed")
    if a.shape[0] > max_points:
        raise ValueError(f"too many drawn points: {a.shape[0]}, at most {max_points} are allowed")
    return a.astype(np.float32)


def from_drawn(points, *, n=N_POINTS, seed=0):
    """The training set of a drawing: `n` points (so every dataset has one shape and one build),
    each a drawn point (drawn uniformly, fixed by `seed`) plus N(0, DRAWN_JITTER^2) noise: G
    learns the strokes' shape rather than memorizing a few dots. float32 (n, 2)."""
    a = drawn(points)
    rng = np.random.default_rng(seed)
    return (a[rng.integers(0, len(a), n)] + DRAWN_JITTER * rng.standard_normal((n, 2))).astype(np.float32)


# --------------------------------------------------------------------------- the run's constants

GAN_LOSSES = ("saturating", "non_saturating", "least_squares", "wasserstein")
LIPSCHITZ = ("none", "clip", "gp", "spectral")
SIGMOID_LOSSES = ("saturating", "non_saturating")  # D's output is a logit of P(real)
LEAKY_SLOPE = 0.2  # leaky_relu's negative slope in both nets (the DCGAN value); a constant here
GAN_ACTIVATIONS = tuple(a for a in ACTIVATIONS if a not in ("rrelu", "prelu"))  # no random or learned slopes
MODE_SIGMAS = 3.0  # a sample is of high quality within 3 std of a mode (Unrolled GAN, VEEGAN)
MIN_SHARE = 0.01  # a mode is covered when at least this share of the samples is of high quality near it
NORM_EPS = 1e-12  # inside the square root of the gradient penalty's norm: finite second derivatives at 0


class GanShape(NamedTuple):
    """Everything that fixes array shapes (hashable: a compile key)."""

    z_dim: int = 2
    width: int = 64
    g_depth: int = 3
    d_depth: int = 3
    batch: int = 128


class GanSpec(NamedTuple):
    """The structural choices, baked into the executable."""

    g_act: str = "relu"
    d_act: str = "leaky_relu"
    gan_loss: str = "non_saturating"
    lipschitz: str = "none"
    g_optimizer: str = "adam"  # names in optimizers.OPTIMIZERS
    d_optimizer: str = "adam"
    n_critic: int = 1  # D updates per G update
    g_batchnorm: bool = False


class GanKnobs(NamedTuple):
    """The live values: traced scalars (a change does not recompile)."""

    g_lr: jax.Array
    d_lr: jax.Array
    clip_c: jax.Array  # lipschitz "clip": every D parameter to [-clip_c, clip_c] after each D update
    gp_lambda: jax.Array  # lipschitz "gp": the penalty's weight


def knobs(g_lr=1e-3, d_lr=1e-3, clip_c=0.01, gp_lambda=10.0) -> GanKnobs:
    return GanKnobs(*(jnp.asarray(v, jnp.float32) for v in (g_lr, d_lr, clip_c, gp_lambda)))


class GanState(NamedTuple):
    g_params: dict
    d_params: dict
    g_opt: object  # optax.inject_hyperparams state of spec.g_optimizer
    d_opt: object
    u: tuple  # per D kernel (d_depth+1): the power iteration's vector (fan_out,), unit norm
    step: jax.Array


def _check(spec: GanSpec):
    for field, value, choices in (("g_act", spec.g_act, GAN_ACTIVATIONS), ("d_act", spec.d_act, GAN_ACTIVATIONS),
                                  ("gan_loss", spec.gan_loss, GAN_LOSSES), ("lipschitz", spec.lipschitz, LIPSCHITZ),
                                  ("g_optimizer", spec.g_optimizer, tuple(OPTIMIZERS)),
                                  ("d_optimizer", spec.d_optimizer, tuple(OPTIMIZERS))):
        if value not in choices:
            raise ValueError(f"{field} {value!r} is not one of {', '.join(choices)}")
    if spec.n_critic < 1:
        raise ValueError(f"n_critic must be at least 1, got {spec.n_critic}")


# --------------------------------------------------------------------------- networks


def _mlp(key, sizes, init, gain):
    keys = jax.random.split(key, len(sizes) - 1)
    layers = [{"w": init_kernel(init, k, (a, b), gain), "b": jnp.zeros((b,))} for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]
    return {"hidden": layers[:-1], "out": layers[-1]}


def init_generator(key, shape: GanShape, init, gain=1.0):
    """G's params: every kernel drawn with `init` (initializers.REGISTRY) times `gain`; biases 0, gamma 1, beta 0."""
    params = _mlp(key, [shape.z_dim] + [shape.width] * shape.g_depth + [2], init, gain)
    params["bn"] = {"gamma": jnp.ones((shape.g_depth, shape.width)), "beta": jnp.zeros((shape.g_depth, shape.width))}
    return params


def init_critic(key, shape: GanShape, init, gain=1.0):
    """D's params: every kernel drawn with `init` times `gain`; biases 0."""
    return _mlp(key, [2] + [shape.width] * shape.d_depth + [1], init, gain)


def kernels(params):
    """The kernels, hidden layers then output: the networks' layers for the per-layer statistics."""
    return [layer["w"] for layer in params["hidden"]] + [params["out"]["w"]]


def _slope(act):
    return LEAKY_SLOPE if act == "leaky_relu" else 0.0


def _tapped(x, probe):
    return x if probe is None else tap(x, probe)


def generate(act, params, z, taps=None, batchnorm=False):
    """G(z): z (B, z_dim) -> (x (B, 2), (z_l, h_l) stacked (g_depth, B, W)). With `batchnorm` each
    hidden pre-activation is normalized with the batch's own moments, then scaled by gamma and
    shifted by beta (always the batch's moments: samples are drawn in batches, no running state).
    `taps`: (g_depth+1,) zero scalars; the gradient of a loss with respect to tap l is
    ||dL/dz_l|| over the batch (network.tap), the last one at the output."""
    phi, s = ACTIVATIONS[act], _slope(act)
    h, zs, hs = z, [], []
    for l, layer in enumerate(params["hidden"]):
        u = h @ layer["w"] + layer["b"]
        if batchnorm:
            mu = u.mean(axis=0)
            var = jnp.mean(jnp.square(u - mu), axis=0)
            u = (u - mu) * jax.lax.rsqrt(var + BN_EPS) * params["bn"]["gamma"][l] + params["bn"]["beta"][l]
        u = _tapped(u, None if taps is None else taps[l])
        h = phi(u, s)
        zs.append(u)
        hs.append(h)
    x = _tapped(h @ params["out"]["w"] + params["out"]["b"], None if taps is None else taps[-1])
    return x, (jnp.stack(zs), jnp.stack(hs))


def critic(act, params, x, sigmas=None, taps=None, h_taps=None):
    """D(x): x (B, 2) -> (outputs (B,), (z_l, h_l) stacked (d_depth, B, W)). `sigmas`: one divisor
    per kernel (spectral normalization: each kernel W is used as W / sigma(W)), None to use the
    kernels as they are. `taps`: (d_depth+1,) zero scalars for ||dL/dz_l|| (as in `generate`);
    `h_taps`: one zero array (B, W) per hidden layer added to h_l, whose gradient is dL/dh_l per sample."""
    phi, s = ACTIVATIONS[act], _slope(act)
    w = lambda l, k: k if sigmas is None else k / sigmas[l]
    h, zs, hs = x, [], []
    for l, layer in enumerate(params["hidden"]):
        z = _tapped(h @ w(l, layer["w"]) + layer["b"], None if taps is None else taps[l])
        h = phi(z, s)
        if h_taps is not None:
            h = h + h_taps[l]
        zs.append(z)
        hs.append(h)
    out = _tapped(h @ w(len(zs), params["out"]["w"]) + params["out"]["b"], None if taps is None else taps[-1])
    return out[:, 0], (jnp.stack(zs), jnp.stack(hs))


# --------------------------------------------------------------------------- spectral norms


def _unit(v):
    return v / (jnp.linalg.norm(v) + NORM_EPS)


def init_u(key, params):
    """One random unit vector (fan_out,) per D kernel: the power iteration's start."""
    ks = kernels(params)
    keys = jax.random.split(key, len(ks))
    return tuple(_unit(jax.random.normal(k, (w.shape[1],))) for k, w in zip(keys, ks, strict=True))


def power_iteration(w, u):
    """One power-iteration step on W (fan_in, fan_out): v = W u / ||W u||, u' = W^T v / ||W^T v||.
    No gradient flows through it (u' is a constant of the loss, as in Miyato et al. 2018)."""
    w, u = jax.lax.stop_gradient(w), jax.lax.stop_gradient(u)
    return _unit(w.T @ _unit(w @ u))


def sigma_of(w, u):
    """The largest singular value of W estimated from the iterate u: sigma = ||W u|| (= v^T W u with
    v = W u / ||W u||). Differentiable in W with u held constant: d sigma / dW = v u^T, Miyato's gradient."""
    return jnp.linalg.norm(w @ jax.lax.stop_gradient(u))


def spectral_norms(params, u):
    """(sigmas (d_depth+1,), new u): one power iteration per D kernel, then sigma = ||W u'||."""
    new_u = tuple(power_iteration(w, v) for w, v in zip(kernels(params), u, strict=True))
    return jnp.stack([sigma_of(w, v) for w, v in zip(kernels(params), new_u, strict=True)]), new_u


# --------------------------------------------------------------------------- losses and penalties


def d_loss(gan_loss, l_real, l_fake):
    """D's loss from its outputs on a real and a fake batch (means over each batch):
    saturating / non_saturating: -log sigmoid(l_real) - log(1 - sigmoid(l_fake)) = softplus(-l_real) + softplus(l_fake);
    least_squares (LSGAN, targets 1 and 0): (l_real - 1)^2 / 2 + l_fake^2 / 2;
    wasserstein (WGAN's critic): mean D(fake) - mean D(real)."""
    if gan_loss in SIGMOID_LOSSES:
        return jnp.mean(jax.nn.softplus(-l_real)) + jnp.mean(jax.nn.softplus(l_fake))
    if gan_loss == "least_squares":
        return 0.5 * jnp.mean(jnp.square(l_real - 1.0)) + 0.5 * jnp.mean(jnp.square(l_fake))
    return jnp.mean(l_fake) - jnp.mean(l_real)


def g_loss(gan_loss, l_fake):
    """G's loss from D's outputs on its samples (a mean over the batch):
    saturating (the minimax game): log(1 - sigmoid(l)) = -softplus(l), whose slope sigmoid(l) vanishes where D is sure;
    non_saturating: -log sigmoid(l) = softplus(-l), slope 1 - sigmoid(l);
    least_squares: (l - 1)^2 / 2, slope |l - 1|; wasserstein: -l, slope 1.
    The softplus forms never overflow to inf."""
    if gan_loss == "saturating":
        return -jnp.mean(jax.nn.softplus(l_fake))
    if gan_loss == "non_saturating":
        return jnp.mean(jax.nn.softplus(-l_fake))
    if gan_loss == "least_squares":
        return 0.5 * jnp.mean(jnp.square(l_fake - 1.0))
    return -jnp.mean(l_fake)


def d_output(gan_loss, l):
    """D's mean output as the statistics show it: the mean probability sigmoid(l) for the sigmoid
    losses, the mean raw value for least_squares and wasserstein."""
    return jnp.mean(jax.nn.sigmoid(l)) if gan_loss in SIGMOID_LOSSES else jnp.mean(l)


def input_gradients(act, params, x, sigmas=None):
    """grad_x D(x) per sample (B, 2): the gradient of sum_i D(x_i) (D treats samples independently)."""
    return jax.grad(lambda x: critic(act, params, x, sigmas)[0].sum())(x)


def interpolates(real, fake, eps):
    """x_hat = eps x_real + (1 - eps) x_fake, eps (B, 1) uniform in [0, 1] (WGAN-GP)."""
    return eps * real + (1.0 - eps) * fake


def gradient_penalty(act, params, x_hat, gp_lambda, sigmas=None):
    """gp_lambda * mean_i (||grad_x D(x_hat_i)|| - 1)^2 (Gulrajani et al. 2017), the norm taken as
    sqrt(|g|^2 + 1e-12) so its derivative stays finite where the gradient is 0."""
    g = input_gradients(act, params, x_hat, sigmas)
    norm = jnp.sqrt(jnp.sum(jnp.square(g), axis=1) + NORM_EPS)
    return gp_lambda * jnp.mean(jnp.square(norm - 1.0))


def critic_probe(act, params, x, sigmas=None):
    """(grad_x D (B, 2), [dD/dh_l (B, W) per hidden layer]): D's output's gradient with respect to
    its input and to each hidden layer's activations, per sample (from the gradient of sum_i D(x_i))."""
    b, w = x.shape[0], params["hidden"][0]["w"].shape[1]
    h_taps = [jnp.zeros((b, w)) for _ in params["hidden"]]
    return jax.grad(lambda x, t: critic(act, params, x, sigmas, h_taps=t)[0].sum(), argnums=(0, 1))(x, h_taps)


# --------------------------------------------------------------------------- mode statistics


@jax.jit
def mode_stats(samples, modes, mode_std, min_share=MIN_SHARE):
    """(modes_covered int32, high_quality float) of samples (N, 2) against a mixture's means (K, 2):
    a sample is of high quality when it lies within MODE_SIGMAS (3) std of some mode; it counts
    for its nearest mode; a mode is covered when at least min_share of the N samples count for it
    (Metz et al. 2017's and Srivastava et al. 2017's counts). high_quality is the fraction of
    samples of high quality."""
    dist = jnp.linalg.norm(samples[:, None, :] - modes[None, :, :], axis=-1)  # (N, K)
    good = jnp.min(dist, axis=1) <= MODE_SIGMAS * mode_std
    nearest = jax.nn.one_hot(jnp.argmin(dist, axis=1), modes.shape[0]) * good[:, None]
    counts = nearest.sum(axis=0)
    covered = jnp.sum(counts >= jnp.maximum(min_share * samples.shape[0], 1.0)).astype(jnp.int32)
    return covered, good.mean()


def make_sampler(shape: GanShape, spec: GanSpec):
    """sample(g_params, key, n) -> G(z) (n, 2) for z ~ N(0, I), jitted (n static)."""
    def sample(g_params, key, n):
        z = jax.random.normal(key, (n, shape.z_dim))
        return generate(spec.g_act, g_params, z, batchnorm=spec.g_batchnorm)[0]
    return jax.jit(sample, static_argnums=2)


# --------------------------------------------------------------------------- state and step


def _optimizer(name):
    """The optimizer with its learning rate injected (optax.inject_hyperparams): a state entry the
    step overwrites with the knob's value, so a new value never retraces."""
    return optax.inject_hyperparams(OPTIMIZERS[name])(learning_rate=1.0)


def _with_lr(opt_state, lr):
    return opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": jnp.asarray(lr, jnp.float32)})


def init_state(key, shape: GanShape, spec: GanSpec, g_init=None, d_init=None, g_gain=None, d_gain=None) -> GanState:
    """Both networks' params, optimizer states and power-iteration vectors. An init or gain left
    None is the one the activation's registry record recommends."""
    _check(spec)
    rec_g, rec_d = ACTIVATION_REGISTRY[spec.g_act], ACTIVATION_REGISTRY[spec.d_act]
    kg, kd, ku = jax.random.split(key, 3)
    g = init_generator(kg, shape, g_init or rec_g.init, rec_g.gain if g_gain is None else g_gain)
    d = init_critic(kd, shape, d_init or rec_d.init, rec_d.gain if d_gain is None else d_gain)
    return GanState(g, d, _optimizer(spec.g_optimizer).init(g), _optimizer(spec.d_optimizer).init(d), init_u(ku, d),
                    jnp.zeros((), jnp.int32))


def step_draws(key, shape: GanShape, n_critic, n_data):
    """The step's randomness from its key: for each D update the real batch's rows "d_idx"
    (n_critic, B), G's latents "d_z" (n_critic, B, z_dim) and the interpolation weights "eps"
    (n_critic, B, 1); for the G update its latents "g_z" (B, z_dim). All z ~ N(0, I)."""
    k_idx, k_dz, k_eps, k_gz = jax.random.split(key, 4)
    b = shape.batch
    return {
        "d_idx": jax.random.randint(k_idx, (n_critic, b), 0, n_data),
        "d_z": jax.random.normal(k_dz, (n_critic, b, shape.z_dim)),
        "eps": jax.random.uniform(k_eps, (n_critic, b, 1)),
        "g_z": jax.random.normal(k_gz, (b, shape.z_dim)),
    }


G_LAYER_STATS = ("g_grad_norm", "g_delta_norm", "g_weight_norm", "g_update_ratio")  # (g_depth+1,)
G_HIDDEN_STATS = ("g_dead", "g_saturation")  # (g_depth,)
D_LAYER_STATS = ("d_grad_norm", "d_delta_norm", "d_weight_norm", "d_update_ratio", "spectral_norm")  # (d_depth+1,)
D_HIDDEN_STATS = ("d_dead", "d_saturation")  # (d_depth,)
SCALAR_STATS = ("step", "d_loss", "g_loss", "d_real", "d_fake", "g_logit_grad", "w_estimate")
STAT_NAMES = SCALAR_STATS + G_LAYER_STATS + G_HIDDEN_STATS + D_LAYER_STATS + D_HIDDEN_STATS + ("critic_act_grad", "input_grad_norm")


def stat_shapes(shape: GanShape):
    """Each statistic's shape per step."""
    out = {n: () for n in SCALAR_STATS}
    out.update({n: (shape.g_depth + 1,) for n in G_LAYER_STATS})
    out.update({n: (shape.g_depth,) for n in G_HIDDEN_STATS})
    out.update({n: (shape.d_depth + 1,) for n in D_LAYER_STATS})
    out.update({n: (shape.d_depth,) for n in D_HIDDEN_STATS})
    out.update({"critic_act_grad": (2, shape.d_depth), "input_grad_norm": (3,)})
    return out


def _norms(arrays):
    return jnp.stack([jnp.linalg.norm(a) for a in arrays])


def _row_norms(a):
    return jnp.mean(jnp.linalg.norm(a, axis=-1))


def make_step(shape: GanShape, spec: GanSpec):
    """step(state, knobs, real_data, key) -> (state, stats), jitted; real_data (N, 2) the whole
    dataset (batches drawn inside, step_draws). n_critic D updates, each:

      u <- one power iteration per D kernel (always: the spectral_norm statistic reads it);
      D's loss (d_loss on the real batch and G's samples, plus the gradient penalty at interpolates
      under lipschitz gp; every kernel divided by sigma = ||W u|| under spectral), its gradient,
      the optimizer's update; under clip every D parameter is then clipped to [-clip_c, clip_c].

    then one G update on g_loss of D's outputs on a fresh batch of G's samples (D as it is now,
    spectral sigmas from the current u). Statistics (stat_shapes):

      g_* / d_*: per layer, the kernel's gradient norm, ||dL/dz_l|| over the batch (delta_norm),
        the kernel's norm before the update and ||W_new - W|| / ||W|| (update_ratio: the actual
        change, clipping included); per hidden layer the dead fraction (units zero on the whole
        batch) and the saturated fraction (|phi'(z)| < 0.05), as network.activation_stats. The D
        statistics, and the ones below that read D, are measured at the last D update, at its
        parameters before the update; D's batch is its real and fake batches stacked (2B rows).
      d_loss, g_loss: the adversarial losses (d_loss, g_loss) at the measured updates, d_loss without the gradient penalty.
      d_real, d_fake: d_output of D on the real and the fake batch; w_estimate: mean D(real) - mean D(fake) (raw outputs).
      g_logit_grad: B * mean_i |dL_G/dl_i| over G's batch, l_i = D(G(z_i)) the logit: since L_G is
        a batch mean, B dL_G/dl_i is sample i's own slope, sigmoid(l_i) (saturating),
        1 - sigmoid(l_i) (non_saturating), |l_i - 1| (least_squares), 1 (wasserstein).
      critic_act_grad (2, d_depth): per hidden layer, mean_i ||dD(x_i)/dh_l|| over the real batch
        (row 0) and the fake batch (row 1).
      input_grad_norm (3,): mean_i ||grad_x D(x_i)|| at the real, the fake and the interpolated points.
      spectral_norm (d_depth+1,): sigma = ||W u|| per D kernel (its raw weight), after this update's power iteration.

    Under spectral, D's kernels in the state are the raw ones (d_weight_norm, d_update_ratio read
    them); the forward pass divides them. Under clip the clip follows each D update: the initial
    weights are used unclipped by the first one (clip_c is a knob, unknown at init_state).
    """
    _check(spec)
    g_opt, d_opt = _optimizer(spec.g_optimizer), _optimizer(spec.d_optimizer)
    b, nc = shape.batch, spec.n_critic
    spectral = spec.lipschitz == "spectral"

    def d_loss_fn(d_params, taps, u, real, fake, eps, knobs):
        sigmas = [sigma_of(w, v) for w, v in zip(kernels(d_params), u, strict=True)] if spectral else None
        out, (zs, hs) = critic(spec.d_act, d_params, jnp.concatenate([real, fake]), sigmas, taps)
        l_real, l_fake = out[:b], out[b:]
        loss = d_loss(spec.gan_loss, l_real, l_fake)
        if spec.lipschitz == "gp":
            loss = loss + gradient_penalty(spec.d_act, d_params, interpolates(real, fake, eps), knobs.gp_lambda, sigmas)
        return loss, (l_real, l_fake, zs, hs, sigmas)

    d_grad = jax.grad(d_loss_fn, argnums=(0, 1), has_aux=True)

    def d_update(d_params, d_state, u, g_params, real, z, eps, knobs):
        fake = jax.lax.stop_gradient(generate(spec.g_act, g_params, z, batchnorm=spec.g_batchnorm)[0])
        u = tuple(power_iteration(w, v) for w, v in zip(kernels(d_params), u, strict=True))
        (grads, tap_norms), aux = d_grad(d_params, jnp.zeros((shape.d_depth + 1,)), u, real, fake, eps, knobs)
        updates, d_state = d_opt.update(grads, d_state, d_params)
        new = optax.apply_updates(d_params, updates)
        if spec.lipschitz == "clip":
            new = jax.tree.map(lambda p: jnp.clip(p, -knobs.clip_c, knobs.clip_c), new)
        return new, d_state, u, (grads, tap_norms, aux, real, fake)

    def g_loss_fn(g_params, taps, logit_tap, d_params, sigmas, z):
        x, (zs, hs) = generate(spec.g_act, g_params, z, taps, spec.g_batchnorm)
        l_fake = critic(spec.d_act, d_params, x, sigmas)[0] + logit_tap
        return g_loss(spec.gan_loss, l_fake), (zs, hs)

    g_grad = jax.grad(g_loss_fn, argnums=(0, 1, 2), has_aux=True)
    hidden = lambda act, depth, zs, hs: activation_stats(act, zs, hs, jnp.full((depth, 1, 1), _slope(act)))[0]

    def step(state: GanState, knobs: GanKnobs, real_data, key):
        draws = step_draws(key, shape, nc, real_data.shape[0])
        d_state = _with_lr(state.d_opt, knobs.d_lr)
        g_state = _with_lr(state.g_opt, knobs.g_lr)
        g_params = state.g_params

        def plain(i, carry):
            d_params, d_state, u = carry
            return d_update(d_params, d_state, u, g_params, real_data[draws["d_idx"][i]], draws["d_z"][i], draws["eps"][i], knobs)[:3]

        d_params, d_state, u = jax.lax.fori_loop(0, nc - 1, plain, (state.d_params, d_state, state.u))
        i = nc - 1
        d_before = d_params
        d_params, d_state, u, (d_grads, d_taps, d_aux, real, fake) = d_update(
            d_params, d_state, u, g_params, real_data[draws["d_idx"][i]], draws["d_z"][i], draws["eps"][i], knobs)
        l_real, l_fake, dz, dh, sigmas = d_aux
        d_loss_value = d_loss(spec.gan_loss, l_real, l_fake)

        # what D's output does at its inputs and hidden layers (at the measured update's parameters)
        x_grad, h_grads = critic_probe(spec.d_act, d_before, jnp.concatenate([real, fake]), sigmas)
        x_hat = interpolates(real, fake, draws["eps"][i])
        hat_grad = input_gradients(spec.d_act, d_before, x_hat, sigmas)
        critic_act = jnp.stack([jnp.stack([_row_norms(g[:b]) for g in h_grads]), jnp.stack([_row_norms(g[b:]) for g in h_grads])])
        input_norms = jnp.stack([_row_norms(x_grad[:b]), _row_norms(x_grad[b:]), _row_norms(hat_grad)])
        raw_sigmas = jnp.stack([sigma_of(w, v) for w, v in zip(kernels(d_before), u, strict=True)])

        # the G update, against D as it is now
        g_sigmas = [sigma_of(w, v) for w, v in zip(kernels(d_params), u, strict=True)] if spectral else None
        (g_grads, g_taps, logit_g), (gz, gh) = g_grad(g_params, jnp.zeros((shape.g_depth + 1,)), jnp.zeros((b,)), d_params, g_sigmas,
                                                      draws["g_z"])
        g_loss_value = g_loss_fn(g_params, None, 0.0, d_params, g_sigmas, draws["g_z"])[0]
        g_updates, g_state = g_opt.update(g_grads, g_state, g_params)
        new_g = optax.apply_updates(g_params, g_updates)

        d_hidden, g_hidden = hidden(spec.d_act, shape.d_depth, dz, dh), hidden(spec.g_act, shape.g_depth, gz, gh)
        kd_old, kg_old = kernels(d_before), kernels(g_params)
        stats = {
            "step": state.step,
            "d_loss": d_loss_value,
            "g_loss": g_loss_value,
            "d_real": d_output(spec.gan_loss, l_real),
            "d_fake": d_output(spec.gan_loss, l_fake),
            "w_estimate": jnp.mean(l_real) - jnp.mean(l_fake),
            "g_logit_grad": b * jnp.mean(jnp.abs(logit_g)),
            "g_grad_norm": _norms(kernels(g_grads)),
            "g_delta_norm": g_taps,
            "g_weight_norm": _norms(kg_old),
            "g_update_ratio": _norms([n - o for n, o in zip(kernels(new_g), kg_old, strict=True)]) / _norms(kg_old),
            "g_dead": g_hidden[:, 3],
            "g_saturation": g_hidden[:, 2],
            "d_grad_norm": _norms(kernels(d_grads)),
            "d_delta_norm": d_taps,
            "d_weight_norm": _norms(kd_old),
            "d_update_ratio": _norms([n - o for n, o in zip(kernels(d_params), kd_old, strict=True)]) / _norms(kd_old),
            "d_dead": d_hidden[:, 3],
            "d_saturation": d_hidden[:, 2],
            "spectral_norm": raw_sigmas,
            "critic_act_grad": critic_act,
            "input_grad_norm": input_norms,
        }
        return GanState(new_g, d_params, g_state, d_state, u, state.step + 1), stats

    return jax.jit(step)
