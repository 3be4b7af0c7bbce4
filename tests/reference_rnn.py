"""An independent numpy backpropagation through time for the Elman RNN, the LSTM and the GRU.

Written from the cell equations (see gradscope/core/recurrent.py's docstring), one time step
at a time, not from gradscope's code. Float64 throughout, so that finite differences can check it.
"""

import numpy as np

from reference import dphi, phi


def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def _rnn_forward(act, p, x, h, c, slope):
    z = x @ p["w_xh"] + h @ p["w_hh"] + p["b"]
    return phi(act, z, slope), None, (x, h, z)


def _rnn_backward(act, p, cache, dh, dc, slope, g):
    x, h_prev, z = cache
    dz = dh * dphi(act, z, slope)
    g["w_xh"] += x.T @ dz
    g["w_hh"] += h_prev.T @ dz
    g["b"] += dz.sum(0)
    return dz @ p["w_hh"].T, None, dz @ p["w_xh"].T


def _lstm_forward(act, p, x, h, c, slope):
    a = x @ p["w_xh"] + h @ p["w_hh"] + p["b"]
    ai, af, ag, ao = np.split(a, 4, axis=1)
    i, f, gg, o = _sig(ai), _sig(af), np.tanh(ag), _sig(ao)
    c_new = f * c + i * gg
    return o * np.tanh(c_new), c_new, (x, h, c, i, f, gg, o, c_new)


def _lstm_backward(act, p, cache, dh, dc, slope, g):
    x, h_prev, c_prev, i, f, gg, o, c = cache
    tc = np.tanh(c)
    do = dh * tc
    dc = dc + dh * o * (1 - tc**2)
    da = np.concatenate([dc * gg * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - gg**2), do * o * (1 - o)], axis=1)
    g["w_xh"] += x.T @ da
    g["w_hh"] += h_prev.T @ da
    g["b"] += da.sum(0)
    return da @ p["w_hh"].T, dc * f, da @ p["w_xh"].T


def _gru_forward(act, p, x, h, c, slope):
    xr, xz, xn = np.split(x @ p["w_xh"] + p["b"], 3, axis=1)
    hr, hz, hn = np.split(h @ p["w_hh"], 3, axis=1)
    r, z = _sig(xr + hr), _sig(xz + hz)
    n = np.tanh(xn + r * hn)
    return (1 - z) * n + z * h, None, (x, h, r, z, n, hn)


def _gru_backward(act, p, cache, dh, dc, slope, g):
    x, h_prev, r, z, n, hn = cache
    dan = dh * (1 - z) * (1 - n**2)
    dar = dan * hn * r * (1 - r)
    daz = dh * (h_prev - n) * z * (1 - z)
    dax = np.concatenate([dar, daz, dan], axis=1)
    dah = np.concatenate([dar, daz, dan * r], axis=1)
    g["w_xh"] += x.T @ dax
    g["b"] += dax.sum(0)
    g["w_hh"] += h_prev.T @ dah
    return dh * z + dah @ p["w_hh"].T, None, dax @ p["w_xh"].T


CELLS = {"rnn": (_rnn_forward, _rnn_backward), "lstm": (_lstm_forward, _lstm_backward), "gru": (_gru_forward, _gru_backward)}


def _loss(task, o, y):
    """Readout o (S, B, C) -> (loss, dL/do): MSE for adding, mean cross-entropy otherwise."""
    if task == "adding":
        return np.mean((o - y) ** 2), 2 * (o - y) / o.size
    m = o - o.max(-1, keepdims=True)
    p = np.exp(m) / np.exp(m).sum(-1, keepdims=True)
    s, b = y.shape
    picked = p[np.arange(s)[:, None], np.arange(b)[None], y]
    d = p.copy()
    d[np.arange(s)[:, None], np.arange(b)[None], y] -= 1
    return -np.mean(np.log(picked)), d / (s * b)


def forward_backward(model, act, layers, out, x, y, task, out_steps, slope=0.0):
    """Loss and gradients by hand. layers: dicts w_xh, w_hh, b; out: w, b; x (T, B, n_in).

    Returns loss, layer grads (same dicts), readout grads, dh (L, T, B, H): dL/dh_t per layer.
    """
    fwd, bwd = CELLS[model]
    seq, batch, _ = x.shape
    inputs, caches = x, []
    for p in layers:
        width = p["w_hh"].shape[0]
        h, c, hs, cache = np.zeros((batch, width)), np.zeros((batch, width)), [], []
        for t in range(seq):
            h, c, ct = fwd(act, p, inputs[t], h, c, slope)
            hs.append(h)
            cache.append(ct)
        caches.append(cache)
        inputs = np.stack(hs)
    o = inputs[-out_steps:] @ out["w"] + out["b"]
    loss, do = _loss(task, o, y)
    g_out = {"w": np.einsum("sbh,sbc->hc", inputs[-out_steps:], do), "b": do.sum((0, 1))}
    d_ext = np.zeros_like(inputs)
    d_ext[-out_steps:] = do @ out["w"].T
    grads, dhs = [None] * len(layers), [None] * len(layers)
    for l in reversed(range(len(layers))):
        p = layers[l]
        g = {k: np.zeros_like(v) for k, v in p.items()}
        dh_next, dc_next = np.zeros_like(d_ext[0]), np.zeros_like(d_ext[0])
        dh_all, dx_all = np.zeros_like(d_ext), [None] * seq
        for t in reversed(range(seq)):
            dh = d_ext[t] + dh_next  # the total gradient reaching h_t: from above and from step t+1
            dh_all[t] = dh
            dh_next, dc_next, dx_all[t] = bwd(act, p, caches[l][t], dh, dc_next, slope, g)
        grads[l], dhs[l], d_ext = g, dh_all, np.stack(dx_all)
    return loss, grads, g_out, np.stack(dhs)


def loss_only(*args, **kw):
    return forward_backward(*args, **kw)[0]
