"""runtime.plumbing.quality: the Fréchet distance in a small classifier's features, and its floor."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.data.datasets import load_dataset
from runtime.plumbing.quality import (
    bootstrap_distances,
    capacity,
    fit_feature_net,
    frechet_distance,
    paired_difference,
    real_sets,
    sample_quality,
)


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
    # Feature sets whose sample covariances are exactly diagonal: ±1 patterns (orthogonal
    # columns, zero mean), scaled per dimension and shifted.
    signs = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float64)
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.0])
    f1, f2 = signs * s1 + m1, signs * s2 + m2
    var1 = (s1**2) * 4 / 3  # np.cov with ddof = 1 of ±s over 4 rows
    var2 = (s2**2) * 4 / 3
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert frechet_distance(f1, f2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(f1, f1) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(f1, f2) == pytest.approx(frechet_distance(f2, f1), rel=1e-9)


def _features_with(mean: np.ndarray, cov: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n feature vectors whose sample mean and covariance (ddof = 1) are exactly mean and cov:
    centred orthonormal columns, scaled by √(n − 1) and mapped by a Cholesky factor of cov."""
    z = np.random.default_rng(seed).standard_normal((n, len(mean)))
    q, _ = np.linalg.qr(z - z.mean(0))  # orthonormal columns, each orthogonal to the ones vector
    q -= q.mean(0)  # (already centred up to rounding)
    return q * np.sqrt(n - 1) @ np.linalg.cholesky(cov).T + mean


