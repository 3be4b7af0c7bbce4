"""Datasets, generated from a seed or shipped with the package; nothing is downloaded.

Every loader returns (x, y): x float32 (N, features) standardized per feature,
y int32 (N,) class labels in 0..classes-1.
"""

import gzip
from importlib import resources

import numpy as np

N_SAMPLES = 1000
VAL_FRACTION = 0.2  # held out from training, for val_loss / val_accuracy


def _spirals(rng, n, noise, dim):
    t = np.sqrt(rng.uniform(0.02, 1.0, n))  # even density along the arm
    y = rng.integers(0, 2, n)
    angle = 4.0 * np.pi * t + np.pi * y  # about two turns, the arms half a turn apart
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    return x + noise * 0.1 * rng.standard_normal(x.shape), y


def _circles(rng, n, noise, dim):
    y = rng.integers(0, 2, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    r = np.where(y == 0, 1.0, 0.5)
    x = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    return x + noise * 0.5 * rng.standard_normal(x.shape), y


def _moons(rng, n, noise, dim):
    y = rng.integers(0, 2, n)
    angle = rng.uniform(0, np.pi, n)
    x = np.where(
        y[:, None] == 0,
        np.stack([np.cos(angle), np.sin(angle)], axis=1),
        np.stack([1.0 - np.cos(angle), 0.5 - np.sin(angle)], axis=1),
    )
    return x + noise * rng.standard_normal(x.shape), y


def _xor(rng, n, noise, dim):
    x = rng.uniform(-1, 1, (n, 2))
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)
    return x + noise * 0.5 * rng.standard_normal(x.shape), y


def _gaussian(rng, n, noise, dim):
    x = rng.standard_normal((n, dim))
    teacher = rng.standard_normal(dim)
    score = x @ teacher / np.sqrt(dim) + noise * rng.standard_normal(n)
    return x, (score > 0).astype(int)


def _digits(rng, n, noise, dim):
    raw = resources.files("gradscope").joinpath("data/digits.csv.gz").read_bytes()
    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",")
    x, y = table[:, :64], table[:, 64].astype(int)
    return x + noise * rng.standard_normal(x.shape), y


_LOADERS = {
    "spirals": _spirals,
    "circles": _circles,
    "moons": _moons,
    "xor": _xor,
    "gaussian": _gaussian,
    "digits": _digits,
}
DATASETS = tuple(_LOADERS)
CLASSES = {"digits": 10}
TWO_D = ("spirals", "circles", "moons", "xor")


def num_features(name, input_dim):
    return {"gaussian": input_dim, "digits": 64}.get(name, 2)


def num_classes(name):
    return CLASSES.get(name, 2)


def load(name, *, noise=0.1, seed=0, input_dim=2):
    """Generate (or read) the dataset and standardize each feature to mean 0, std 1."""
    rng = np.random.default_rng(seed)
    x, y = _LOADERS[name](rng, N_SAMPLES, noise, input_dim)
    mean, std = x.mean(axis=0), x.std(axis=0)
    x = (x - mean) / np.where(std > 0, std, 1.0)
    return x.astype(np.float32), y.astype(np.int32)


def split(x, y, seed=0):
    """A held-out split, fixed per seed: ((x_train, y_train), (x_val, y_val)), disjoint rows."""
    order = np.random.default_rng([seed, 1]).permutation(len(x))  # its own stream, not load()'s
    n_val = int(round(VAL_FRACTION * len(x)))
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])
