"""`monitor`: an optax gradient transformation that measures the user's own training step.

Wrap the optimizer of any JAX training loop (Flax linen or nnx, Equinox, plain dicts of
arrays) and the per-layer statistics of gradscope's built-in nets are computed inside the
user's jitted step, from the gradient, update and parameter pytrees::

    tx = gradscope.optax.monitor(optax.adam, learning_rate=1e-3, clip="global_norm", clip_value=1.0)

The statistics (`LAYER_STATS` per layer, `GLOBAL_STATS` once) are packed into one float32
array in the optimizer state (`MonitorState.stats`): one array leaves the device per step,
not one per statistic and layer. The learning rate and the clip threshold are state
(`optax.inject_hyperparams`), not constants baked into the compiled step, so a change made
on the page reaches the next update without a recompile (see `set_hyperparams`).

A layer is the parent of a parameter leaf in the pytree: `Dense_0` for a linen Dense's kernel
and bias, `layers/2` for an Equinox MLP's third Linear; a leaf at the top level is a layer of
its own. `grad_norm` is the norm over all of a layer's parameters (kernel and bias together).
"""
from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

# Per layer, one row each in the packed array (names shared with the built-in nets' statistics).
LAYER_STATS = ("grad_norm", "clipped_grad_norm", "weight_norm", "update_norm", "update_ratio", "nonfinite_count")
# Once per step, after the layer rows.
GLOBAL_STATS = ("global_grad_norm", "clipped_global_grad_norm", "nonfinite", "clip_fraction", "update")
# `update`: the index (from 0) of the optimizer update the statistics were measured at
# clip -> (optax factory, the name of its threshold argument)
CLIPS: dict[str, tuple[Callable, str]] = {
    "global_norm": (optax.clip_by_global_norm, "max_norm"),
    "value": (optax.clip, "max_delta"),
    "agc": (optax.adaptive_grad_clip, "clipping"),
}
KNOBS = ("learning_rate", "clip_value")  # what the page may change in a monitored run
_EPS = 1e-12


@functools.partial(jax.tree_util.register_dataclass, data_fields=["inner", "clip", "stats", "count"],
                   meta_fields=["layers", "every"])
@dataclasses.dataclass(frozen=True)
class MonitorState:
    inner: Any        # the wrapped optimizer's state (an inject_hyperparams state where monitor built it)
    clip: Any         # the clip's inject_hyperparams state (its threshold), or optax.EmptyState()
    stats: jax.Array  # float32 (len(LAYER_STATS) * layers + len(GLOBAL_STATS),): see `unpack`
    count: jax.Array  # int32: updates made so far
    layers: tuple[str, ...] = ()  # the layers' names, in the order of the packed rows (static: no array)
    every: int = 1  # measure every Nth update (static)

    def _replace(self, **changes) -> MonitorState:
        return dataclasses.replace(self, **changes)