def test_frechet_distance_of_non_commuting_covariances_is_closed_form():
    # For 2×2 covariances, Σ1·Σ2 has the positive eigenvalues of Σ2^½·Σ1·Σ2^½, so
    # Tr (Σ1·Σ2)^½ = √(Tr(Σ1·Σ2) + 2·√(det Σ1·det Σ2)): d² in closed form. Σ1 and Σ2 do not
    # commute, so (Σ1·Σ2)^½ ≠ Σ1^½·Σ2^½ (their traces differ here by 5e-3, i.e. d² by 2.6e-3
    # relative: far above the 1e-9 checked).
    s1 = np.array([[2.0, 0.9], [0.9, 1.0]])
    s2 = np.array([[0.5, -0.3], [-0.3, 1.5]])
    assert not np.allclose(s1 @ s2, s2 @ s1)
    m1, m2 = np.array([0.3, -1.0]), np.array([1.0, 0.5])
    f1, f2 = _features_with(m1, s1, 40, 1), _features_with(m2, s2, 25, 2)
    np.testing.assert_allclose(np.cov(f1, rowvar=False), s1, atol=1e-12)
    tr_sqrt = np.sqrt(np.trace(s1 @ s2) + 2 * np.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(f1, f2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_matches_the_symmetric_form_in_eight_dimensions():
    # An independent computation: Tr (Σ1·Σ2)^½ = Tr (Σ2^½·Σ1·Σ2^½)^½, the square roots of
    # symmetric matrices taken by eigendecomposition (numpy.linalg.eigh), not scipy's sqrtm of
    # the non-symmetric product.
    def sqrt_sym(a: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(a)
        return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T

    rng = np.random.default_rng(5)
    f1 = rng.standard_normal((60, 8)) @ rng.standard_normal((8, 8))
    f2 = rng.standard_normal((50, 8)) @ rng.standard_normal((8, 8)) + 0.5
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    r2 = sqrt_sym(s2)
    expected = (np.sum((f1.mean(0) - f2.mean(0)) ** 2) + np.trace(s1) + np.trace(s2)
                - 2 * np.trace(sqrt_sym(r2 @ s1 @ r2)))
    assert frechet_distance(f1, f2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_rejects_bad_shapes():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 2)))


@pytest.fixture(scope="module")
def digits():
    train, test = load_dataset("digits", None, "train"), load_dataset("digits", None, "test")
    return train, test, fit_feature_net(train.x, train.y, test.x, test.y)


def test_the_classifier_is_deterministic_and_accurate(digits):
    train, test, net = digits
    again = fit_feature_net(train.x, train.y)
    np.testing.assert_array_equal(net.weight, again.weight)
    assert net.test_accuracy > 0.9  # its features separate the digits


def test_the_bootstrap_fast_path_equals_frechet_distance_of_the_resampled_sets():
    rng = np.random.default_rng(3)
    f_gen, f_ref, f_second = (np.maximum(rng.standard_normal((40, 5)) + k, 0) for k in range(3))
    distances, floors = bootstrap_distances(f_gen, f_ref, f_second, 3, np.random.default_rng(7))
    # the same draws, in the order bootstrap_distances makes them: G, R, S rows per chunk
    again = np.random.default_rng(7)
    rows = [again.integers(0, 40, (3, 40)) for _ in range(3)]
    for r in range(3):
        g, ref, second = (f[idx[r]] for f, idx in zip((f_gen, f_ref, f_second), rows, strict=True))
        assert distances[r] == pytest.approx(frechet_distance(g, ref), rel=1e-8)
        assert floors[r] == pytest.approx(frechet_distance(second, ref), rel=1e-8)


def test_the_real_sets_alternate_over_test_then_training_images(digits):
    train, test, _ = digits
    assert capacity(train, test) == 898 == (297 + 1500) // 2
    reference, second = real_sets(train, test, 898)
    np.testing.assert_array_equal(reference, np.concatenate([test.x[0::2], train.x[1:1499:2]]))
    np.testing.assert_array_equal(second, np.concatenate([test.x[1::2], train.x[0::2]]))
    small_ref, small_second = real_sets(train, test, 100)  # small n: held-out images only
    np.testing.assert_array_equal(small_ref, test.x[0:200:2])
    np.testing.assert_array_equal(small_second, test.x[1:200:2])
    with pytest.raises(ValueError, match="2 <= n <= 898"):
        real_sets(train, test, 899)


# Fewer replicates than the default (1000) keep the tests in seconds; the intervals below hold
# with a wide margin at both.
REPLICATES = 200


def replace_pixels(x, fraction, rng):
    """Each image with round(fraction · pixels) of its pixels (chosen at random) set to U(0, 1)."""
    flat = np.array(x, dtype=np.float64).reshape(len(x), -1)
    k = round(fraction * flat.shape[1])
    for row in flat:
        row[rng.choice(flat.shape[1], k, replace=False)] = rng.uniform(0, 1, k)
    return flat.reshape(np.shape(x))


def blur_one_pixel(x):
    """Each pixel averaged with its left neighbour (kernel [½, ½] along the width, 0 beyond)."""
    out = 0.5 * np.array(x, dtype=np.float64)
    out[..., 1:] += 0.5 * np.asarray(x)[..., :-1]
    return out


@pytest.fixture(scope="module")
def figures(digits):
    """The figure at the digits' full n = 898 for the second real set itself and for it with
    10 % of its pixels replaced by noise, blurred by one pixel, and for uniform noise."""
    train, test, net = digits
    _, second = real_sets(train, test, 898)
    rng = np.random.default_rng(0)
    images = {"real": second, "noise 10 %": replace_pixels(second, 0.10, rng),
              "blur": blur_one_pixel(second), "uniform": rng.uniform(0, 1, second.shape)}
    return {name: sample_quality(x, train, test, net, replicates=REPLICATES)
            for name, x in images.items()}


def test_real_images_sit_at_the_floor_inside_their_interval(figures):
    real = figures["real"]
    assert real["n"] == 898 and real["bootstrap"]["replicates"] == REPLICATES
    assert real["ratio"] == 1.0 and real["excess"] == 0.0  # G = S: the distance is the floor
    assert real["ratio_ci"][0] < 1.0 < real["ratio_ci"][1]
    assert real["excess_ci"][0] < 0.0 < real["excess_ci"][1]
    assert real["classifier_test_accuracy"] > 0.9  # its features separate the digits


def test_the_figure_detects_ten_percent_noise_pixels_and_a_one_pixel_blur(figures):
    # detected: the whole interval of the excess over the floor lies above 0
    for name in ("noise 10 %", "blur", "uniform"):
        q = figures[name]
        assert q["excess_ci"][0] > 0.0 and q["ratio_ci"][0] > 1.0, name
        assert q["floor"] == figures["real"]["floor"]  # one floor per n
        assert q["ratio"] == pytest.approx(1 + q["excess"] / q["floor"], rel=1e-12)
        low, high = q["ratio_ci"]
        assert low < q["ratio"] < high, name
    assert figures["blur"]["ratio_ci"][0] > figures["noise 10 %"]["ratio_ci"][1]
    assert figures["uniform"]["ratio_ci"][0] > 50.0


def test_sample_quality_rejects_too_few_images(digits):
    train, test, net = digits
    with pytest.raises(ValueError, match="at least 2 samples"):
        sample_quality(test.x[:1], train, test, net)


def test_the_paired_difference_separates_what_two_intervals_do_not(digits, figures):
    # 5 of 64 pixels of each real image replaced by noise: its own interval overlaps the real
    # set's, the paired interval of the difference (same images, same R draws) excludes 0.
    train, test, net = digits
    reference, second = real_sets(train, test, 898)
    f_ref, f_second = net.features(reference), net.features(second)
    noisy = replace_pixels(second, 5 / 64, np.random.default_rng(0))
    unpaired = sample_quality(noisy, train, test, net, replicates=REPLICATES)
    assert unpaired["ratio_ci"][0] < figures["real"]["ratio_ci"][1]  # the intervals overlap
    floor = figures["real"]["floor"]
    paired = paired_difference(net.features(noisy), f_second, f_ref, floor, REPLICATES)
    assert paired["ratio_difference"] == pytest.approx(unpaired["ratio"] - 1.0, rel=1e-9)
    low, high = paired["ratio_difference_ci"]
    assert 0.0 < low < paired["ratio_difference"] < high and paired["separated"]
    same = paired_difference(f_second, f_second, f_ref, floor, 20)
    assert same["ratio_difference_ci"] == [0.0, 0.0] and not same["separated"]
