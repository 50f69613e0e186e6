"""Procedural images for the built-in demo dataset: one class = one kind of shape or texture.

The class is carried by what VQ tokens keep (shape, texture, layout, object count), never by a
global statistic: colours, scale, position, rotation, background, clutter, blur, noise and JPEG
quality are drawn independently of the class. Every image is a pure function of its random
generator, so a seed reproduces it bit for bit (same numpy/Pillow versions).

Rendering is vectorised: each class is an implicit function (a signed distance in pixels) evaluated
on the whole pixel grid, turned into an anti-aliased coverage map and composited with numpy.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

# Ordered so that any prefix is a sensible smaller problem (alternating textures and objects).
CLASS_NAMES: tuple[str, ...] = (
    "stripes",
    "triangles",
    "checker",
    "crosses",
    "rings",
    "squares",
    "spots",
    "stars",
    "waves",
    "grid",
)

MIN_SIDE, MAX_SIDE = 96, 192  # pixels, each side
MIN_ASPECT, MAX_ASPECT = 0.6, 1.6  # width / height


@dataclass(frozen=True)
class _Canvas:
    """The pixel grid of one image and the central square where the class content lives."""

    h: int
    w: int
    x: np.ndarray  # [h, w] pixel-centre x
    y: np.ndarray  # [h, w] pixel-centre y

    @property
    def m(self) -> float:
        """The shorter side: all sizes are relative to it, so content survives a resize + centre crop."""
        return float(min(self.h, self.w))

    def central_point(self, rng: np.random.Generator, margin: float) -> tuple[float, float]:
        """A point in the centred m x m square, ``margin`` (fraction of m) away from its border."""
        lo, hi = margin * self.m, (1 - margin) * self.m
        return (self.w - self.m) / 2 + rng.uniform(lo, hi), (self.h - self.m) / 2 + rng.uniform(lo, hi)


def _rotated(c: _Canvas, cx: float, cy: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    dx, dy = c.x - np.float32(cx), c.y - np.float32(cy)
    return cos * dx + sin * dy, cos * dy - sin * dx


def _coverage(distance: np.ndarray, softness: float) -> np.ndarray:
    """Anti-aliased inside-ness of a signed distance (negative inside), in [0, 1]."""
    return np.clip(0.5 - distance / np.float32(softness), 0.0, 1.0)


def _distance_to_lines(t: np.ndarray, period: float) -> np.ndarray:
    """Distance (pixels) from coordinate ``t`` to the nearest multiple of ``period``."""
    f = t / np.float32(period)
    return np.abs(f - np.round(f)) * np.float32(period)


# --- class content: each returns a coverage map [h, w] in [0, 1] ------------------------------


def _texture_region(rng: np.random.Generator, c: _Canvas) -> np.ndarray:
    """Where a texture is drawn: the whole image or a soft ellipse/rounded box around the centre."""
    if rng.random() < 0.3:
        return np.ones((c.h, c.w), np.float32)
    cx, cy = c.central_point(rng, 0.35)
    u, v = _rotated(c, cx, cy, rng.uniform(0, np.pi))
    rx, ry = rng.uniform(0.3, 0.6, size=2) * c.m
    p = np.float32(rng.choice([2.0, 3.0, 6.0]))  # ellipse .. rounded rectangle
    r = (np.abs(u / np.float32(rx)) ** p + np.abs(v / np.float32(ry)) ** p) ** (1 / p)
    return _coverage((r - 1) * np.float32(min(rx, ry)), 2.0)


def _stripes(rng, c, softness, *, wavy=False):
    period = rng.uniform(0.22, 0.4) * c.m
    u, v = _rotated(c, c.w / 2, c.h / 2, rng.uniform(0, np.pi))
    if wavy:
        amplitude = rng.uniform(0.25, 0.6) * period
        wavelength = rng.uniform(2.0, 4.0) * period
        k = np.float32(2 * np.pi / wavelength)
        phase = v * k + np.float32(rng.uniform(0, 2 * np.pi))
        u = u + np.float32(amplitude) * np.sin(phase)
        slope = np.sqrt(1 + (np.float32(amplitude) * k * np.cos(phase)) ** 2)  # keep distances in pixels
    else:
        slope = np.float32(1)
    half_width = rng.uniform(0.22, 0.32) * period
    d = _distance_to_lines(u + np.float32(rng.uniform(0, period)), period) / slope - np.float32(half_width)
    return _coverage(d, softness) * _texture_region(rng, c)


def _checker(rng, c, softness):
    side = rng.uniform(0.22, 0.38) * c.m
    u, v = _rotated(c, c.w / 2, c.h / 2, rng.uniform(0, np.pi / 2))
    u = u + np.float32(rng.uniform(0, side))
    v = v + np.float32(rng.uniform(0, side))
    parity = (np.floor(u / np.float32(side)) + np.floor(v / np.float32(side))) % 2
    edge = np.minimum(_distance_to_lines(u, side), _distance_to_lines(v, side))
    d = np.where(parity == 1, -edge, edge)
    return _coverage(d, softness) * _texture_region(rng, c)


def _grid(rng, c, softness):
    side = rng.uniform(0.26, 0.42) * c.m
    u, v = _rotated(c, c.w / 2, c.h / 2, rng.uniform(0, np.pi / 2))
    u = u + np.float32(rng.uniform(0, side))
    v = v + np.float32(rng.uniform(0, side))
    half_width = rng.uniform(0.08, 0.14) * side
    d = np.minimum(_distance_to_lines(u, side), _distance_to_lines(v, side)) - np.float32(half_width)
    return _coverage(d, softness) * _texture_region(rng, c)


def _rings(rng, c, softness):
    period = rng.uniform(0.22, 0.36) * c.m
    cx, cy = c.central_point(rng, 0.2)
    u, v = _rotated(c, cx, cy, rng.uniform(0, np.pi))
    r = np.sqrt(u**2 + (v * np.float32(rng.uniform(0.75, 1.0))) ** 2)
    half_width = rng.uniform(0.22, 0.32) * period
    d = _distance_to_lines(r + np.float32(rng.uniform(0, period)), period) - np.float32(half_width)
    return _coverage(d, softness) * _texture_region(rng, c)


def _spots(rng, c, softness):
    spacing = rng.uniform(0.24, 0.36) * c.m
    n = max(4, round(c.h * c.w / spacing**2))
    px = rng.uniform(0, c.w, size=(n, 1, 1)).astype(np.float32)
    py = rng.uniform(0, c.h, size=(n, 1, 1)).astype(np.float32)
    radius = (rng.uniform(0.2, 0.3, size=(n, 1, 1)) * spacing).astype(np.float32)
    d = (np.sqrt((c.x - px) ** 2 + (c.y - py) ** 2) - radius).min(axis=0)
    return _coverage(d, softness) * _texture_region(rng, c)


def _triangle(u, v, radius):
    # Equilateral triangle with circumradius ``radius``: the max of three edge half-planes (inradius r/2).
    d = None
    for k in range(3):
        a = np.float32(np.pi / 2 + 2 * np.pi * k / 3)
        e = u * np.cos(a) + v * np.sin(a)
        d = e if d is None else np.maximum(d, e)
    return d - radius / 2


def _square(u, v, radius):
    return np.maximum(np.abs(u), np.abs(v)) - radius / np.float32(np.sqrt(2))


def _cross(u, v, radius, thickness=0.34):
    au, av, t = np.abs(u), np.abs(v), radius * np.float32(thickness)
    return np.minimum(np.maximum(au - radius, av - t), np.maximum(au - t, av - radius))


def _star(u, v, radius, inner=0.45, points=5):
    # In each half-sector the star is the triangle (centre, tip, inner vertex): distance to its outer edge.
    sector = np.float32(2 * np.pi / points)
    phi = np.abs(np.mod(np.arctan2(v, u), sector) - sector / 2)  # 0 at a tip
    rho = np.sqrt(u**2 + v**2)
    qx, qy = rho * np.cos(phi), rho * np.sin(phi)
    tip = (radius, np.float32(0))
    valley = (radius * np.float32(inner * np.cos(sector / 2)), radius * np.float32(inner * np.sin(sector / 2)))
    ex, ey = valley[0] - tip[0], valley[1] - tip[1]
    return ((qx - tip[0]) * ey - (qy - tip[1]) * ex) / np.sqrt(ex**2 + ey**2)


def _objects(shape: Callable, scale: float = 1.0) -> Callable:
    """A class of 1-2 non-overlapping objects of one shape, each with its own size and rotation.

    ``scale`` evens out the shapes' areas at equal circumradius, so that ink coverage tells no class.
    """

    def draw(rng: np.random.Generator, c: _Canvas, softness: float) -> np.ndarray:
        n = int(rng.integers(1, 3))
        placed: list[tuple[float, float, float]] = []
        for _ in range(60):  # rejection sampling; fewer objects when the square is crowded
            if len(placed) == n:
                break
            radius = rng.uniform(0.24, 0.38) * scale * c.m
            cx, cy = c.central_point(rng, 0.12)
            if all((cx - x) ** 2 + (cy - y) ** 2 > (radius + r + 2) ** 2 for x, y, r in placed):
                placed.append((cx, cy, radius))
        alpha = np.zeros((c.h, c.w), np.float32)
        for cx, cy, radius in placed:
            u, v = _rotated(c, cx, cy, rng.uniform(0, 2 * np.pi))
            alpha = np.maximum(alpha, _coverage(shape(u, v, np.float32(radius)), softness))
        return alpha

    return draw


_DRAW: dict[str, Callable[[np.random.Generator, _Canvas, float], np.ndarray]] = {
    "stripes": _stripes,
    "waves": lambda rng, c, s: _stripes(rng, c, s, wavy=True),
    "checker": _checker,
    "grid": _grid,
    "rings": _rings,
    "spots": _spots,
    "triangles": _objects(_triangle, scale=1.2),  # area 1.30 r^2 vs 2.0 (square), 2.26 (cross)
    "squares": _objects(_square),
    "crosses": _objects(_cross),
    "stars": _objects(_star, scale=1.25),  # area 1.32 r^2
}
assert set(_DRAW) == set(CLASS_NAMES)


# --- nuisances: drawn the same way for every class ---------------------------------------------


# Colours come from a palette (with a little jitter), independently of the class: colour still tells
# nothing about the label, but a scene's colours recur across images, as they do in natural photos.
PALETTE = np.array(
    [
        [0.90, 0.20, 0.15],
        [0.95, 0.55, 0.10],
        [0.95, 0.85, 0.20],
        [0.45, 0.75, 0.20],
        [0.10, 0.55, 0.30],
        [0.15, 0.70, 0.75],
        [0.20, 0.40, 0.85],
        [0.35, 0.20, 0.65],
        [0.80, 0.35, 0.70],
        [0.55, 0.35, 0.20],
        [0.92, 0.90, 0.85],
        [0.50, 0.50, 0.52],
        [0.12, 0.12, 0.15],
        [0.70, 0.80, 0.95],
    ],
    dtype=np.float32,
)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    colour = PALETTE[rng.integers(len(PALETTE))] + rng.normal(0.0, 0.05, size=3)
    return np.clip(colour, 0.0, 1.0).astype(np.float32)


def _colour_field(rng: np.random.Generator, c: _Canvas, first: np.ndarray) -> np.ndarray:
    """A colour that may drift linearly across the image to a second colour: [h, w, 3]."""
    second = first if rng.random() < 0.5 else _random_colour(rng)
    u, _ = _rotated(c, c.w / 2, c.h / 2, rng.uniform(0, 2 * np.pi))
    t = np.clip(u / np.float32(c.m) + 0.5, 0, 1)[..., None]
    return first * (1 - t) + second * t


def _smooth_noise(rng: np.random.Generator, c: _Canvas, cells: int) -> np.ndarray:
    """Low-frequency noise [h, w, 3] with zero mean and unit-ish scale (bicubic upsampling of a coarse grid)."""
    gh, gw = max(2, round(cells * c.h / c.m)), max(2, round(cells * c.w / c.m))
    coarse = rng.standard_normal((3, gh, gw)).astype(np.float32)
    up = [np.asarray(Image.fromarray(ch).resize((c.w, c.h), Image.BICUBIC)) for ch in coarse]
    return np.stack(up, axis=-1)


def _blob(rng: np.random.Generator, c: _Canvas, lo: float, hi: float) -> np.ndarray:
    """A soft ellipse anywhere in the image: a class-free distractor."""
    u, v = _rotated(c, rng.uniform(0, c.w), rng.uniform(0, c.h), rng.uniform(0, np.pi))
    rx, ry = rng.uniform(lo, hi, size=2) * c.m
    r = np.sqrt((u / np.float32(rx)) ** 2 + (v / np.float32(ry)) ** 2)
    return _coverage((r - 1) * np.float32(min(rx, ry)), rng.uniform(1.0, 0.5 * min(rx, ry)))


def _background(rng: np.random.Generator, c: _Canvas) -> np.ndarray:
    img = _colour_field(rng, c, _random_colour(rng))
    img = img + np.float32(rng.uniform(0.0, 0.12)) * _smooth_noise(rng, c, int(rng.integers(2, 7)))
    for _ in range(int(rng.integers(0, 3))):
        a = _blob(rng, c, 0.15, 0.5)[..., None] * np.float32(rng.uniform(0.2, 0.6))
        img = img * (1 - a) + _random_colour(rng) * a
    return img


def _foreground_colour(rng: np.random.Generator, background_mean: np.ndarray) -> np.ndarray:
    """A random colour visibly different from the background (else the label would be invisible)."""
    for _ in range(100):
        colour = _random_colour(rng)
        if np.linalg.norm(colour - background_mean) > 0.35:
            return colour
    return 1 - background_mean  # practically unreachable; still contrasting


def _finish(rng: np.random.Generator, img: np.ndarray, m: float) -> Image.Image:
    """Photometric jitter, sensor noise, blur and an optional low-quality JPEG round trip."""
    contrast, brightness = rng.uniform(0.6, 1.15), rng.uniform(-0.12, 0.12)
    img = (img - 0.5) * np.float32(contrast) + np.float32(0.5 + brightness)
    img = np.clip(img, 0, 1) ** np.float32(rng.uniform(0.75, 1.35))
    sigma = rng.uniform(0.0, 0.09)
    img = img + np.float32(sigma) * rng.standard_normal(img.shape, dtype=np.float32)
    pil = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
    blur = rng.uniform(0.0, 0.016) * m
    if blur > 0.3:
        pil = pil.filter(ImageFilter.GaussianBlur(blur))
    if rng.random() < 0.2:
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(rng.integers(15, 60)))
        pil = Image.open(buf).convert("RGB")
    return pil


def _random_size(rng: np.random.Generator) -> tuple[int, int]:
    aspect = float(np.exp(rng.uniform(np.log(MIN_ASPECT), np.log(MAX_ASPECT))))
    lo, hi = max(MIN_SIDE, MIN_SIDE / aspect), min(MAX_SIDE, MAX_SIDE / aspect)
    h = rng.uniform(lo, hi)
    return round(h), int(np.clip(round(h * aspect), MIN_SIDE, MAX_SIDE))


def render_image(class_name: str, rng: np.random.Generator) -> Image.Image:
    """One RGB image of ``class_name`` (one of :data:`CLASS_NAMES`), every nuisance drawn from ``rng``."""
    if class_name not in _DRAW:
        raise ValueError(f"unknown demo class {class_name!r}; known: {', '.join(CLASS_NAMES)}")
    h, w = _random_size(rng)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) + np.float32(0.5)
    c = _Canvas(h, w, x, y)
    img = _background(rng, c)
    softness = rng.uniform(1.0, 2.0)
    alpha = _DRAW[class_name](rng, c, softness) * np.float32(rng.uniform(0.6, 1.0))
    fg = _colour_field(rng, c, _foreground_colour(rng, img.reshape(-1, 3).mean(axis=0)))
    img = img * (1 - alpha[..., None]) + fg * alpha[..., None]
    for _ in range(int(rng.integers(0, 2))):  # small occluders on top of everything
        a = _blob(rng, c, 0.04, 0.1)[..., None]
        img = img * (1 - a) + _random_colour(rng) * a
    return _finish(rng, img, c.m)
