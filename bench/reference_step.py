"""The reference for the engine's speed: a minimal JAX MLP training step, nothing else.

Dense + sigmoid hidden layers stacked under `lax.scan` (as gradscope's are), softmax
cross-entropy, plain SGD, K steps per compiled call under `lax.scan`, each on a random
batch drawn like gradscope's (one key split and one gather per step). No statistics, no
live knobs, no BatchNorm/residual/dropout paths. bench_engine.py times it interleaved with
gradscope's chunk; the issue's goal is a ratio against this rate.
"""

import jax
import jax.numpy as jnp
import optax


def init(key, n_in, depth, width, classes):
    """Glorot-normal kernels, zero biases: first (n_in, W), hidden (D-1, W, W), out (W, C)."""
    glorot = jax.nn.initializers.glorot_normal()
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "first": (glorot(k1, (n_in, width)), jnp.zeros((width,))),
        "hidden": (jax.vmap(lambda k: glorot(k, (width, width)))(jax.random.split(k2, depth - 1)), jnp.zeros((depth - 1, width))),
        "out": (glorot(k3, (width, classes)), jnp.zeros((classes,))),
    }


def loss(params, x, y):
    w, b = params["first"]
    h = jax.nn.sigmoid(x @ w + b)
    h, _ = jax.lax.scan(lambda h, wb: (jax.nn.sigmoid(h @ wb[0] + wb[1]), None), h, params["hidden"])
    w, b = params["out"]
    return optax.softmax_cross_entropy_with_integer_labels(h @ w + b, y).mean()


def make_chunk(steps, batch, learning_rate=0.1):
    """chunk(params, key, x_all, y_all) -> ((params, key), losses (K,))."""
    def chunk(params, key, x_all, y_all):
        def step(carry, _):
            params, key = carry
            key, k_batch = jax.random.split(key)
            idx = jax.random.randint(k_batch, (batch,), 0, x_all.shape[0])
            value, grads = jax.value_and_grad(loss)(params, x_all[idx], y_all[idx])
            params = jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)
            return (params, key), value
        return jax.lax.scan(step, (params, key), None, length=steps)

    return chunk
