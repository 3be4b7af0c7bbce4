"""The GAN training chunk: up to K GAN steps in one compiled loop, statistics reduced on device,
in the MLP chunk's form (core.train): per-step scalars for every step, every other statistic at
the measured steps (every `every`-th and the last), their count under "rows".

`make_chunk(shape, spec, steps)` returns, jitted,
    chunk(state, knobs, data, key, n, every) -> (state, out)
each step gan.make_step's (n_critic D updates, then one G update) with its randomness from
step_key(key, state.step): a run's draws do not depend on how it is cut into chunks. The knobs
(gan.GanKnobs) and n, every are traced: a new value never recompiles (pass n and every as
int32, as the families do: a Python int is weakly typed, a different compile key).

Statistics (G = g_depth, D = d_depth; each as in gan.make_step; per step: (K,), a row: (K,) + shape):
  per step    d_loss g_loss d_real d_fake g_logit_grad w_estimate                              ()
              nonfinite: d_loss or g_loss non-finite, or at a measured step a gradient norm     () bool
  per row     step (the measured step's number, as in core.train's rows)                        () int32
              g_grad_norm g_delta_norm g_weight_norm g_update_ratio                             (G+1,)
              g_dead g_saturation                                                               (G,)
              d_grad_norm d_delta_norm d_weight_norm d_update_ratio spectral_norm               (D+1,)
              d_dead d_saturation                                                               (D,)
              critic_act_grad (row 0 the real batch, row 1 the fake one)                        (2, D)
              input_grad_norm (at the real, the fake and the interpolated points)               (3,)
  rows        the number of measured rows filled                                                () int32
Steps and rows past what ran are left zero (False for nonfinite), as in core.train's chunk: the
caller slices them off with n and out["rows"].
"""

import jax
import jax.numpy as jnp

from gradscope.core import gan
from gradscope.core.train import _packer

# gan.SCALAR_STATS but "step", which the rows carry (core.train's form: out["step"] numbers the rows)
PER_STEP_STATS = tuple(s for s in gan.SCALAR_STATS if s != "step") + ("nonfinite",)
ROW_STATS = ("step",) + tuple(s for s in gan.STAT_NAMES if s not in gan.SCALAR_STATS)
STAT_NAMES = PER_STEP_STATS + ROW_STATS
# measured once a call at its last measured row, NaN at the others (families.gan adds them): averaged over their finite values
SPARSE_STATS = ("modes_covered", "high_quality")


def step_key(key, step):
    """Step `step`'s key (gan.make_step's `key`): fold_in(key, step)."""
    return jax.random.fold_in(key, step)


def make_chunk(shape: gan.GanShape, spec: gan.GanSpec, steps: int):
    """Up to K = `steps` GAN steps in one loop, jitted (shape, spec and K baked in); the traced `n`
    says how many run (clipped to [0, K]) and the traced `every` which are measured: the steps
    (i+1) % every == 0 and the last one (i = n-1), `every` = 1 measuring every step (see
    core.train.make_chunk, whose loop and output form this is).

    Every step is gan.make_step's own (jitted there, traced into this program): the steps in
    between keep only its scalars and XLA drops the statistics' work as dead code. The statistics
    cost little beside the step itself: at width 128, batch 256, on 2 busy CPU cores, 64 steps
    took 0.27-0.31 s measuring the last one, 0.34-0.35 s measuring all, 0.57 s as 64 step calls."""
    if steps < 1:
        raise ValueError(f"a chunk runs at least one step, got steps={steps}")
    step = gan.make_step(shape, spec)
    keep = [s for s in PER_STEP_STATS if s != "nonfinite"]
    write = lambda buf, vals, i: jax.tree.map(lambda b, v: jax.lax.dynamic_update_index_in_dim(b, v, i, 0), buf, vals)

    def run(state, knobs, data, key):
        return step(state, knobs, data, step_key(key, state.step))

    def scalars_of(stats, measured):
        finite = jnp.isfinite(stats["d_loss"]) & jnp.isfinite(stats["g_loss"])
        if measured:  # a non-finite gradient with finite losses shows at a measured step (next step's losses otherwise)
            finite = finite & jnp.all(jnp.isfinite(stats["d_grad_norm"])) & jnp.all(jnp.isfinite(stats["g_grad_norm"]))
        return {**{s: stats[s] for s in keep}, "nonfinite": ~finite}

    def chunk(state: gan.GanState, knobs: gan.GanKnobs, data, key, n, every):
        n, every = jnp.clip(n, 0, steps), jnp.maximum(every, 1)
        example = jax.eval_shape(run, state, knobs, data, key)[1]
        pack, unpack = _packer({s: example[s] for s in ROW_STATS})
        zeros = lambda tree: jax.tree.map(lambda a: jnp.zeros((steps,) + a.shape, a.dtype), tree)
        per_step = zeros(jax.eval_shape(lambda st: scalars_of(st, False), example))
        rows = zeros(jax.eval_shape(lambda st: pack({s: st[s] for s in ROW_STATS}), example))

        def train_only(i, carry):
            s, per_step = carry
            s, stats = run(s, knobs, data, key)
            return s, write(per_step, scalars_of(stats, False), i)

        def group(j, carry):
            s, per_step, rows = carry
            last = jnp.minimum((j + 1) * every, n) - 1  # the measured step of row j
            s, per_step = jax.lax.fori_loop(j * every, last, train_only, (s, per_step))
            s, stats = run(s, knobs, data, key)
            return s, write(per_step, scalars_of(stats, True), last), write(rows, pack({r: stats[r] for r in ROW_STATS}), j)

        measured = (n + every - 1) // every
        state, per_step, rows = jax.lax.fori_loop(0, measured, group, (state, per_step, rows))
        return state, {**per_step, **unpack(rows), "rows": measured}

    return jax.jit(chunk)
