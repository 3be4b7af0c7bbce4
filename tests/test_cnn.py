"""The CNN family against independent computations: its per-layer gradient norms against jax.grad
through a reference net written here (and a finite difference), channel_grad_norm against numpy,
the conv initializers' fan-in, the signal-propagation theory at initialization, its datasets and
its config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradscope.config import ConfigError, make_config
from gradscope.core import images
from gradscope.core.cnn import CnnShape, blocks, forward, init_bn_state, init_params, plan, unit_ends
from gradscope.core.initializers import kernel_variance
from gradscope.core.network import Knobs
from gradscope.core.optimizers import ClipMode, feed
from gradscope.core.train import GENERIC, Spec
from gradscope.core.train_cnn import init_state, make_step

F = np.float32


def knobs(batchnorm=False, residual=False, clip_mode="none", clip_value=1.0, lr=0.1):
    return Knobs(F(0.01), np.bool_(batchnorm), np.bool_(residual), np.int32(ClipMode(clip_mode).index), F(clip_value), F(lr),
                 F(0), F(0), F(0))


def reference_loss(params, eps, x, y, act, batchnorm, residual, skip_init, strides, pairs):
    """The net as its docstring writes it, with additive probes eps_l at z_l (and the logits):
    plain conv -> BN -> act per layer; residual blocks over `pairs` (layer lists), pre-activation."""
    phi = {"tanh": jnp.tanh, "relu": jax.nn.relu}[act]
    ends = {p[-1]: (i, p[0]) for i, p in enumerate(pairs)}
    h, streams = x, []
    for l, (layer, bn) in enumerate(zip(params["conv"], params["bn"], strict=True)):
        u = jax.lax.conv_general_dilated(h, layer["w"], (strides[l],) * 2, "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + layer["b"]
        s = u
        if residual and l in ends:
            i, first = ends[l]
            skip = streams[first - 1]
            if str(i) in params["proj"]:
                stride = int(np.prod(strides[first:l + 1]))
                skip = jax.lax.conv_general_dilated(skip, params["proj"][str(i)]["w"], (stride,) * 2, "SAME",
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
            s = skip + (params["skip"][i] * u if skip_init else u)
        streams.append(s)
        z = s
        if batchnorm:
            mu, var = s.mean((0, 1, 2)), s.var((0, 1, 2))
            z = bn["gamma"] * (s - mu) / jnp.sqrt(var + 1e-5) + bn["beta"]
        h = phi(z + eps[l])
    logits = h.mean((1, 2)) @ params["out"]["w"] + params["out"]["b"] + eps[-1]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def measured_row(shape, act, init, k, x, y, seed=0, params=None, generic=False):
    """One measured step of the shipping code on the batch x, y (the held-out image: x[0]), built
    for the knobs' values (smaller programs, faster compiles) or, `generic`, for any (all traced)."""
    params = init_params(jax.random.PRNGKey(seed), shape, init, 1.0) if params is None else params
    state = init_state(jax.random.PRNGKey(1), params, shape, "sgd")
    state = state._replace(opt_state=feed(state.opt_state, k))
    draw = {"idx": jnp.arange(x.shape[0]), "drop": jax.random.PRNGKey(2)}
    spec = GENERIC if generic else Spec(bool(k.batchnorm), bool(k.residual), False, int(k.clip_mode), False, False)
    _, scalars, row = jax.jit(make_step(act, "sgd", shape, spec))(state, k, x, y, x[:1], y[:1], draw)
    return params, scalars, jax.device_get(row)


CASES = [  # (shape, act, batchnorm, residual, skip_init)
    (CnnShape(8, 1, 3, 4, 1, 10, 6, False), "tanh", False, False),
    (CnnShape(8, 1, 4, 4, 2, 10, 6, False), "relu", True, False),
    (CnnShape(8, 1, 5, 4, 2, 10, 6, False), "tanh", False, True),
    (CnnShape(8, 1, 4, 4, 2, 10, 6, True), "relu", True, True),
]


