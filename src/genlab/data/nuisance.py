"""Built-in data with hidden nuisances, for debiasing benchmarks (genlab.debias): both from mnist5k's split.

`nuisance:under`: task = digit >= 5; two hidden nuisances, tone (normal / inverted 1 - x) and pose
(upright / rotated 90 degrees). Training images get a rendering at random (seeded): (normal, upright) 88%,
(inverted, upright) 5%, (normal, rotated) 5%, (inverted, rotated) 2%: the last three are under-represented.
The test split holds every test image in all four renderings. `group` is the rendering (0..3).

`nuisance:corr`: Colored MNIST (Bahng et al. 2020; Nam et al. 2020): the 10-way digit task in colour; each
class has a colour; in training a digit wears its class colour with probability rho = 0.95, otherwise one of
the 9 others at random; in test colours are uniform. `group` 0 = colour agrees with the label (bias-aligned),
1 = it does not (bias-conflicting): a model that reads the colour fails the second group.
"""

from __future__ import annotations

import numpy as np

from genlab.data.core import DataSpec, RawData

UNDER_GROUPS = ("normal, upright", "inverted, upright", "normal, rotated", "inverted, rotated")
UNDER_SHARES = (0.88, 0.05, 0.05, 0.02)
CORR_RHO = 0.95
CORR_GROUPS = ("colour agrees with label", "colour conflicts with label")
# ten distinct colours (RGB in [0, 1]), one per digit class
COLOURS = np.array([
    [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0],
    [0.0, 1.0, 1.0], [1.0, 0.5, 0.0], [0.5, 0.0, 1.0], [0.0, 0.5, 0.25], [0.6, 0.6, 0.6],
], dtype=np.float32)


def _mnist():
    from genlab.data.embedded import mnist5k

    return mnist5k(DataSpec("mnist5k"))


def render_under(x: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Images (N, 1, H, W) in the renderings of `group`: bit 0 = inverted, bit 1 = rotated 90 degrees."""
    x = np.where((group & 1).astype(bool)[:, None, None, None], 1.0 - x, x)
    rotated = np.rot90(x, 1, axes=(2, 3))
    return np.where((group & 2).astype(bool)[:, None, None, None], rotated, x).astype(np.float32)


def under(spec: DataSpec) -> RawData:
    raw = _mnist()
    (xtr, ytr), (xte, yte) = raw.train, raw.test
    counts = np.round(np.array(UNDER_SHARES) * len(xtr)).astype(int)
    counts[0] = len(xtr) - counts[1:].sum()
    gtr = np.random.RandomState(0).permutation(np.repeat(np.arange(4), counts))  # exact shares, random images
    gte = np.repeat(np.arange(4), len(xte))
    xte4 = render_under(np.tile(xte, (4, 1, 1, 1)), gte)
    return RawData((render_under(xtr, gtr), (ytr >= 5).astype(np.int64)), (xte4, np.tile(yte >= 5, 4).astype(np.int64)),
                   kind="image", classes=("digit < 5", "digit >= 5"),
                   extra={"groups": (gtr, gte), "group_names": UNDER_GROUPS})


def colour_digits(x: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Grey digits (N, 1, H, W) painted in colours (N,) indices of COLOURS: (N, 3, H, W)."""
    return (x * COLOURS[colour][:, :, None, None]).astype(np.float32)


def corr(spec: DataSpec) -> RawData:
    raw = _mnist()
    (xtr, ytr), (xte, yte) = raw.train, raw.test
    rng = np.random.RandomState(0)
    other = (ytr + rng.randint(1, 10, size=len(ytr))) % 10  # a uniformly drawn other colour
    ctr = np.where(rng.random_sample(len(ytr)) < CORR_RHO, ytr, other)
    cte = rng.randint(0, 10, size=len(yte))
    return RawData((colour_digits(xtr, ctr), ytr), (colour_digits(xte, cte), yte), kind="image",
                   classes=raw.classes,
                   extra={"groups": ((ctr != ytr).astype(np.int64), (cte != yte).astype(np.int64)),
                          "group_names": CORR_GROUPS})
