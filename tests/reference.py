"""An independent numpy implementation of the MLP's forward and backward pass.

Written from the equations, not from gradscope's code: delta_{l-1} = (W_l^T delta_l) * phi'(z_{l-1}),
dL/dW_l = a_{l-1}^T delta_l. Float64 throughout, so it can itself be checked by finite differences.
"""

import numpy as np

SELU_L, SELU_A = 1.0507009873554805, 1.6732632423543772
GELU_C = np.sqrt(2.0 / np.pi)


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def phi(name, z, slope):
    if name == "linear":
        return z
    if name == "sigmoid":
        return _sig(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name in ("leaky_relu", "rrelu", "prelu"):
        return np.where(z >= 0, z, slope * z)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    if name == "selu":
        return SELU_L * np.where(z > 0, z, SELU_A * np.expm1(np.minimum(z, 0)))
    if name == "gelu":  # the tanh approximation, jax.nn.gelu's default
        return 0.5 * z * (1 + np.tanh(GELU_C * (z + 0.044715 * z**3)))
    if name == "swish":
        return z * _sig(z)
    raise KeyError(name)


def dphi(name, z, slope):
    if name == "linear":
        return np.ones_like(z)
    if name == "sigmoid":
        s = _sig(z)
        return s * (1 - s)
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name in ("leaky_relu", "rrelu", "prelu"):
        return np.where(z >= 0, 1.0, slope)
    if name == "elu":
        return np.where(z > 0, 1.0, np.exp(np.minimum(z, 0)))
    if name == "selu":
        return SELU_L * np.where(z > 0, 1.0, SELU_A * np.exp(np.minimum(z, 0)))
    if name == "gelu":
        u = GELU_C * (z + 0.044715 * z**3)
        du = GELU_C * (1 + 3 * 0.044715 * z**2)
        return 0.5 * (1 + np.tanh(u)) + 0.5 * z * (1 - np.tanh(u) ** 2) * du
    if name == "swish":
        s = _sig(z)
        return s + z * s * (1 - s)
    raise KeyError(name)


def unpack(params):
    """gradscope's params tree -> per-layer lists of float64 arrays."""
    p = {k: ({kk: np.asarray(vv, np.float64) for kk, vv in v.items()} if isinstance(v, dict) else np.asarray(v, np.float64))
         for k, v in params.items()}
    ws = [p["first"]["w"]] + list(p["hidden"]["w"]) + [p["out"]["w"]]
    bs = [p["first"]["b"]] + list(p["hidden"]["b"]) + [p["out"]["b"]]
    return ws, bs, p["bn"]["gamma"], p["bn"]["beta"]


def forward_backward(act, ws, bs, gamma, beta, x, y, slopes, *, batchnorm=False, residual=False, eps=1e-5):
    """Loss (batch-mean softmax cross-entropy) and its gradients, by hand.

    slopes: (D, W) negative-side slopes per hidden layer. Returns loss, dW list, db list,
    deltas (dL/dz per layer, logits last), dgamma, dbeta, dslope (D,) summed per layer,
    dh (dL/dh_l per hidden layer: the gradient at its output, the residual sum's where there
    is one) and du (dL/du_l per hidden layer, u_l = h_{l-1} W_l + b_l before BatchNorm).
    """
    depth = len(ws) - 1
    h, cache = x, []
    for l in range(depth):
        a = h @ ws[l] + bs[l]
        if batchnorm:
            mu, var = a.mean(0), a.var(0)
            inv = 1 / np.sqrt(var + eps)
            n = (a - mu) * inv
            z = gamma[l] * n + beta[l]
        else:
            n = inv = None
            z = a
        out = phi(act, z, slopes[l])
        h_new = h + out if (residual and l > 0) else out
        cache.append((h, z, n, inv))
        h = h_new
    logits = h @ ws[-1] + bs[-1]
    m = logits - logits.max(1, keepdims=True)
    p = np.exp(m) / np.exp(m).sum(1, keepdims=True)
    batch = x.shape[0]
    loss = -np.mean(np.log(p[np.arange(batch), y]))

    d = p.copy()
    d[np.arange(batch), y] -= 1
    d /= batch  # dL/dlogits
    dws, dbs, deltas = [None] * (depth + 1), [None] * (depth + 1), [None] * (depth + 1)
    dgamma, dbeta, dslope = np.zeros_like(gamma), np.zeros_like(beta), np.zeros(depth)
    dhs, dus = [None] * depth, [None] * depth
    deltas[depth], dbs[depth] = d, d.sum(0)
    dws[depth] = h_prev_out(cache, depth, x, act, slopes, residual).T @ d
    dh = d @ ws[-1].T
    for l in reversed(range(depth)):
        h_in, z, n, inv = cache[l]
        dhs[l] = dh
        dz = dh * dphi(act, z, slopes[l])
        deltas[l] = dz
        dslope[l] = np.sum(dh * np.where(z < 0, z, 0.0))
        if batchnorm:
            dgamma[l], dbeta[l] = (dz * n).sum(0), dz.sum(0)
            dn = dz * gamma[l]
            da = inv / batch * (batch * dn - dn.sum(0) - n * (dn * n).sum(0))
        else:
            da = dz
        dus[l] = da
        dws[l], dbs[l] = h_in.T @ da, da.sum(0)
        dh_in = da @ ws[l].T
        if residual and l > 0:
            dh_in = dh_in + dh
        dh = dh_in
    return loss, dws, dbs, deltas, dgamma, dbeta, dslope, dhs, dus


def h_prev_out(cache, depth, x, act, slopes, residual):
    """The last hidden layer's output (the output layer's input)."""
    h_in, z, _, _ = cache[-1]
    out = phi(act, z, slopes[depth - 1])
    return h_in + out if (residual and depth > 1) else out


def loss_only(act, ws, bs, gamma, beta, x, y, slopes, **kw):
    return forward_backward(act, ws, bs, gamma, beta, x, y, slopes, **kw)[0]