@pytest.fixture(scope="module")
def digits():
    x, y = images.load("digits", noise=0.0)
    return jnp.asarray(x[:6]), jnp.asarray(y[:6])


@pytest.mark.parametrize("shape, act, batchnorm, residual", CASES, ids=["plain", "bn-stages", "residual-stages", "skipinit-bn"])
def test_layer_norms_are_jax_grads_of_an_independent_net(shape, act, batchnorm, residual, digits):
    x, y = digits
    params = init_params(jax.random.PRNGKey(0), shape, "glorot_normal", 1.0)
    if shape.skip_init:  # gains away from 0, so that every branch carries a gradient
        params["skip"] = jnp.linspace(0.5, 1.5, params["skip"].shape[0])
    generic = shape.depth == 5  # the traced build (every knob a run-time choice) once, the builds for the values otherwise
    _, scalars, row = measured_row(shape, act, "glorot_normal", knobs(batchnorm, residual), x, y, params=params, generic=generic)
    layers = plan(shape)
    eps = [jnp.zeros((6, L.side, L.side, L.c_out)) for L in layers] + [jnp.zeros((6, shape.classes))]
    pairs = [list(range(b.first, b.last + 1)) for b in blocks(shape)[1:]]
    args = (x, y, act, batchnorm, residual, shape.skip_init, [L.stride for L in layers], pairs)
    loss, (g_params, g_eps) = jax.value_and_grad(reference_loss, argnums=(0, 1))(params, eps, *args)
    assert float(scalars["loss"]) == pytest.approx(float(loss), rel=1e-5)
    kernels = [c["w"] for c in g_params["conv"]] + [g_params["out"]["w"]]
    np.testing.assert_allclose(row["grad_norm"], [float(jnp.linalg.norm(g)) for g in kernels], rtol=2e-4)
    np.testing.assert_allclose(row["delta_norm"], [float(jnp.linalg.norm(e)) for e in g_eps], rtol=2e-4)
    np.testing.assert_allclose(row["global_grad_norm"], float(optax.tree.norm(g_params)), rtol=2e-4)
    # channel_grad_norm: numpy over each output channel's (3, 3, c_in) kernel, NaN past a layer's channels
    width = max(L.c_out for L in layers)
    want = np.full((shape.depth, width), np.nan)
    for l, g in enumerate(kernels[:-1]):
        g = np.asarray(g, np.float64)
        want[l, : g.shape[-1]] = np.sqrt((g**2).sum(axis=(0, 1, 2)))
    np.testing.assert_allclose(row["channel_grad_norm"], want, rtol=2e-4)
    assert np.isnan(row["channel_grad_norm"]).sum() == np.isnan(want).sum()


def test_grad_norm_is_the_directional_derivative_along_the_gradient(digits):
    """A finite difference: moving layer l's kernel by h along its unit gradient changes the loss by h ||dL/dW_l||."""
    x, y = digits
    shape, act = CASES[0][:2]
    params, _, row = measured_row(shape, act, "glorot_normal", knobs(), x, y)
    k = knobs()
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        forward(act, p, init_bn_state(shape), x, k, shape, train=True)[0], y).mean()
    grads = jax.grad(loss)(params)
    h = 1e-2
    def moved(l, sign):
        g = grads["conv"][l]["w"]
        conv = [{**c, "w": c["w"] + sign * h * g / jnp.linalg.norm(g)} if i == l else c for i, c in enumerate(params["conv"])]
        return {**params, "conv": conv}

    for l in range(shape.depth):
        fd = (float(loss(moved(l, 1))) - float(loss(moved(l, -1)))) / (2 * h)
        assert fd == pytest.approx(float(row["grad_norm"][l]), rel=2e-2), l


