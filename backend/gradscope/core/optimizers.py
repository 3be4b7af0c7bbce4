"""Gradient clipping and the optimizers, as one optax chain per optimizer:

    optax.chain(clip, optax.inject_hyperparams(OPTIMIZERS[name])(learning_rate=...))

`clip` is itself `inject_hyperparams(clip_by_mode)(clip_value=...)`. The live knobs, the
learning rate and the clip threshold, are hyperparameters held in the optimizer state:
each chunk writes the knobs' values into them as it starts (`feed`), so a new value is a
state update inside the compiled chunk, never a retrace. The clip mode is the one knob
that changes the computation: it is a Python constant in a build for its value and a
traced int32 (`ClipMode.index`) in the generic build, and not part of the state, so the
state has the same structure whatever the mode.
"""

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class ClipMode(enum.StrEnum):
    """How the gradient is clipped before the optimizer sees it. Its traced form (the
    `clip_mode` knob, Spec.clip_mode) is `index`, the position in this order."""

    NONE = "none"
    VALUE = "value"  # each entry to [-clip_value, clip_value] (optax.clip)
    NORM = "norm"  # the whole gradient to global norm <= clip_value (optax.clip_by_global_norm)
    # unit-wise: each unit's gradient norm to <= clip_value * its weight norm (optax.adaptive_grad_clip;
    # Brock et al. 2021, NF-Nets). A unit is an output unit of a kernel (a conv's output channel), a
    # bias or scalar whole; where a family stacks layers in one array, its `unit_axes` says so.
    AGC = "agc"

    @property
    def index(self) -> int:
        return _ORDER.index(self)

    @classmethod
    def from_index(cls, index: int) -> "ClipMode":
        return _ORDER[int(index)]


_ORDER = tuple(ClipMode)
CLIP_MODES = tuple(m.value for m in ClipMode)  # the names, in index order (config's Literal)


def fixed_mode(mode) -> ClipMode | None:
    """The mode as a ClipMode where it is a constant (a ClipMode, its name or its index),
    None where it is traced (an array: any mode, chosen at run time)."""
    if isinstance(mode, ClipMode):
        return mode
    if isinstance(mode, str):
        return ClipMode(mode)
    if isinstance(mode, int):  # bool excluded by the caller's types: Spec and knobs give int
        return ClipMode.from_index(mode)
    return None


def adaptive_clip(clip_value, grads, params, unit_axes=None):
    """optax.adaptive_grad_clip(clip_value) applied leaf by leaf, each leaf's units reduced over
    `unit_axes(path)` (a jax key path -> axes; None: optax's default for the leaf's rank)."""
    def leaf(path, g, p):
        axis = None if unit_axes is None else unit_axes(path)
        agc = optax.adaptive_grad_clip(clip_value, axis=axis)
        return agc.update(g, agc.init(p), p)[0]
    return jax.tree_util.tree_map_with_path(leaf, grads, params)


def clip_by_mode(clip_value, mode, unit_axes=None) -> optax.GradientTransformation:
    """optax's clip (by value), clip_by_global_norm or adaptive_grad_clip, or none, as `mode`
    says: one of them where the mode is a constant (fixed_mode), else a traced choice among all.
    `unit_axes`: AGC's units per leaf (see adaptive_clip; a family whose arrays stack layers).

    The traced choice is a select rather than lax.switch: the clips are elementwise or
    per-unit reductions, so XLA fuses them into few passes, where a conditional would
    materialize every gradient buffer. With mode NONE the gradient itself comes back (the same object)."""
    by_value, by_norm = optax.clip(clip_value), optax.clip_by_global_norm(clip_value)

    def update(grads, state, params=None):
        const = fixed_mode(mode)
        if const is ClipMode.NONE:
            return grads, state
        if const is ClipMode.VALUE:
            return by_value.update(grads, state, params)
        if const is ClipMode.NORM:
            return by_norm.update(grads, state, params)
        if const is ClipMode.AGC:
            return adaptive_clip(clip_value, grads, params, unit_axes), state
        v, n = by_value.update(grads, state, params)[0], by_norm.update(grads, state, params)[0]
        a = grads if params is None else adaptive_clip(clip_value, grads, params, unit_axes)  # no weights: agc not on offer
        pick = lambda g, v, n, a: jnp.where(mode == ClipMode.VALUE.index, v, jnp.where(
            mode == ClipMode.NORM.index, n, jnp.where(mode == ClipMode.AGC.index, a, g)))
        return jax.tree.map(pick, grads, v, n, a), state

    # clip and clip_by_global_norm keep no state: the same (empty) one as theirs
    return optax.GradientTransformation(by_value.init, update)


def clip_gradients(grads, knobs, params=None, unit_axes=None):
    """The gradient clipped as the knobs say (clip_mode, clip_value): clip_by_mode's transform
    applied once, from its initial (empty) state. `params`: the weights, which AGC reads
    (required for mode agc; a traced mode without them cannot pick agc)."""
    clip = clip_by_mode(knobs.clip_value, knobs.clip_mode, unit_axes)
    return clip.update(grads, clip.init(grads), params)[0]


