"""Image datasets for the CNN, made offline from a seed: NHWC float32 images, int32 labels.

- `digits`: the package's 8x8 handwritten digits (the MLP's `digits`) as 1-channel images, 10 classes;
- `shapes`: 16x16 images of a filled circle, square, triangle or a cross (classes 0..3) at a random
  position and size, with Gaussian pixel noise of standard deviation `noise`.

Both are standardized with one mean and one standard deviation over every pixel (not per pixel:
a border pixel that is always dark keeps its place in the picture), and split by `datasets.split`:
the held-out rows are fixed by the seed.
"""

import gzip
from importlib import resources
from typing import NamedTuple

import numpy as np

SHAPES_SAMPLES = 2000
SHAPES_SIDE = 16
SHAPE_NAMES = ("circle", "square", "triangle", "cross")


class ImageSpec(NamedTuple):
    side: int  # images are side x side
    channels: int
    classes: int


SPECS = {"digits": ImageSpec(8, 1, 10), "shapes": ImageSpec(SHAPES_SIDE, 1, len(SHAPE_NAMES))}
IMAGE_DATASETS = tuple(SPECS)


def _digits(rng, noise):
    raw = resources.files("gradscope").joinpath("data/digits.csv.gz").read_bytes()
    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",")
    x, y = table[:, :64] / 16.0, table[:, 64].astype(int)  # intensities 0..16
    return x.reshape(-1, 8, 8, 1) + noise * rng.standard_normal((len(x), 8, 8, 1)), y


def _shape(kind, dy, dx, r):
    """The mask of one shape of half-size r on offsets (dy, dx) from its centre (y grows downwards)."""
    if kind == 0:
        return dy**2 + dx**2 <= r**2
    if kind == 1:
        return (np.abs(dy) <= r * 0.8) & (np.abs(dx) <= r * 0.8)
    if kind == 2:  # apex up, base down
        return (dy <= r * 0.8) & (np.abs(dx) <= (dy + r) / 2)
    t = max(1.0, r / 3)
    return ((np.abs(dx) <= t / 2 + 0.25) & (np.abs(dy) <= r)) | ((np.abs(dy) <= t / 2 + 0.25) & (np.abs(dx) <= r))


def _shapes(rng, noise, n=SHAPES_SAMPLES, side=SHAPES_SIDE):
    y = rng.integers(0, len(SHAPE_NAMES), n)
    r = rng.uniform(3.0, 6.0, n)
    cy, cx = (rng.uniform(r, side - 1 - r) for _ in range(2))
    grid = np.arange(side, dtype=np.float64)
    x = np.stack([_shape(k, grid[:, None] - a, grid[None, :] - b, s) for k, a, b, s in zip(y, cy, cx, r, strict=True)])
    x = x.astype(np.float64)[..., None]
    return x + noise * rng.standard_normal(x.shape), y


_LOADERS = {"digits": _digits, "shapes": _shapes}


def load(name, *, noise=0.1, seed=0):
    """(x (N, side, side, C) float32 with mean 0 and standard deviation 1 over all pixels, y (N,) int32)."""
    x, y = _LOADERS[name](np.random.default_rng(seed), noise)
    x = (x - x.mean()) / x.std()
    return x.astype(np.float32), y.astype(np.int32)
