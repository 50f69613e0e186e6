"""A deterministic stand-in for VQGAN tokens of natural images, for benchmarks and tests.

No ImageNet tokens ship with seit, so the store benchmark needs token grids whose statistics resemble a
ViT-VQGAN's (32x32 ids, 391 codes after pruning). The model below is a plain generative story, with every
knob in :class:`TokenSetConfig`; it is NOT fitted to any codec and its defaults were chosen before any
codec was measured on it:

* codes: ``codebook_size`` ids with a Zipf-like usage marginal (``zipf``), the popularity ranks shuffled
  over the whole id range (frequent codes also sit above 255, exercising the SeiT layout's escape path);
  codes fall into ``groups`` families of related codes ("sky", "foliage", "skin" ...);
* images: ``regions`` segments from the argmax of smooth random fields (soft, ragged boundaries); each
  segment draws a family from its class's family preference (label-dependent statistics over
  ``classes``) and a small palette of that family's codes (``palette``; a share ``flat`` of segments
  are flat: one code). Inside a segment a random field of segment-specific roughness (from smooth blobs to
  fine texture) picks the palette entry, unevenly, so codes repeat nearby;
* VQ noise: a share ``jitter`` of tokens switch to another code of their family (quantisation ambiguity
  between similar codes), and a share ``1 - correlation`` is replaced by an iid draw from the usage
  marginal. ``correlation=0`` therefore gives iid tokens: no codec can beat order-0 entropy there.

What is not modelled: real VQ codes have graded similarity (not hard families), real segments have
object shapes and real textures have orientation; the absolute ratios a codec reaches here are
indicative only. Report them together with the ``correlation`` sensitivity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seit.config import Checked, at_least, between, each, field, non_negative, positive, probability
from seit.errors import ConfigError


@dataclass
class TokenSetConfig(Checked):
    samples: int = field(20000, help="number of token grids", check=at_least(1))
    grid: tuple[int, ...] = field((32, 32), help="grid shape (rows, cols)", check=each(at_least(1)))
    codebook_size: int = field(
        391, help="number of codes (SeiT's pruned ImageNet codebook has 391)", check=between(2, 1 << 15)
    )
    classes: int = field(
        100, help="number of labels; each has its own preference over code families", check=at_least(1)
    )
    correlation: float = field(
        0.8,
        help="share of tokens that follow the image's spatial structure (rest: iid VQ noise); 0 = iid",
        check=probability,
    )
    zipf: float = field(0.8, help="exponent of the Zipf-like code-usage marginal", check=non_negative)
    groups: int = field(24, help="families of related codes", check=at_least(1))
    regions: int = field(
        6, help="largest number of segments per image (each image draws 1..regions)", check=at_least(1)
    )
    palette: float = field(8.0, help="mean number of codes a textured segment uses", check=positive)
    flat: float = field(0.1, help="share of segments that are flat (a single code)", check=probability)
    jitter: float = field(
        0.3, help="share of structured tokens that switch to a related code of their family", check=probability
    )
    seed: int = field(0, help="random seed; the token set is a pure function of the config", check=non_negative)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.grid) != 2:
            raise ConfigError(f"--grid takes two sizes (rows cols), got {list(self.grid)}")


MAX_PALETTE = 16
_CHUNK = 1024  # images generated per vectorised step (bounds memory to ~100 MB)


def generate_tokens(cfg: TokenSetConfig) -> tuple[np.ndarray, np.ndarray]:
    """(ids [samples, *grid] int16, labels [samples] int64), identical for identical configs."""
    rng = np.random.default_rng(cfg.seed)
    world = _World(cfg, rng)
    labels = rng.integers(0, cfg.classes, size=cfg.samples)
    ids = np.empty((cfg.samples, *cfg.grid), dtype=np.int16)
    for start in range(0, cfg.samples, _CHUNK):
        stop = min(start + _CHUNK, cfg.samples)
        ids[start:stop] = world.images(labels[start:stop], rng)
    return ids, labels.astype(np.int64)


class _World:
    """The fixed part of the story: code popularity, code families, class preferences."""

    def __init__(self, cfg: TokenSetConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        k, g = cfg.codebook_size, min(cfg.groups, cfg.codebook_size)
        rank = rng.permutation(k)  # popularity rank of each id, shuffled over the id range
        self.usage = (rank + 1.0) ** -cfg.zipf
        self.usage /= self.usage.sum()
        # Families of uneven size, every family non-empty.
        family = np.concatenate([np.arange(g), rng.choice(g, size=k - g, p=rng.dirichlet(np.full(g, 2.0)))])
        self.family = rng.permutation(family)
        order = np.argsort(self.family, kind="stable")
        self.family_codes = order  # ids sorted by family
        within = self.usage[order]
        bounds = np.searchsorted(self.family[order], np.arange(g + 1))
        cdf = np.empty(k)
        for f in range(g):
            seg = within[bounds[f] : bounds[f + 1]]
            cdf[bounds[f] : bounds[f + 1]] = f + np.cumsum(seg) / seg.sum()
        cdf[bounds[1:] - 1] = np.arange(1, g + 1)  # exact family ends despite rounding
        self.family_cdf = cdf  # family f's CDF lives in (f, f + 1]
        prior = np.bincount(self.family, weights=self.usage, minlength=g)
        pref = prior * rng.gamma(0.5, size=(cfg.classes, g))
        self.class_family_cdf = np.cumsum(pref / pref.sum(1, keepdims=True), axis=1)
        self.usage_cdf = np.cumsum(self.usage)
        self.groups = g

    def draw_usage(self, u: np.ndarray) -> np.ndarray:
        return np.minimum(np.searchsorted(self.usage_cdf, u), self.cfg.codebook_size - 1)

    def draw_in_family(self, family: np.ndarray, u: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.family_cdf, family + np.clip(u, 1e-9, 1.0))
        return self.family_codes[np.minimum(pos, self.cfg.codebook_size - 1)]

    def images(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg, n = self.cfg, len(labels)
        h, w = cfg.grid
        r = max(1, cfg.regions)
        # Segments: argmax of per-segment smooth fields (coarse shape + finer ragged boundary).
        logits = _smooth_noise(rng, (n, r), 4, (h, w)) + 0.35 * _smooth_noise(rng, (n, r), 12, (h, w))
        count = rng.integers(1, r + 1, size=n)
        logits[np.arange(r)[None, :] >= count[:, None]] = -np.inf
        segment = logits.argmax(axis=1)  # [n, h, w]
        # Each segment: a family from the class preference, a palette of that family's codes.
        fam = (rng.random((n, r, 1)) > self.class_family_cdf[labels][:, None, :]).sum(-1)
        fam = np.minimum(fam, self.groups - 1)
        size = np.clip(1 + rng.poisson(max(cfg.palette - 1.0, 0.0), size=(n, r)), 1, MAX_PALETTE)
        size[rng.random((n, r)) < cfg.flat] = 1
        palette = self.draw_in_family(fam[..., None], rng.random((n, r, MAX_PALETTE)))
        skew = np.exp(rng.normal(0.0, 0.5, size=(n, r)))  # uneven use of the palette's codes
        roughness = rng.random((n, r))  # 0: smooth blobs of one code ... 1: fine texture
        # Texture: a smooth and a fine field per image; each segment mixes them with its own roughness.
        seg = segment.reshape(n, -1)
        rough = np.take_along_axis(roughness, seg, axis=1).reshape(n, h, w)
        smooth, fine = _smooth_noise(rng, (n,), 4, (h, w)), _smooth_noise(rng, (n,), max(h, w), (h, w))
        texture = _normal_cdf(np.sqrt(1.0 - rough**2) * smooth + rough * fine)
        seg_size = np.take_along_axis(size, seg, axis=1).reshape(n, h, w)
        seg_skew = np.take_along_axis(skew, seg, axis=1).reshape(n, h, w)
        entry = np.minimum((seg_size * texture**seg_skew).astype(np.int64), seg_size - 1)
        flat_index = segment * MAX_PALETTE + entry
        ids = np.take_along_axis(palette.reshape(n, -1), flat_index.reshape(n, -1), axis=1).reshape(n, h, w)
        seg_fam = np.take_along_axis(fam, seg, axis=1).reshape(n, h, w)
        # VQ noise: related-code jitter, then iid replacement.
        u = rng.random((2, n, h, w))
        jitter = u[0] < cfg.jitter
        ids[jitter] = self.draw_in_family(seg_fam[jitter], rng.random(int(jitter.sum())))
        noise = u[1] >= cfg.correlation
        ids[noise] = self.draw_usage(rng.random(int(noise.sum())))
        return ids.astype(np.int16)


def _smooth_noise(rng: np.random.Generator, lead: tuple[int, ...], cells: int, shape: tuple[int, int]) -> np.ndarray:
    """Unit-variance Gaussian fields [*lead, h, w]: white noise on a cells x cells lattice, bilinearly upsampled."""
    if cells >= max(shape):
        return rng.standard_normal((*lead, *shape), dtype=np.float32)
    up_h, up_w = _interp(cells, shape[0]), _interp(cells, shape[1])
    # Rows of the interpolation matrices scaled to unit norm: every output pixel has unit variance.
    up_h /= np.sqrt((up_h**2).sum(1, keepdims=True))
    up_w /= np.sqrt((up_w**2).sum(1, keepdims=True))
    coarse = rng.standard_normal((int(np.prod(lead)), up_h.shape[1], up_w.shape[1]), dtype=np.float32)
    field = np.matmul(up_h, coarse @ up_w.T)  # [n, h, ch] x ... -> [n, h, w]
    return field.reshape(*lead, *shape)


def _interp(cells: int, size: int) -> np.ndarray:
    """Linear interpolation weights [size, cells] from a lattice spanning the grid."""
    if cells >= size:
        return np.eye(size, dtype=np.float32)
    if cells == 1 or size == 1:
        return np.ones((size, 1), dtype=np.float32)
    pos = np.linspace(0, cells - 1, size)
    lo = np.minimum(np.floor(pos).astype(int), cells - 2)
    frac = pos - lo
    m = np.zeros((size, cells), dtype=np.float32)
    m[np.arange(size), lo] = 1 - frac
    m[np.arange(size), lo + 1] = frac
    return m


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF (logistic approximation, |error| < 2e-4), vectorised without scipy."""
    return 1.0 / (1.0 + np.exp(-1.5976 * x * (1.0 + 0.04417 * x * x)))
