"""The clip mode as a type, and the optimizer chain: optax.chain(clip, inject_hyperparams(opt)),
with the live knobs (learning rate, clip threshold) fed into its state every step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradscope.core.optimizers import CLIP_MODES, OPTIMIZERS, ClipMode, advance, clip_gradients, feed, fixed_mode, make_optimizer
from gradscope.core.train_rnn import RnnKnobs

PARAMS = {"a": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array([[0.3, -0.7]])}
GRADS = [{"a": jnp.array([3.0, -0.2, 0.7]), "b": jnp.array([[-5.0, 0.1]])},
         {"a": jnp.array([-0.4, 0.05, 1.5]), "b": jnp.array([[2.0, -0.3]])},
         {"a": jnp.array([0.1, -0.2, 0.3]), "b": jnp.array([[0.02, 0.01]])}]


def knobs(mode, lr=0.1, clip=0.5):
    return RnnKnobs(np.float32(0.01), np.int32(ClipMode(mode).index), np.float32(clip), np.float32(lr), np.float32(0), np.float32(0))


def test_clip_mode_is_one_enum_with_names_and_indices():
    assert CLIP_MODES == ("none", "value", "norm", "agc")
    assert [m.index for m in ClipMode] == [0, 1, 2, 3]
    for i, name in enumerate(CLIP_MODES):
        mode = ClipMode(name)
        assert mode == name and str(mode) == name and ClipMode.from_index(i) is mode
        assert fixed_mode(name) is fixed_mode(i) is fixed_mode(mode) is mode
    assert fixed_mode(np.int32(1)) is None and fixed_mode(jnp.int32(1)) is None  # arrays: traced, any mode


def old_step(name, grads, state, k):
    """The formulation before the chain: the optimizer at learning rate 1, clipped outside
    it, the update scaled by the knob afterwards (exact: the four are linear in it)."""
    opt = {"sgd": lambda: optax.sgd(1.0), "momentum": lambda: optax.sgd(1.0, momentum=0.9),
           "adam": lambda: optax.adam(1.0), "rmsprop": lambda: optax.rmsprop(1.0)}[name]()
    state = opt.init(PARAMS) if state is None else state
    updates, state = opt.update(clip_gradients(grads, k, PARAMS), state, PARAMS)
    return jax.tree.map(lambda u: k.learning_rate * u, updates), state


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("mode", CLIP_MODES)
def test_chain_gives_the_updates_of_the_old_formulation(name, mode):
    """Three steps, the learning rate and threshold changed between them; both the build for
    the mode (a constant) and the generic one (traced) against the old formulation."""
    for build_mode in (ClipMode(mode), None):
        new_state, old_state = make_optimizer(name).init(PARAMS), None
        for i, (lr, clip) in enumerate([(0.1, 0.5), (0.02, 2.0), (0.3, 0.05)]):
            k = knobs(mode, lr, clip)
            opt = make_optimizer(name, k.clip_mode if build_mode is None else build_mode)
            clipped, updates, new_state = opt.update(GRADS[i], feed(new_state, k), PARAMS)
            want, old_state = old_step(name, GRADS[i], old_state, k)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9), updates, want)
            jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), clipped, clip_gradients(GRADS[i], k, PARAMS))
            clip_state, inner_state = new_state
            assert float(clip_state.hyperparams["clip_value"]) == np.float32(clip)
            assert float(inner_state.hyperparams["learning_rate"]) == np.float32(lr)


def test_agc_is_optax_adaptive_grad_clip():
    """Mode agc, built for it and traced, clips as optax.adaptive_grad_clip does (units: a kernel's
    output units, a vector whole), and leaves a gradient below the threshold alone."""
    params = {"w": jnp.array([[1.0, -2.0], [0.5, 0.1]]), "b": jnp.array([0.2, -0.1]), "k": jnp.ones((3, 3, 2, 4)) * 0.1}
    grads = {"w": jnp.array([[3.0, 0.01], [-4.0, 0.02]]), "b": jnp.array([0.5, 0.5]), "k": jnp.arange(72.0).reshape(3, 3, 2, 4) / 72}
    agc = optax.adaptive_grad_clip(0.1)
    want = agc.update(grads, agc.init(params), params)[0]
    for mode in (ClipMode.AGC, np.int32(ClipMode.AGC.index)):
        got = clip_gradients(grads, knobs("agc", clip=0.1)._replace(clip_mode=mode), params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
    assert float(want["w"][0, 1]) == pytest.approx(0.01)  # the second unit's norm is under 0.1 x its weight norm
    assert float(jnp.linalg.norm(want["w"][:, 0])) == pytest.approx(0.1 * float(jnp.linalg.norm(params["w"][:, 0])), rel=1e-5)
    # the MLP's stacked hidden kernels: one unit per layer and output unit
    from gradscope.core.network import unit_axes
    hidden = {"hidden": {"w": jnp.stack([params["w"], 10 * params["w"]])}}
    got = clip_gradients({"hidden": {"w": jnp.stack([grads["w"], grads["w"]])}}, knobs("agc", clip=0.1), hidden, unit_axes)
    np.testing.assert_allclose(got["hidden"]["w"][0], want["w"], rtol=1e-6)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_the_pieces_are_the_chain(name):
    """Optimizer.update is chain.update link by link: the same updates and state, `feed`
    having written the knobs into the hyperparameters, once `advance` has counted the step."""
    opt = make_optimizer(name, ClipMode.NORM)
    state = opt.init(PARAMS)
    _, updates, mine = opt.update(GRADS[0], feed(state, knobs("norm", 0.2, 0.5)), PARAMS)
    clip_state, inner_state = state
    fed = (clip_state._replace(hyperparams={"clip_value": jnp.float32(0.5)}),
           inner_state._replace(hyperparams={"learning_rate": jnp.float32(0.2)}))
    want, theirs = opt.chain.update(GRADS[0], fed, PARAMS)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), (updates, advance(mine, 1)), (want, theirs))
    assert [int(link.count) for link in advance(theirs, 41)] == [42, 42]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_structure_is_the_same_for_every_clip_mode(name):
    """One TrainState serves the generic build and the builds for each mode."""
    structures = {str(jax.tree.structure(make_optimizer(name, m).init(PARAMS))) for m in (*ClipMode, jnp.int32(0))}
    assert len(structures) == 1
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(make_optimizer(name).init(PARAMS)))


def test_a_new_learning_rate_or_threshold_is_a_state_update_not_a_retrace():
    traces = []

    @jax.jit
    def step(state, k):
        traces.append(1)
        _, updates, state = make_optimizer("adam", k.clip_mode).update(GRADS[0], feed(state, k), PARAMS)
        return updates, state

    state = make_optimizer("adam").init(PARAMS)
    for mode, lr, clip in [("norm", 0.1, 0.5), ("norm", 0.01, 3.0), ("value", 1.0, 0.1), ("none", 0.5, 0.5)]:
        _, state = step(state, knobs(mode, lr, clip))
        assert float(state[1].hyperparams["learning_rate"]) == np.float32(lr)
    assert len(traces) == 1


@pytest.mark.parametrize("config", [dict(depth=2, width=8, batch_size=16, optimizer="momentum", clip_mode="value"),
                                    dict(model="rnn", dataset="adding", depth=1, width=8, seq_len=8, batch_size=8, optimizer="adam",
                                         clip_mode="norm", activation="tanh", init="glorot_normal"),
                                    dict(depth=3, width=8, batch_size=16, optimizer="adam", clip_mode="agc", batchnorm=True),
                                    dict(model="lstm", dataset="adding", depth=1, width=8, seq_len=8, batch_size=8, clip_mode="agc")],
                         ids=["mlp-value", "rnn-norm", "mlp-agc", "lstm-agc"])
def test_a_chunk_leaves_the_knobs_and_its_step_count_in_the_state(config):
    from gradscope.engine import CompileCache, Trainer

    tr = Trainer(dict(config, learning_rate=0.03, clip_value=0.7), cache=CompileCache(background=False))
    tr.run(5)
    tr.update({"learning_rate": 0.01, "clip_value": 2.0})
    tr.run(4)
    clip_state, inner_state = tr.state.opt_state
    assert float(clip_state.hyperparams["clip_value"]) == np.float32(2.0)
    assert float(inner_state.hyperparams["learning_rate"]) == np.float32(0.01)
    assert int(clip_state.count) == int(inner_state.count) == tr.step == 9