@pytest.mark.parametrize("init", ["he_normal", "lecun_normal", "glorot_normal", "glorot_uniform", "he_uniform"])
def test_conv_initializers_read_fan_in_as_k_k_c_in(init):
    """jax.nn.initializers take HWIO's receptive field into both fans: fan_in = 3*3*c_in, fan_out = 3*3*c_out."""
    shape = CnnShape(8, 1, 2, 64, 2, 10, 4, False)  # layer 1: 64 -> 128 channels, 3x3
    w = np.asarray(init_params(jax.random.PRNGKey(3), shape, init, 1.0)["conv"][1]["w"])
    assert w.shape == (3, 3, 64, 128)
    assert w.var() == pytest.approx(kernel_variance(init, 9 * 64, 9 * 128), rel=0.03)


def spp_at_init(shape, k, act="relu", init="he_normal", batch=128):
    x, _ = images.load("shapes", noise=0.1)
    params = init_params(jax.random.PRNGKey(0), shape, init, 1.0)
    _, aux = forward(act, params, init_bn_state(shape), jnp.asarray(x[:batch]), k, shape, train=True, measure=True)
    spp = np.asarray(aux["spp"])
    return spp[unit_ends(shape)]  # (units, 3): the stem, then each block's end


def test_signal_propagation_at_init_follows_the_theory():
    """Brock, De & Smith 2021 (their Figure 1): an unnormalized pre-activation residual net under He
    init doubles its variance per block; with BatchNorm the growth is linear (each branch adds about
    the same); with SkipInit every block starts as the identity (flat)."""
    shape = CnnShape(16, 1, 13, 16, 1, 4, 128, False)  # the stem and 6 blocks
    var = spp_at_init(shape, knobs(residual=True))[:, 1]
    growth = var[1:] / var[:-1]
    assert 1.6 < np.exp(np.log(growth).mean()) < 2.5, growth
    bn = spp_at_init(shape, knobs(batchnorm=True, residual=True))
    line = np.polyval(np.polyfit(np.arange(len(bn)), bn[:, 1], 1), np.arange(len(bn)))
    assert (np.diff(bn[:, 1]) > 0).all() and bn[-1, 1] / bn[0, 1] < 4, bn[:, 1]  # doubling would be 64x
    np.testing.assert_allclose(bn[:, 1], line, rtol=0.2)
    np.testing.assert_allclose(bn[1:, 2], bn[1:, 2].mean(), rtol=0.3)  # each branch's end: about the same variance
    flat = spp_at_init(shape._replace(skip_init=True), knobs(residual=True))[:, 1]
    np.testing.assert_allclose(flat, flat[0], rtol=1e-5)


def test_spp_is_per_unit_in_a_residual_net_and_per_layer_in_a_plain_one(digits):
    x, y = digits
    shape = CASES[2][0]
    for residual in (False, True):
        _, _, row = measured_row(shape, "tanh", "he_normal", knobs(residual=residual), x, y, generic=True)  # one build, both values
        inside = np.isnan(row["spp_var"])
        assert list(inside) == ([False] * shape.depth if not residual else list(~unit_ends(shape)))
        if not residual:
            np.testing.assert_allclose(row["spp_res_var"], row["spp_var"], rtol=1e-6)  # no skip: the branch is the output


def test_input_grad_is_the_saliency_of_the_first_held_out_image(digits):
    x, y = digits
    shape, act = CASES[1][:2]
    params, _, row = measured_row(shape, act, "he_normal", knobs(batchnorm=True), x, y)
    k = knobs(batchnorm=True)
    loss = lambda im: optax.softmax_cross_entropy_with_integer_labels(
        forward(act, params, init_bn_state(shape), im[None], k, shape, train=False)[0], y[:1]).mean()
    np.testing.assert_allclose(row["input_grad"], np.asarray(jax.grad(loss)(x[0]))[..., 0], rtol=1e-4, atol=1e-7)
    assert row["input_grad"].shape == (8, 8)


