import math

import numpy as np
import pytest

from seit.demo import patterns
from seit.demo.patterns import CLASS_NAMES, render_image


@pytest.mark.parametrize(
    ("shape", "area"),
    [
        (patterns._square, 2.0),  # circumradius r: side r*sqrt(2)
        (patterns._triangle, 3 * math.sqrt(3) / 4),  # equilateral, circumradius r
        (patterns._cross, 4 * 0.34 * 2 - 4 * 0.34**2),  # two 2r x 2t bars (t = 0.34 r) minus their overlap
        (patterns._star, 5 * 0.45 * math.sin(math.pi / 5)),  # 10 triangles (centre, tip, valley at 0.45 r)
    ],
)
def test_shape_distances_draw_the_right_area(shape, area):
    # Coverage of a signed distance integrates to the shape's area (anti-aliasing is area-preserving).
    r = 40.0
    y, x = np.mgrid[-60:60, -60:60].astype(np.float32) + 0.5
    u, v = patterns._rotated(patterns._Canvas(120, 120, x, y), 0.0, 0.0, 0.3)
    covered = patterns._coverage(shape(u, v, np.float32(r)), 1.0).sum()
    assert covered == pytest.approx(area * r * r, rel=0.02)


def test_distance_to_lines_is_periodic_and_pixel_valued():
    t = np.array([0.0, 1.0, 4.9, 5.0, 7.5, 10.2], np.float32)
    np.testing.assert_allclose(patterns._distance_to_lines(t, 5.0), [0.0, 1.0, 0.1, 0.0, 2.5, 0.2], atol=1e-5)


def test_every_class_renders_an_rgb_image_of_varied_size():
    for i, name in enumerate(CLASS_NAMES):
        img = render_image(name, np.random.default_rng(i))
        assert img.mode == "RGB"
        assert min(img.size) >= patterns.MIN_SIDE and max(img.size) <= patterns.MAX_SIDE
        assert np.asarray(img).std() > 5  # something is drawn


def test_rendering_is_a_function_of_the_generator():
    a = render_image("stars", np.random.default_rng(7))
    b = render_image("stars", np.random.default_rng(7))
    c = render_image("stars", np.random.default_rng(8))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert a.size != c.size or not np.array_equal(np.asarray(a), np.asarray(c))


def test_unknown_class_names_the_known_ones():
    with pytest.raises(ValueError, match="stripes"):
        render_image("zebra", np.random.default_rng(0))
