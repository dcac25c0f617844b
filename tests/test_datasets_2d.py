"""fastnet.datasets' 2-D problems: shapes, labels, geometry, seeds, noise."""

import numpy as np
import pytest

from fastnet import datasets

GENERATORS = [datasets.two_curves, datasets.spirals, datasets.circles]


def test_xor_is_the_four_points():
    x, y = datasets.xor()
    np.testing.assert_array_equal(x, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(y, [0, 1, 1, 0])
    assert x.dtype == np.float32 and y.dtype == np.int64


def test_xor_clouds_keep_their_corner_labels():
    x, y = datasets.xor(n_per_corner=50, noise=0.05, seed=3)
    assert x.shape == (200, 2) and np.bincount(y).tolist() == [100, 100]
    corner = np.round(x).astype(int)
    np.testing.assert_array_equal(y, corner[:, 0] ^ corner[:, 1])


@pytest.mark.parametrize("make", GENERATORS)
def test_shapes_balance_and_seeds(make):
    x, y = make(n=37, seed=5)
    assert x.shape == (74, 2) and y.shape == (74,)
    assert np.bincount(y).tolist() == [37, 37]
    assert np.isfinite(x).all()
    # classes interleaved, not in two blocks
    assert 0 < np.sum(y[:37]) < 37
    again = make(n=37, seed=5)
    np.testing.assert_array_equal(x, again[0])
    np.testing.assert_array_equal(y, again[1])
    other = make(n=37, seed=6)
    assert not np.array_equal(x, other[0])


@pytest.mark.parametrize("make", GENERATORS + [datasets.xor])
def test_global_rng_untouched(make):
    np.random.seed(11)
    expected = np.random.random_sample()
    np.random.seed(11)
    make(seed=1)
    assert np.random.random_sample() == expected


def test_circles_lie_on_their_circles(float64):
    x, y = datasets.circles(n=100, inner_radius=0.3, noise=0.0, seed=2)
    assert x.dtype == np.float64
    r = np.hypot(x[:, 0], x[:, 1])
    np.testing.assert_allclose(r[y == 0], 1.0, rtol=1e-12)
    np.testing.assert_allclose(r[y == 1], 0.3, rtol=1e-12)


def test_spirals_follow_their_arms(float64):
    turns = 1.25
    x, y = datasets.spirals(n=200, turns=turns, noise=0.0, seed=4)
    r = np.hypot(x[:, 0], x[:, 1])
    assert r.min() >= 0.1 - 1e-12 and r.max() <= 1.0 + 1e-12
    angle = 2 * np.pi * turns * (r - 0.1) / 0.9 + y * np.pi
    np.testing.assert_allclose(x[:, 0], r * np.cos(angle), atol=1e-12)
    np.testing.assert_allclose(x[:, 1], r * np.sin(angle), atol=1e-12)


def test_two_curves_lie_on_their_curves(float64):
    x, y = datasets.two_curves(n=50, noise=0.0, seed=1)
    offset = np.where(y == 0, 0.25, -0.25)
    np.testing.assert_allclose(x[:, 1], 0.6 * np.sin(np.pi * x[:, 0]) + offset, atol=1e-12)


def test_noise_has_the_asked_spread(float64):
    x, y = datasets.circles(n=2000, noise=0.05, seed=0)
    # isotropic noise of sd 0.05 moves the radius of the unit circle by ~N(0, 0.05)
    r = np.hypot(x[:, 0], x[:, 1])
    assert abs(np.std(r[y == 0] - 1.0) - 0.05) < 0.005
    assert abs(np.mean(r[y == 0] - 1.0)) < 0.005


@pytest.mark.parametrize("call, message", [
    (lambda: datasets.spirals(n=0), "n must be an integer >= 1"),
    (lambda: datasets.spirals(n=2.5), "n must be an integer"),
    (lambda: datasets.spirals(turns=-1), "turns must be a finite number >= 0"),
    (lambda: datasets.two_curves(noise=float("nan")), "noise must be a finite number"),
    (lambda: datasets.circles(inner_radius=1.5), "inner_radius must be in"),
    (lambda: datasets.xor(n_per_corner=0), "n_per_corner"),
    (lambda: datasets.circles(seed=-1), "seed must be an integer"),
])
def test_bad_arguments_are_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