# -- layer names ---------------------------------------------------------------------
def _component(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


_VALUE_FIELDS = {"value", "raw_value"}  # nnx keeps a Variable's array under one of these


def leaf_paths(tree) -> list[tuple[str, ...]]:
    """Each array leaf's path as strings, in flattening order (None leaves are not leaves)."""
    return [tuple(_component(k) for k in path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _layer_of(path: tuple[str, ...]) -> tuple[str, ...]:
    if path and path[-1] in _VALUE_FIELDS:  # nnx: .../kernel/value -> .../kernel
        path = path[:-1]
    return path[:-1] if len(path) > 1 else path


def _sort_key(layer: tuple[str, ...], stems: dict) -> tuple:
    """Each component ranked by where its stem (digits masked) first appeared under its parent,
    then by its numbers: `Dense_2` before `Dense_10`, and `encoder` still before `decoder`."""
    key = []
    for i, part in enumerate(layer):
        stem = re.sub(r"\d+", "#", part)
        key.append((stems.setdefault((layer[:i], stem), len(stems)), tuple(int(t) for t in re.findall(r"\d+", part))))
    return tuple(key)


def layer_groups(tree) -> tuple[list[str], np.ndarray]:
    """(layer names, the layer index of each leaf). Layers keep the pytree's order except that
    numbered siblings sort by number (dict keys flatten as strings: `Dense_10` before `Dense_2`);
    a prefix that every leaf shares (linen's `params`) is left out of the names."""
    layers = [_layer_of(p) for p in leaf_paths(tree)]
    if not layers:
        return [], np.zeros(0, np.int64)
    common = 0
    while all(len(ly) > common + 1 and ly[common] == layers[0][common] for ly in layers):
        common += 1
    while common and any(ly[common:] and ly[common].isdigit() for ly in layers):
        common -= 1  # keep `layers/0` rather than a bare `0`
    stems: dict = {}
    order = list(dict.fromkeys(layers))
    keys = {ly: _sort_key(ly, stems) for ly in order}
    ranked = sorted(order, key=keys.__getitem__)
    names = ["/".join(ly[common:]) for ly in ranked]
    index = {ly: i for i, ly in enumerate(ranked)}
    return names, np.array([index[ly] for ly in layers], np.int64)


def layer_names(params) -> list[str]:
    """The names of the layers `monitor` measures for `params`, in the order of its rows."""
    return layer_groups(params)[0]


# -- the statistics ----------------------------------------------------------------------
def _sq_sums(tree, index: np.ndarray, n: int) -> jax.Array:
    """Per layer, the sum of squares of its leaves (float32): one reduction per leaf, read in
    place (stacking same-shape leaves first copied them all and measured slower)."""
    sums = [jnp.sum(jnp.square(jnp.asarray(x, jnp.float32))) for x in jax.tree_util.tree_leaves(tree)]
    if not sums:
        return jnp.zeros((n,), jnp.float32)
    return jax.ops.segment_sum(jnp.stack(sums), jnp.asarray(index, jnp.int32), num_segments=n)


def _nonfinite_counts(tree, index: np.ndarray, n: int, sq_sums: jax.Array) -> jax.Array:
    """Per layer, its non-finite entries: counted only where a layer's sum of squares is not
    finite (a finite sum has none), so a healthy step pays no extra pass over the gradient."""
    def count():
        bad = [jnp.sum(~jnp.isfinite(x)).astype(jnp.float32) for x in jax.tree_util.tree_leaves(tree)]
        return jax.ops.segment_sum(jnp.stack(bad), jnp.asarray(index, jnp.int32), num_segments=n)
    if n == 0:
        return jnp.zeros((0,), jnp.float32)
    return jax.lax.cond(jnp.all(jnp.isfinite(sq_sums)), lambda: jnp.zeros((n,), jnp.float32), count)


def measure(grads, clipped, updates, params, index: np.ndarray, n: int, update_index) -> jax.Array:
    """The packed statistics of one step (see `unpack` for the layout)."""
    g2 = _sq_sums(grads, index, n)
    c2 = g2 if clipped is grads else _sq_sums(clipped, index, n)  # no clip: the same tree, not a second pass
    u2, w2 = _sq_sums(updates, index, n), _sq_sums(params, index, n)
    bad = _nonfinite_counts(grads, index, n, g2)
    w, u = jnp.sqrt(w2), jnp.sqrt(u2)
    layer = jnp.stack([jnp.sqrt(g2), jnp.sqrt(c2), w, u, u / (w + _EPS), bad])
    g_all, c_all = jnp.sqrt(jnp.sum(g2)), jnp.sqrt(jnp.sum(c2))
    # the share of the gradient that clipping took away (0: untouched)
    cut = jnp.where(g_all > 0, 1.0 - c_all / jnp.maximum(g_all, _EPS), 0.0)
    glob = jnp.stack([g_all, c_all, (jnp.sum(bad) > 0).astype(jnp.float32), cut, jnp.asarray(update_index, jnp.float32)])
    return jnp.concatenate([layer.reshape(-1), glob]).astype(jnp.float32)


def unpack(stats, layers: int) -> dict[str, np.ndarray]:
    """The packed array -> {name: per-layer array or scalar} (host side, numpy)."""
    a = np.asarray(stats, np.float64)
    k = len(LAYER_STATS)
    out = {name: a[i * layers:(i + 1) * layers] for i, name in enumerate(LAYER_STATS)}
    out.update({name: a[k * layers + j] for j, name in enumerate(GLOBAL_STATS)})
    # counts and flags: 0 before the first update (the state starts as NaN: nothing measured yet)
    out["nonfinite_count"] = np.nan_to_num(out["nonfinite_count"], nan=0.0).astype(np.int64)
    out["nonfinite"] = bool(np.nan_to_num(out["nonfinite"], nan=0.0))
    out["update"] = int(np.nan_to_num(out["update"], nan=-1.0))  # -1: nothing measured yet
    return out


# -- the transformation ----------------------------------------------------------------
def monitor(inner, *, clip: str | None = None, clip_value: float | None = None, every: int = 1,
            **hyperparams) -> optax.GradientTransformationExtraArgs:
    """Wrap an optimizer so that every update also measures the step.

    `inner`: an optax factory (`optax.adam`), called through `optax.inject_hyperparams` with
    `hyperparams` (`learning_rate=1e-3`, ...) so that they are state; or an optimizer already
    built (then its learning rate is reachable only if it was built with inject_hyperparams).
    `clip`: None or one of CLIPS ("global_norm", "value", "agc"), applied before `inner`
    with threshold `clip_value`; the statistics hold the gradient before and after it.
    `every`: measure every Nth update only (the others skip the statistics' passes over the
    gradient, update and parameters; `publish` sends each measurement once).
    `update` needs `params` (for the weight norms and update ratios)."""
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every: {every!r} must be an int >= 1 (measure every Nth update)")
    if clip is not None and clip not in CLIPS:
        raise ValueError(f"clip: {clip!r} is not one of {sorted(CLIPS)} (or None)")
    if clip is not None and clip_value is None:
        raise ValueError(f"clip_value: clip={clip!r} needs a threshold (clip_value=...)")
    if clip is None and clip_value is not None:
        raise ValueError("clip_value: given without a clip; pass clip='global_norm', 'value' or 'agc'")
    if isinstance(inner, optax.GradientTransformation):
        if hyperparams:
            raise ValueError(f"{', '.join(hyperparams)}: pass the factory (optax.adam), not a built optimizer, "
                             "to set hyperparameters through monitor")
        tx = inner
    else:
        tx = optax.inject_hyperparams(inner)(**hyperparams)
    if clip is None:
        clip_tx = optax.identity()
    else:
        factory, arg = CLIPS[clip]
        clip_tx = optax.inject_hyperparams(factory)(**{arg: clip_value})

    def init(params):
        names, _ = layer_groups(params)
        stats = jnp.full((len(LAYER_STATS) * len(names) + len(GLOBAL_STATS),), jnp.nan, jnp.float32)
        return MonitorState(tx.init(params), clip_tx.init(params), stats, jnp.zeros((), jnp.int32), tuple(names), every)

    def update(grads, state: MonitorState, params=None, **extra):
        if params is None:
            raise ValueError("params: gradscope's monitor measures weight norms and update ratios; "
                             "call tx.update(grads, state, params)")
        names, index = layer_groups(params)
        clipped, clip_state = clip_tx.update(grads, state.clip, params)
        updates, inner_state = tx.update(clipped, state.inner, params, **extra)
        def measured():
            return measure(grads, clipped, updates, params, index, len(names), state.count)
        if every == 1:
            stats = measured()
        else:
            stats = jax.lax.cond(state.count % every == 0, measured, lambda: state.stats)
        return updates, MonitorState(inner_state, clip_state, stats, state.count + 1, tuple(names), every)

    return optax.GradientTransformationExtraArgs(init, update)


# -- knobs: read and set the injected hyperparameters ----------------------------------------
def find_state(opt_state) -> MonitorState | None:
    """The MonitorState inside `opt_state` (the state itself, or nested in a chain's tuple)."""
    if isinstance(opt_state, MonitorState):
        return opt_state
    if isinstance(opt_state, tuple | list):
        for s in opt_state:
            found = find_state(s)
            if found is not None:
                return found
    return None


def _replace_state(opt_state, new: MonitorState):
    if isinstance(opt_state, MonitorState):
        return new
    if isinstance(opt_state, tuple | list):
        parts = [_replace_state(s, new) for s in opt_state]
        return type(opt_state)(*parts) if hasattr(opt_state, "_fields") else type(opt_state)(parts)
    return opt_state


def _clip_arg(state: MonitorState) -> str | None:
    hp = getattr(state.clip, "hyperparams", None)
    return next(iter(hp)) if hp else None


def hyperparams(opt_state) -> dict[str, float]:
    """The knobs a monitored run exposes, with their current values: `learning_rate` if the
    optimizer injects it, `clip_value` if monitor clips."""
    state = find_state(opt_state)
    if state is None:
        return {}
    out = {}
    inner_hp = getattr(state.inner, "hyperparams", None)
    if inner_hp and "learning_rate" in inner_hp and not callable(inner_hp["learning_rate"]):
        out["learning_rate"] = float(inner_hp["learning_rate"])
    arg = _clip_arg(state)
    if arg is not None:
        out["clip_value"] = float(state.clip.hyperparams[arg])
    return out


def set_hyperparams(opt_state, changes: dict[str, float]):
    """`opt_state` with the knobs in `changes` set (same dtypes; nothing recompiles). An unknown
    or unexposed knob is a ValueError naming it and the ones this run has."""
    state = find_state(opt_state)
    have = hyperparams(opt_state)
    for name, value in changes.items():
        if name not in have:
            raise ValueError(f"{name}: this run exposes {sorted(have) or 'no knobs'} (monitor(optax.adam, "
                             "learning_rate=...) exposes the learning rate; clip=... the clip threshold)")
        if not (isinstance(value, int | float) and np.isfinite(value) and value >= 0):
            raise ValueError(f"{name}: {value!r} is not a finite number >= 0")
    inner, clip = state.inner, state.clip
    if "learning_rate" in changes:
        hp = dict(inner.hyperparams)
        hp["learning_rate"] = jnp.asarray(changes["learning_rate"], jnp.asarray(hp["learning_rate"]).dtype)
        inner = inner._replace(hyperparams=hp)
    if "clip_value" in changes:
        arg = _clip_arg(state)
        hp = dict(clip.hyperparams)
        hp[arg] = jnp.asarray(changes["clip_value"], jnp.asarray(hp[arg]).dtype)
        clip = clip._replace(hyperparams=hp)
    return _replace_state(opt_state, state._replace(inner=inner, clip=clip))