def clip_effect(grads, clipped):
    """Cosine between the raw and the clipped gradient (1 when nothing changed), and the
    fraction of entries that clipping changed (NaN entries do not count as changed)."""
    g, c = jax.tree.leaves(grads), jax.tree.leaves(clipped)
    dot = sum(jnp.vdot(a, b) for a, b in zip(g, c, strict=True))
    changed = sum(jnp.sum((a != b) & ~jnp.isnan(a)) for a, b in zip(g, c, strict=True))
    total = sum(a.size for a in g)
    cosine = jnp.where(changed == 0, 1.0, dot / (optax.tree.norm(grads) * optax.tree.norm(clipped)))
    return cosine, changed / total


# Each a factory of its learning rate alone (the one hyperparameter injected: the others
# stay constants of the executable).
OPTIMIZERS = {
    "sgd": lambda learning_rate: optax.sgd(learning_rate),
    "momentum": lambda learning_rate: optax.sgd(learning_rate, momentum=0.9),
    "adam": lambda learning_rate: optax.adam(learning_rate),
    "rmsprop": lambda learning_rate: optax.rmsprop(learning_rate),
}
OPTIMIZER_NAMES = tuple(OPTIMIZERS)


def _fed(state, **values):
    """An InjectHyperparamsState with `values` written into its hyperparams (same dtypes)."""
    hyper = dict(state.hyperparams)
    for name, value in values.items():
        hyper[name] = jnp.asarray(value, hyper[name].dtype)
    return state._replace(hyperparams=hyper)


def feed(opt_state, knobs):
    """The chain's state with the live knobs (learning_rate, clip_value) written into its
    injected hyperparameters: done inside the compiled chunk, once at its start (the knobs
    are the chunk's arguments, constant through it), so a new value is a state update,
    never a retrace. Once per chunk rather than per step: written in the loop, the values
    became loop-carried state that XLA could not drop (~5% of a step at width 64 with
    momentum and value clipping, bench/); carried through unchanged, they are."""
    clip_state, inner_state = opt_state
    return _fed(clip_state, clip_value=knobs.clip_value), _fed(inner_state, learning_rate=knobs.learning_rate)


def advance(opt_state, steps):
    """The chain's state with both wrappers' step counts advanced by `steps` updates
    (saturating at the dtype's maximum, as optax's own increment)."""
    def count(c):
        top = jnp.iinfo(c.dtype).max
        steps_ = jnp.maximum(jnp.asarray(steps, c.dtype), 0)
        return jnp.where(c > top - steps_, top, c + steps_)
    return tuple(link._replace(count=count(link.count)) for link in opt_state)


class Optimizer(NamedTuple):
    """The two links of the chain, kept apart so that a step can read the clipped gradient
    (the first link's output) for its statistics. `chain` is what they make together; its
    state, a (clip state, optimizer state) pair, is the one stored in TrainState.opt_state."""

    clip: optax.GradientTransformationExtraArgs
    inner: optax.GradientTransformationExtraArgs

    @property
    def chain(self) -> optax.GradientTransformationExtraArgs:
        return optax.chain(self.clip, self.inner)

    def init(self, params):
        return self.chain.init(params)

    def update(self, grads, opt_state, params):
        """(clipped, updates, opt_state): chain.update, link by link, with the hyperparameters
        the state holds (see `feed`). `updates` already carry the learning rate and the
        sign: params + updates is the step.

        The two wrappers' step counts (inject_hyperparams' own, read by no schedule here;
        the optimizers' counts, Adam's, advance as usual) are left as they were: the chunk
        advances them by its number of steps at its end (`advance`). Advanced in the loop,
        a carried counter cost ~6% of a step at width 64 with momentum, where the state had
        none before (bench/, measured against the pre-chain formulation)."""
        clip_state, inner_state = opt_state
        clipped, new_clip = self.clip.update(grads, clip_state, params)
        updates, new_inner = self.inner.update(clipped, inner_state, params)
        return clipped, updates, (new_clip._replace(count=clip_state.count), new_inner._replace(count=inner_state.count))


def make_optimizer(name: str, clip_mode=ClipMode.NONE, unit_axes=None) -> Optimizer:
    """The chain for optimizer `name` with clipping `clip_mode`: a ClipMode (or its name or
    index) for a build with that mode, the traced knob for a build with any. The initial
    hyperparameters (1.0) are placeholders: every chunk feeds the knobs' values first.
    `unit_axes`: AGC's units where a family's arrays stack layers (adaptive_clip).
    The state's structure does not depend on `clip_mode`."""
    clip = optax.inject_hyperparams(clip_by_mode, static_args=("mode", "unit_axes"))(clip_value=1.0, mode=clip_mode,
                                                                                       unit_axes=unit_axes)
    return Optimizer(clip, optax.inject_hyperparams(OPTIMIZERS[name])(learning_rate=1.0))