def test_agc_clips_each_output_channel_to_its_share_of_the_weight_norm(digits):
    x, y = digits
    shape = CASES[0][0]
    _, _, row = measured_row(shape, "tanh", "glorot_normal", knobs(clip_mode="agc", clip_value=1e-3), x, y)
    assert row["clip_fraction"] > 0.5
    ratio = row["clipped_grad_norm"] / row["weight_norm"]
    assert (ratio <= 1e-3 * 1.0001).all()  # every unit at most 1e-3 of its norm: so is the layer


def test_shapes_dataset_is_made_from_the_seed_with_four_classes():
    x, y = images.load("shapes", noise=0.1, seed=4)
    assert x.shape == (images.SHAPES_SAMPLES, 16, 16, 1) and x.dtype == np.float32
    assert sorted(set(y.tolist())) == [0, 1, 2, 3] and min(np.bincount(y)) > 400
    assert abs(float(x.mean())) < 1e-4 and float(x.std()) == pytest.approx(1.0, rel=1e-3)
    x2, _ = images.load("shapes", noise=0.1, seed=4)
    np.testing.assert_array_equal(x, x2)
    assert images.load("digits")[0].shape == (1797, 8, 8, 1)


@pytest.mark.parametrize("values, field", [
    ({"depth": 101}, "depth"), ({"width": 2}, "width"), ({"width": 256}, "width"), ({"stages": 3, "depth": 2}, "stages"),
    ({"dataset": "spirals"}, "dataset"), ({"activation": "prelu"}, "activation"), ({"init": "identity"}, "init"),
    ({"depth": 100, "width": 128, "batch_size": 512, "dataset": "shapes"}, "depth"), ({"stages": 4}, "stages"),
])
def test_bad_cnn_configs_name_their_field(values, field):
    with pytest.raises(ConfigError) as info:
        make_config({"model": "cnn", "dataset": "digits", **values})
    assert info.value.field == field, info.value


def test_cnn_config_defaults_validate_and_refuse_the_other_models_keys():
    c = make_config({"model": "cnn", "dataset": "shapes", "stages": 3, "skip_init": True})
    assert c.depth == 10 and c.stages == 3 and c.skip_init
    with pytest.raises(ConfigError) as info:
        make_config({"model": "cnn", "dataset": "shapes", "seq_len": 7, "input_dim": 5})
    assert sorted((e["field"], e["message"]) for e in info.value.as_dicts()) == [
        ("input_dim", "the CNN does not take input_dim (MLP does)"), ("seq_len", "the CNN does not take seq_len (RNN, LSTM, GRU do)")]


def test_a_cnn_trains_and_its_knobs_are_live():
    from gradscope.engine import CompileCache, Trainer

    tr = Trainer({"model": "cnn", "dataset": "shapes", "depth": 3, "width": 4, "batch_size": 16, "activation": "relu",
                  "init": "he_normal", "learning_rate": 0.05}, cache=CompileCache(background=False))
    first = tr.run(40)
    for change in ({"batchnorm": True}, {"residual": True}, {"clip_mode": "agc", "clip_value": 0.05}, {"dropout": 0.2}):
        assert tr.update(change)["kind"] == "live"
        rows = tr.run(4)
        assert np.isfinite(rows["loss"]).all() and rows["input_grad"].shape == (4, 16, 16)
    assert np.mean(first["loss"][-10:]) < np.mean(first["loss"][:10])
    assert tr.evaluate(held_out=True)["accuracy"] > 0


def test_http_answers_a_cnn_config_that_does_not_fit_with_422_naming_the_field(client):
    bad = (({"model": "cnn", "dataset": "spirals"}, "dataset"), ({"model": "cnn", "dataset": "digits", "stages": 3, "depth": 2}, "stages"),
           ({"model": "cnn", "dataset": "shapes", "width": 512}, "width"), ({"model": "mlp", "skip_init": True}, "skip_init"))
    for body, field in bad:
        r = client.post("/api/sessions", json={**body, "paused": True})
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == field, r.text
    r = client.post("/api/sessions", json={"model": "cnn", "dataset": "shapes", "depth": 2, "width": 4, "batch_size": 8, "paused": True})
    assert r.status_code == 201, r.text
